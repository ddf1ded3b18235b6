// Writes config.schema.json (the JSON Schema of the configuration file) at the repository root: `npm run schema`.
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { configJsonSchema } from '../src/config/index.ts';

const out = fileURLToPath(new URL('../config.schema.json', import.meta.url));
writeFileSync(out, `${JSON.stringify(configJsonSchema(), null, 2)}\n`);
console.log(`wrote ${out}`);
