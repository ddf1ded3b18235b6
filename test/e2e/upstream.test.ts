import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import {
  TestCa, curl, deadPort, send, startBackend, startGatehouse, tempDir, waitFor,
  type RunningGatehouse, type ScriptedBackend,
} from '../harness/index.ts';

describe('upstreams', () => {
  const t = tempDir();
  let ca: TestCa;
  let upstreamCa: TestCa;
  let secure: ScriptedBackend;
  let slow: ScriptedBackend;
  let plain: ScriptedBackend;
  let gh: RunningGatehouse;

  before(async () => {
    ca = new TestCa(t.dir);
    const server = ca.server(['*.corp.test', 'gate.test']);
    // the upstream's certificate is from another CA and names only app.internal (no IP address)
    upstreamCa = new TestCa(t.dir, 'upstream-ca', '/CN=Upstream Test CA/O=Tests');
    const upstreamCert = upstreamCa.server(['app.internal']);
    secure = await startBackend(undefined, { tls: { cert: upstreamCert.certPem, key: upstreamCert.keyPem } });
    // answers only when the client gives up (it never does)
    slow = await startBackend((req) => req.resume());
    plain = await startBackend();
    const dead = await deadPort();
    const to = `https://127.0.0.1:${secure.port}`;
    gh = await startGatehouse(t.dir, {
      server: { https: '127.0.0.1:0', authHost: 'gate.test', workers: 1, tls: { cert: server.cert, key: server.key } },
      store: { sqlite: { path: join(t.dir, 'gatehouse.db') } },
      routes: [
        { name: 'tls-ok', host: 'tls-ok.corp.test', to, auth: 'public', upstream: { tls: { ca: upstreamCa.cert, serverName: 'app.internal' } } },
        { name: 'tls-no-ca', host: 'tls-no-ca.corp.test', to, auth: 'public', upstream: { tls: { serverName: 'app.internal' } } },
        { name: 'tls-wrong-name', host: 'tls-wrong-name.corp.test', to, auth: 'public', upstream: { tls: { ca: upstreamCa.cert } } },
        { name: 'tls-other-ca', host: 'tls-other-ca.corp.test', to, auth: 'public', upstream: { tls: { ca: ca.cert, serverName: 'app.internal' } } },
        { name: 'tls-skip', host: 'tls-skip.corp.test', to, auth: 'public', upstream: { tls: { insecureSkipVerify: true } } },
        { name: 'slow', host: 'slow.corp.test', to: slow.origin, auth: 'public', upstream: { timeouts: { read: '300ms' } } },
        { name: 'dead', host: 'dead.corp.test', to: `http://127.0.0.1:${dead}`, auth: 'public' },
        { name: 'plain', host: 'plain.corp.test', to: plain.origin, auth: 'public' },
      ],
    });
  });
  after(async () => {
    await gh?.close();
    for (const b of [secure, slow, plain]) await b?.close();
    t.cleanup();
  });

  const get = (host: string, path = '/', headers: Record<string, string> = {}) => send(host, gh.httpsPort, ca.certPem, { path, headers });

  describe('https', () => {
    it('verifies the upstream against upstream.tls.ca with upstream.tls.serverName as SNI and name', async () => {
      const r = await get('tls-ok.corp.test', '/secure');
      assert.equal(r.status, 200, r.body.toString());
      const seen = secure.requests.at(-1)!;
      assert.equal(seen.url, '/secure');
      assert.equal(seen.servername, 'app.internal');
      assert.equal(seen.headers.host, `127.0.0.1:${secure.port}`);
    });

    it('refuses an upstream certificate it cannot verify: 502 ERR_UPSTREAM_TLS, nothing sent', async () => {
      const from = secure.requests.length;
      for (const host of ['tls-no-ca.corp.test', 'tls-wrong-name.corp.test', 'tls-other-ca.corp.test']) {
        const r = await get(host, '/secure', { accept: 'application/json' });
        assert.equal(r.status, 502, host);
        assert.equal(r.headers['x-gatehouse-error'], 'ERR_UPSTREAM_TLS', host);
        assert.match(String(r.headers['x-request-id']), /\S/);
        assert.equal((JSON.parse(r.body.toString()) as { error: { code: string } }).error.code, 'ERR_UPSTREAM_TLS');
      }
      const ok = await get('tls-ok.corp.test', '/after');
      assert.equal(ok.status, 200);
      assert.deepEqual(secure.requests.slice(from).map((s) => s.url), ['/after']);
    });

    it('accepts any upstream certificate with insecureSkipVerify: true', async () => {
      const r = await get('tls-skip.corp.test', '/skip');
      assert.equal(r.status, 200, r.body.toString());
      assert.equal(secure.requests.at(-1)!.url, '/skip');
    });
  });

  it('answers 504 ERR_UPSTREAM_TIMEOUT when the upstream does not answer within timeouts.read', async () => {
    const started = performance.now();
    const r = await get('slow.corp.test', '/slow');
    const ms = performance.now() - started;
    assert.equal(r.status, 504);
    assert.equal(r.headers['x-gatehouse-error'], 'ERR_UPSTREAM_TIMEOUT');
    assert.match(String(r.headers['x-request-id']), /\S/);
    assert.ok(ms >= 250 && ms < 5000, `answered after ${Math.round(ms)} ms`);
    // and the upstream request was given up, not left hanging
    await waitFor(() => slow.requests.at(-1)?.closed === true, 'the upstream request to be closed');
    assert.equal(slow.requests.at(-1)!.url, '/slow');
  });

  it('answers 502 ERR_UPSTREAM_UNREACHABLE for an upstream nothing listens on', async () => {
    const r = await get('dead.corp.test', '/dead');
    assert.equal(r.status, 502);
    assert.equal(r.headers['x-gatehouse-error'], 'ERR_UPSTREAM_UNREACHABLE');
    assert.match(String(r.headers['x-request-id']), /\S/);
    assert.match(r.body.toString(), /^<!doctype html>/i);
  });

  it('pools keep-alive connections: sequential requests from separate clients share upstream connections', async () => {
    const from = plain.requests.length;
    const connectionsBefore = plain.connections;
    const n = 6;
    for (let i = 0; i < n; i++) {
      // a separate curl process each time: a new client connection to Gatehouse for every request
      const r = await curl(['--cacert', ca.cert, '--resolve', `plain.corp.test:${gh.httpsPort}:127.0.0.1`, `https://plain.corp.test:${gh.httpsPort}/k${i}`]);
      assert.equal(r.status, 200);
    }
    const seen = plain.requests.slice(from);
    assert.equal(seen.length, n);
    const used = new Set(seen.map((s) => s.connection)).size;
    const opened = plain.connections - connectionsBefore;
    assert.ok(opened < n && used < n, `${n} requests used ${used} upstream connections (${opened} opened)`);
    assert.equal(opened, 1, `sequential requests should reuse one pooled connection, ${opened} were opened`);
  });
});
