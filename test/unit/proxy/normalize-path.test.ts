import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { normalizePath, splitTarget } from '../../../src/proxy/index.ts';

/** [raw path, what the policy checks and the upstream receives] */
function same(cases: readonly (readonly [string, string])[]): void {
  for (const [raw, want] of cases) assert.equal(normalizePath(raw), want, `normalizePath(${JSON.stringify(raw)})`);
}

function refused(paths: readonly string[]): void {
  for (const raw of paths) assert.equal(normalizePath(raw), undefined, `normalizePath(${JSON.stringify(raw)}) must be refused`);
}

describe('normalizePath', () => {
  it('leaves a plain path alone', () => {
    same([
      ['/', '/'],
      ['/api/v1/users', '/api/v1/users'],
      ['/a/b/', '/a/b/'],
      ['/.well-known/x', '/.well-known/x'],
      ['/a/.hidden/..b', '/a/.hidden/..b'],
    ]);
  });

  it('removes dot segments', () => {
    same([
      ['/a/./b/../c', '/a/c'],
      ['/a/./b/../c//d', '/a/c/d'],
      ['/api/../admin', '/admin'],
      ['/api/v1/../../admin', '/admin'],
      ['/../../admin', '/admin'],
      ['/./admin', '/admin'],
    ]);
  });

  it('collapses repeated slashes, including a leading //', () => {
    same([
      ['//admin', '/admin'],
      ['///admin//x', '/admin/x'],
      ['/a//', '/a/'],
    ]);
  });

  it('decodes encoded dots before removing dot segments', () => {
    same([
      ['/%2e%2e/admin', '/admin'],
      ['/api/%2e%2e/admin', '/admin'],
      ['/api/%2E%2e/admin', '/admin'],
      ['/api/.%2e/admin', '/admin'],
      ['/api/%2e/admin', '/api/admin'],
    ]);
  });

  it('keeps an encoded slash encoded: it is data, not a separator', () => {
    same([
      ['/a%2fb', '/a%2Fb'],
      ['/a%2Fb', '/a%2Fb'],
      ['/a%2F..b', '/a%2F..b'],
    ]);
  });

  it('refuses dot segments hidden behind encoded slashes or backslashes (an upstream that decodes them first would climb)', () => {
    for (const raw of ['/api/%2E%2e%2fadmin', '/api/..%2Fadmin', '/api/%2e%2e%2F', '/api%2f..%2fadmin', '/a/..%5Cb', '/a/b%2F..', '/a/.%2Fb', '/a\\..\\b']) {
      assert.equal(normalizePath(raw), undefined, raw);
    }
  });

  it('decodes unreserved escapes and upper-cases the others', () => {
    same([
      ['/%41BC', '/ABC'],
      ['/%7euser', '/~user'],
      ['/%5f%2d%2e%30', '/_-.0'],
      ['/a%3ab', '/a%3Ab'],
      ['/caf%c3%a9', '/caf%C3%A9'],
      ['/%25', '/%25'],
      // a decoded "%" is not decoded again
      ['/%252e%252e/admin', '/%252e%252e/admin'],
    ]);
  });

  it('percent-encodes printable characters that may not appear raw', () => {
    same([
      ['/a\\b', '/a%5Cb'],
      ['/a"b', '/a%22b'],
      ['/{x}', '/%7Bx%7D'],
    ]);
  });

  it('refuses a bare or broken %, NUL, raw control and non-ASCII characters', () => {
    refused(['/%', '/a%', '/%4', '/%zz', '/%g1', '/%00', '/a%00b', '/é', '/caf\u00e9', '/a b', '/a\tb', '/a\u0001b', '/\u007f']);
  });

  it('refuses a target that is not an absolute path', () => {
    refused(['', 'admin', '*', 'http://x/']);
  });

  it('keeps the trailing slash meaning of a final dot segment', () => {
    same([
      ['/a/b/..', '/a/'],
      ['/a/b/.', '/a/b/'],
      ['/a/..', '/'],
      ['/..', '/'],
      ['/.', '/'],
      ['/a/%2e%2e', '/'],
    ]);
  });

  it('is idempotent', () => {
    for (const raw of ['/a/./b/../c//d', '/%2e%2e/x', '/a%2fb', '/%41%3a', '/a\\b', '/x/..']) {
      const once = normalizePath(raw)!;
      assert.equal(normalizePath(once), once, raw);
    }
  });
});

describe('splitTarget', () => {
  it('splits path and query and drops a fragment', () => {
    assert.deepEqual(splitTarget('/a/b?x=1&y=/../z'), { path: '/a/b', query: '?x=1&y=/../z' });
    assert.deepEqual(splitTarget('/a?'), { path: '/a', query: '?' });
    assert.deepEqual(splitTarget('/a#f?x'), { path: '/a', query: '' });
    assert.deepEqual(splitTarget('/a?q#f'), { path: '/a', query: '?q' });
  });
});
