// The hint table and the did-you-mean: every renamed key points at a key that exists, and is itself gone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { configSchema } from '../../src/config/schema.ts';
import { didYouMean, editDistance, renamedKeys } from '../../src/config/hints.ts';
import { allowedKeysAt, schemaAt } from '../../src/config/schema-walk.ts';

/** `routes[].upstream.url` → `['routes', 0, 'upstream', 'url']`. */
const toPath = (pattern: string) => pattern.split('.').flatMap((seg) => (seg.endsWith('[]') ? [seg.slice(0, -2), 0] : [seg]));

test('every renamed key is unknown to the schema, and its replacement exists', () => {
  for (const [from, to] of Object.entries(renamedKeys)) {
    const fromPath = toPath(from);
    const key = fromPath.pop() as string;
    assert.ok(!allowedKeysAt(configSchema, fromPath).includes(key), `${from} is still a key: the hint would never show`);
    const target = to.split(':')[0]!.trim();
    assert.ok(schemaAt(configSchema, toPath(target)) !== undefined, `${from} → ${target}, which is not in the schema`);
  }
});

test('edit distance counts insertions, deletions, substitutions and swaps', () => {
  assert.equal(editDistance('upstream', 'upstream'), 0);
  assert.equal(editDistance('upsteam', 'upstream'), 1);
  assert.equal(editDistance('uspteram', 'upstream'), 2);
  assert.equal(editDistance('', 'abc'), 3);
  assert.equal(editDistance('kitten', 'sitting'), 3);
});

test('did-you-mean ignores case, - and _, and refuses far-off words', () => {
  assert.equal(didYouMean('max_body_size', ['maxBodySize', 'timeouts']), 'maxBodySize');
  assert.equal(didYouMean('ClientID', ['clientId', 'clientSecret']), 'clientId');
  assert.equal(didYouMean('tp', ['to', 'tcp']), 'to');
  assert.equal(didYouMean('banana', ['to', 'tcp', 'host']), undefined);
});
