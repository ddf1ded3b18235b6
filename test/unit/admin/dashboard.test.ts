/**
 * The dashboard's fixed parts: the asset allow-list matches the files on disk (a new page module cannot be
 * forgotten), If-None-Match comparison, and which paths are pages.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ASSET_FILES, etagMatches, isPagePath } from '../../../src/admin/dashboard.ts';

const assetDir = fileURLToPath(new URL('../../../src/admin/assets/', import.meta.url));

function filesUnder(dir: string, prefix = ''): string[] {
  return readdirSync(dir).flatMap((name) => (statSync(join(dir, name)).isDirectory() ? filesUnder(join(dir, name), `${prefix}${name}/`) : [`${prefix}${name}`]));
}

describe('dashboard', () => {
  it('serves exactly the files in assets/ (index.html only at page paths)', () => {
    const files = filesUnder(assetDir).filter((f) => f !== 'index.html').sort();
    assert.deepEqual(Object.keys(ASSET_FILES).sort(), files);
  });

  it('compares If-None-Match weakly, over a list, with *', () => {
    const tag = '"abc"';
    assert.equal(etagMatches(undefined, tag), false);
    assert.equal(etagMatches('', tag), false);
    assert.equal(etagMatches('"abc"', tag), true);
    assert.equal(etagMatches('W/"abc"', tag), true);
    assert.equal(etagMatches('"x", "abc"', tag), true);
    assert.equal(etagMatches('*', tag), true);
    assert.equal(etagMatches('"abcd"', tag), false);
    assert.equal(etagMatches('abc', tag), false);
  });

  it('knows its page paths', () => {
    for (const p of ['/', '/access', '/request-access', '/requests', '/roles', '/roles/sre', '/roles/on-call-2', '/users', '/service-accounts', '/audit', '/explain', '/sessions', '/devices', '/connectors']) {
      assert.equal(isPagePath(p), true, p);
    }
    for (const p of ['/roles/', '/roles/SRE', '/roles/a/b', '/rolesx', '/assets/app.js', '/api/v1/me', '/index.html', '/sessions/x', '/devices/x', '/connectors/x', '//']) {
      assert.equal(isPagePath(p), false, p);
    }
  });
});
