/** The JSON Schema of the configuration file, derived from the zod schema (committed as config.schema.json). */
import { z } from 'zod';
import { configSchema } from './schema.ts';

export const configSchemaId = 'urn:gatehouse:config';

export function configJsonSchema(): Record<string, unknown> {
  const generated = z.toJSONSchema(configSchema, { io: 'input', target: 'draft-2020-12', unrepresentable: 'any' });
  const { $schema, ...rest } = generated;
  return {
    $schema,
    $id: configSchemaId,
    title: 'Gatehouse configuration',
    description:
      'The YAML configuration file of Gatehouse, the identity-aware access proxy. ${NAME} in any value is replaced ' +
      'by the environment variable NAME. Durations are like 90s, 2m, 12h; sizes like 512k, 10m. ' +
      'Generated from src/config/schema.ts by `npm run schema`; do not edit.',
    ...rest,
  };
}
