import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { TestCa, rawExchange, startBackend, startGatehouse, tempDir, waitFor, type RawAnswer, type RunningGatehouse, type ScriptedBackend } from '../harness/index.ts';

/**
 * Requests that cannot be parsed safely never reach a backend: each is answered by Gatehouse itself with the
 * right status, `x-gatehouse-error` and `x-request-id`. Raw bytes over TLS, because no proper client sends these.
 */
describe('bad input on the front door', () => {
  const t = tempDir();
  let ca: TestCa;
  let backend: ScriptedBackend;
  let gh: RunningGatehouse;

  before(async () => {
    ca = new TestCa(t.dir);
    const server = ca.server(['*.corp.test', 'gate.test']);
    backend = await startBackend();
    gh = await startGatehouse(t.dir, {
      server: { https: '127.0.0.1:0', authHost: 'gate.test', workers: 1, tls: { cert: server.cert, key: server.key } },
      store: { sqlite: { path: join(t.dir, 'gatehouse.db') } },
      routes: [
        { name: 'app', host: 'app.corp.test', to: backend.origin, auth: 'public' },
        { name: 'other', host: 'other.corp.test', to: backend.origin, auth: 'public' },
      ],
    });
  });
  after(async () => {
    await gh?.close();
    await backend?.close();
    t.cleanup();
  });

  const raw = (data: string, sni: string | undefined = 'app.corp.test'): Promise<RawAnswer> => rawExchange(gh.httpsPort, sni, ca.certPem, data);

  /** Sends `data`, expects Gatehouse's own refusal, and that the backend saw no request at all. */
  async function refused(data: string, status: number, code: string, sni?: string): Promise<RawAnswer> {
    const before = backend.requests.length;
    const r = await raw(data, sni);
    assert.equal(r.status, status, `status for ${JSON.stringify(data.slice(0, 120))}: ${r.text.slice(0, 300)}`);
    assert.equal(r.headers['x-gatehouse-error'], code);
    assert.match(r.headers['x-request-id'] ?? '', /\S/);
    // a well-formed request on a new connection still works, and it is the only one the backend saw
    const ok = await raw('GET /after-refusal HTTP/1.1\r\nHost: app.corp.test\r\nConnection: close\r\n\r\n');
    assert.equal(ok.status, 200);
    assert.deepEqual(backend.requests.slice(before).map((s) => s.url), ['/after-refusal']);
    return r;
  }

  it('forwards a well-formed raw request (the control for every refusal below)', async () => {
    const r = await raw(`GET /control?x=1 HTTP/1.1\r\nHost: app.corp.test:${gh.httpsPort}\r\nConnection: close\r\n\r\n`);
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-gatehouse-error'], undefined);
    assert.equal((JSON.parse(r.body) as { url: string }).url, '/control?x=1');
  });

  it('answers 400 to Content-Length together with Transfer-Encoding, in either order', async () => {
    await refused('POST / HTTP/1.1\r\nHost: app.corp.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n', 400, 'ERR_BAD_REQUEST');
    await refused('POST / HTTP/1.1\r\nHost: app.corp.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n', 400, 'ERR_BAD_REQUEST');
  });

  it('answers 400 to two different Content-Lengths', async () => {
    await refused('POST / HTTP/1.1\r\nHost: app.corp.test\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde', 400, 'ERR_BAD_REQUEST');
    await refused('POST / HTTP/1.1\r\nHost: app.corp.test\r\nContent-Length: 4, 5\r\n\r\nabcde', 400, 'ERR_BAD_REQUEST');
  });

  it('answers 400 to a request without Host', async () => {
    await refused('GET / HTTP/1.1\r\nAccept: */*\r\n\r\n', 400, 'ERR_BAD_REQUEST');
  });

  it('answers 400 to a malformed Host', async () => {
    for (const host of ['app.corp.test/x', 'app.corp.test:99999', 'app.corp.test:', 'user@app.corp.test', 'app corp.test', 'app.corp.test:8443:1', '']) {
      await refused(`GET / HTTP/1.1\r\nHost: ${host}\r\n\r\n`, 400, 'ERR_BAD_REQUEST');
    }
  });

  it('answers 400 to two Host headers', async () => {
    await refused('GET / HTTP/1.1\r\nHost: app.corp.test\r\nHost: other.corp.test\r\n\r\n', 400, 'ERR_BAD_REQUEST');
  });

  it('answers 431 to oversized headers', async () => {
    const r = await refused(`GET / HTTP/1.1\r\nHost: app.corp.test\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`, 431, 'ERR_HEADERS_TOO_LARGE');
    assert.equal(r.headers.connection, 'close');
  });

  it('answers 421 to an origin-form request whose Host differs from the SNI', async () => {
    await refused('GET / HTTP/1.1\r\nHost: other.corp.test\r\n\r\n', 421, 'ERR_MISDIRECTED_REQUEST', 'app.corp.test');
    await refused(`GET / HTTP/1.1\r\nHost: OTHER.corp.test:${gh.httpsPort}\r\n\r\n`, 421, 'ERR_MISDIRECTED_REQUEST', 'app.corp.test');
    // a Host that only differs in case and port is the same host
    const r = await raw(`GET /case HTTP/1.1\r\nHost: APP.Corp.Test:${gh.httpsPort}\r\nConnection: close\r\n\r\n`);
    assert.equal(r.status, 200);
  });

  it('answers 400 to a path that cannot be normalised safely', async () => {
    for (const path of ['/%00', '/a%zz', '/%']) await refused(`GET ${path} HTTP/1.1\r\nHost: app.corp.test\r\n\r\n`, 400, 'ERR_BAD_REQUEST');
  });

  it('does not let a Connection header that names Content-Length smuggle a second request', async () => {
    const before = backend.requests.length;
    const smuggled = 'GET /smuggled HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n';
    const r = await raw(
      `GET /checked HTTP/1.1\r\nHost: app.corp.test\r\nConnection: Content-Length\r\nContent-Length: ${smuggled.length}\r\n\r\n${smuggled}`,
    );
    // a request after it goes over the same pooled upstream connection: the backend sees it right after /checked
    const next = await raw('GET /next HTTP/1.1\r\nHost: app.corp.test\r\nConnection: close\r\n\r\n');
    assert.equal(next.status, 200);
    await waitFor(() => backend.requests.some((s) => s.url === '/next'), 'the next request at the backend');
    const seen = backend.requests.slice(before);
    assert.deepEqual(seen.filter((s) => s.url !== '/checked').map((s) => s.url), ['/next'], 'only what Gatehouse checked reaches the backend');
    // refusing it would also do; forwarding it must keep the body the body
    if (r.status !== 200) assert.equal(r.status, 400);
    else assert.equal(seen.find((s) => s.url === '/checked')?.bodyBytes, smuggled.length);
  });
});
