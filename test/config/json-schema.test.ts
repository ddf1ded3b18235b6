// The committed config.schema.json must be exactly what the zod schema generates.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { configJsonSchema } from '../../src/config/index.ts';

test('config.schema.json is up to date', () => {
  const committed = readFileSync(new URL('../../config.schema.json', import.meta.url), 'utf8');
  const generated = `${JSON.stringify(configJsonSchema(), null, 2)}\n`;
  assert.ok(committed === generated, 'config.schema.json is out of date with src/config/schema.ts: run `npm run schema`');
});

test('the JSON Schema describes the input: strings for durations, no unknown keys, defaults shown', () => {
  const schema = configJsonSchema() as {
    $id: string;
    title: string;
    required: string[];
    additionalProperties: boolean;
    properties: { routes: { items: { properties: Record<string, { default?: unknown }>; additionalProperties: boolean } } };
  };
  assert.equal(schema.$id, 'urn:gatehouse:config');
  assert.equal(schema.title, 'Gatehouse configuration');
  assert.deepEqual(schema.required, ['server']);
  assert.equal(schema.additionalProperties, false);
  const route = schema.properties.routes.items;
  assert.equal(route.additionalProperties, false);
  assert.equal(route.properties.auth!.default, 'login');
  assert.deepEqual(
    Object.keys(route.properties),
    ['name', 'host', 'aliases', 'to', 'tcp', 'auth', 'allow', 'permissions', 'upstream', 'identityHeaders'],
  );
});
