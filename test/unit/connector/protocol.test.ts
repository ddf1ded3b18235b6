/**
 * The connector protocol's pure parts: backoff delays (exponential, capped, jittered within the upper half of a
 * step), worker slots and the held-workers header, and what `gatehouse connect --to` accepts.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { backoffDelay, formatHeld, formatWorker, parseHeld, parseTarget, parseWorker } from '../../../src/connector/protocol/index.ts';

describe('connector protocol', () => {
  it('backs off exponentially with jitter, up to the cap', () => {
    const o = { baseMs: 500, capMs: 30_000 };
    assert.equal(backoffDelay(0, { ...o, random: () => 0 }), 250);
    assert.equal(backoffDelay(0, { ...o, random: () => 0.999999 }), 500);
    assert.equal(backoffDelay(3, { ...o, random: () => 0 }), 2000);
    assert.equal(backoffDelay(3, { ...o, random: () => 0.5 }), 3000);
    for (const n of [6, 7, 20, 1000]) {
      const d = backoffDelay(n, { ...o, random: () => 0.999999 });
      assert.ok(d <= 30_000 && d >= 29_999, `capped at ${n} failures: ${d}`);
      assert.equal(backoffDelay(n, { ...o, random: () => 0 }), 15_000);
    }
    const seen = new Set(Array.from({ length: 50 }, () => backoffDelay(4, o)));
    assert.ok(seen.size > 10, 'jittered');
    for (const d of seen) assert.ok(d >= 4000 && d <= 8000);
  });

  it('names worker slots and the workers a connector holds', () => {
    assert.equal(formatWorker({ id: 2, count: 4 }), '2/4');
    assert.deepEqual(parseWorker('2/4'), { id: 2, count: 4 });
    assert.deepEqual(parseWorker(' 7/2 '), { id: 7, count: 2 }, 'a respawned worker has a new id');
    for (const bad of [undefined, '', '2', '2/0', 'a/b', '2/4/1', ['1/2']]) assert.equal(parseWorker(bad as string | undefined), undefined, String(bad));
    assert.equal(formatHeld([3, 1, 3]), '1,3');
    assert.deepEqual([...parseHeld('1, 3,x,,4')], [1, 3, 4]);
    assert.deepEqual([...parseHeld(undefined)], []);
  });

  it('takes http://, https:// and HOST:PORT backends, and nothing else', () => {
    assert.deepEqual(parseTarget('http://10.0.0.5:8080'), { tls: false, host: '10.0.0.5', port: 8080, authority: '10.0.0.5:8080' });
    assert.deepEqual(parseTarget('http://jenkins'), { tls: false, host: 'jenkins', port: 80, authority: 'jenkins:80' });
    assert.deepEqual(parseTarget('https://jenkins.office/'), { tls: true, host: 'jenkins.office', port: 443, authority: 'jenkins.office:443' });
    assert.deepEqual(parseTarget('127.0.0.1:22'), { tls: false, host: '127.0.0.1', port: 22, authority: '127.0.0.1:22' });
    assert.deepEqual(parseTarget('[::1]:5432'), { tls: false, host: '::1', port: 5432, authority: '[::1]:5432' });
    assert.deepEqual(parseTarget('https://[fd00::5]:8443'), { tls: true, host: 'fd00::5', port: 8443, authority: '[fd00::5]:8443' });
    for (const bad of ['jenkins', 'ftp://x:21', 'http://u:p@x', 'http://x/path', 'http://x?q', 'x:0', 'x:70000', ':22', 'a b:1']) {
      assert.throws(() => parseTarget(bad), { code: 'ERR_USAGE' }, bad);
    }
  });
});
