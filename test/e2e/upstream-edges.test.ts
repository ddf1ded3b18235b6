import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpsRequest } from 'node:https';
import type { IncomingMessage } from 'node:http';
import { createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import { join } from 'node:path';
import {
  TestCa, frontDoor, send, startBackend, startGatehouse, tempDir, waitFor,
  type RunningGatehouse, type ScriptedBackend,
} from '../harness/index.ts';

const MiB = 1024 ** 2;

/** A raw TCP upstream on 127.0.0.1 that does `onSocket` with every connection. */
async function rawUpstream(onSocket: (s: Socket) => void): Promise<{ port: number; close(): void }> {
  const sockets = new Set<Socket>();
  const server: NetServer = createNetServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    onSocket(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as AddressInfo).port,
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

function readAll(res: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    res.setEncoding('utf8');
    res.on('data', (c: string) => (text += c));
    res.on('end', () => resolve(text));
    res.on('error', reject);
  });
}

/**
 * Upstream behaviour that the tests of forwarding, streaming and upstreams do not reach: an upstream that
 * stops reading the body, breaks HTTP or never finishes TLS, a client that leaves, `Expect: 100-continue`,
 * 1xx answers, and the TLS name used for an upstream given by address.
 */
describe('upstream edges', () => {
  const t = tempDir();
  let ca: TestCa;
  let echo: ScriptedBackend;
  let endless: ScriptedBackend;
  let hints: ScriptedBackend;
  let secure: ScriptedBackend;
  const raws: { port: number; close(): void }[] = [];
  let gh: RunningGatehouse;

  before(async () => {
    ca = new TestCa(t.dir);
    const server = ca.server(['*.corp.test', 'gate.test']);
    echo = await startBackend();
    endless = await startBackend((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      const timer = setInterval(() => res.write(Buffer.alloc(16 * 1024, 1)), 5);
      res.on('close', () => clearInterval(timer));
    });
    hints = await startBackend((req, res) => {
      req.resume();
      res.writeEarlyHints({ link: '</app.css>; rel=preload' });
      res.writeHead(200, { 'content-length': '2' });
      res.end('ok');
    });
    const upstreamCert = ca.server(['app.internal']);
    secure = await startBackend(undefined, { tls: { cert: upstreamCert.certPem, key: upstreamCert.keyPem } });
    // accepts and never reads: its receive buffer fills and the request body stops moving
    const deaf = await rawUpstream((s) => s.pause());
    // reads the request, closes without a word
    const hangUp = await rawUpstream((s) => s.once('data', () => s.destroy()));
    // answers something that is not HTTP
    const garbage = await rawUpstream((s) => s.once('data', () => s.end('HTTP/1.1 abc nonsense\r\n\r\n')));
    // accepts TCP and says nothing: a TLS handshake never completes
    const silent = await rawUpstream(() => undefined);
    raws.push(deaf, hangUp, garbage, silent);
    const at = (p: number) => `http://127.0.0.1:${p}`;
    gh = await startGatehouse(t.dir, {
      server: { https: '127.0.0.1:0', authHost: 'gate.test', workers: 1, tls: { cert: server.cert, key: server.key } },
      store: { sqlite: { path: join(t.dir, 'gatehouse.db') } },
      routes: [
        { name: 'deaf', host: 'deaf.corp.test', to: at(deaf.port), auth: 'public', upstream: { maxBodySize: '1g', timeouts: { send: '300ms', read: '30s' } } },
        { name: 'hang-up', host: 'hang-up.corp.test', to: at(hangUp.port), auth: 'public' },
        { name: 'garbage', host: 'garbage.corp.test', to: at(garbage.port), auth: 'public' },
        { name: 'silent', host: 'silent.corp.test', to: `https://127.0.0.1:${silent.port}`, auth: 'public', upstream: { timeouts: { connect: '300ms' } } },
        { name: 'echo', host: 'echo.corp.test', to: echo.origin, auth: 'public' },
        { name: 'endless', host: 'endless.corp.test', to: endless.origin, auth: 'public' },
        { name: 'hints', host: 'hints.corp.test', to: hints.origin, auth: 'public' },
        {
          name: 'by-address', host: 'by-address.corp.test', to: `https://127.0.0.1:${secure.port}`, auth: 'public',
          upstream: { hostHeader: 'preserve', tls: { insecureSkipVerify: true } },
        },
      ],
    });
  });
  after(async () => {
    await gh?.close();
    for (const b of [echo, endless, hints, secure]) await b?.close();
    for (const r of raws) r.close();
    t.cleanup();
  });

  const logged = (path: string) => gh.lines.find((l) => l.event === 'request' && l.path === path);

  it('answers 504 ERR_UPSTREAM_TIMEOUT when the upstream stops taking the body for timeouts.send', async () => {
    const base = frontDoor('deaf.corp.test', gh.httpsPort, ca.certPem);
    const started = performance.now();
    const req = httpsRequest({ ...base, method: 'PUT', path: '/deaf', headers: { ...base.headers, 'content-length': String(512 * MiB) } });
    const response = new Promise<IncomingMessage>((resolve, reject) => {
      req.on('response', resolve);
      req.on('error', reject);
    });
    const block = Buffer.alloc(256 * 1024);
    let sent = 0;
    const pump = (): void => {
      while (sent < 512 * MiB) {
        sent += block.length;
        if (!req.write(block)) return void req.once('drain', pump);
      }
      req.end();
    };
    pump();
    const res = await response;
    const body = await readAll(res);
    req.destroy();
    const ms = performance.now() - started;
    assert.equal(res.statusCode, 504);
    assert.equal(res.headers['x-gatehouse-error'], 'ERR_UPSTREAM_TIMEOUT');
    assert.equal(res.headers.connection, 'close');
    assert.match(body, /accept the request body/);
    // the read timeout (30 s) is not what fired
    assert.ok(ms < 10_000, `answered after ${Math.round(ms)} ms`);
  });

  it('answers 502 for an upstream that closes without answering (unreachable) or breaks HTTP (protocol)', async () => {
    const hangUp = await send('hang-up.corp.test', gh.httpsPort, ca.certPem, { path: '/hang-up', headers: { accept: 'application/json' } });
    assert.equal(hangUp.status, 502);
    assert.equal(hangUp.headers['x-gatehouse-error'], 'ERR_UPSTREAM_UNREACHABLE');
    const garbage = await send('garbage.corp.test', gh.httpsPort, ca.certPem, { path: '/garbage', headers: { accept: 'application/json' } });
    assert.equal(garbage.status, 502);
    assert.equal(garbage.headers['x-gatehouse-error'], 'ERR_UPSTREAM_PROTOCOL');
  });

  it('answers 504 when an https upstream does not finish its TLS handshake within timeouts.connect', async () => {
    const started = performance.now();
    const r = await send('silent.corp.test', gh.httpsPort, ca.certPem, { path: '/silent', headers: { accept: 'application/json' } });
    const ms = performance.now() - started;
    assert.equal(r.status, 504);
    assert.equal(r.headers['x-gatehouse-error'], 'ERR_UPSTREAM_TIMEOUT');
    assert.match(r.body.toString(), /accept the connection/);
    // undici's connect timer has a coarse clock: 300 ms fire within about a second
    assert.ok(ms >= 250 && ms < 5000, `answered after ${Math.round(ms)} ms`);
  });

  it('stops the upstream request when the client leaves mid-answer, and logs ERR_CLIENT_CLOSED', async () => {
    const from = endless.requests.length;
    await new Promise<void>((resolve, reject) => {
      const req = httpsRequest({ ...frontDoor('endless.corp.test', gh.httpsPort, ca.certPem), path: '/endless' }, (res) => {
        let n = 0;
        res.on('data', (c: Buffer) => {
          n += c.length;
          if (n > 128 * 1024) {
            req.destroy();
            resolve();
          }
        });
      });
      req.on('error', (e) => (req.destroyed ? undefined : reject(e)));
      req.end();
    });
    await waitFor(() => endless.requests[from]?.closed === true, 'the upstream request to be closed');
    await waitFor(() => logged('/endless') !== undefined, 'the access log line');
    assert.equal(logged('/endless')!.code, 'ERR_CLIENT_CLOSED');
  });

  it('forwards a body sent after Expect: 100-continue, without passing Expect on', async () => {
    const base = frontDoor('echo.corp.test', gh.httpsPort, ca.certPem);
    const req = httpsRequest({ ...base, method: 'POST', path: '/expect', headers: { ...base.headers, expect: '100-continue', 'content-length': String(MiB) } });
    const response = new Promise<IncomingMessage>((resolve, reject) => {
      req.on('response', resolve);
      req.on('error', reject);
    });
    req.on('continue', () => req.end(Buffer.alloc(MiB, 7)));
    const res = await response;
    await readAll(res);
    assert.equal(res.statusCode, 200);
    const seen = echo.requests.at(-1)!;
    assert.equal(seen.url, '/expect');
    assert.equal(seen.bodyBytes, MiB);
    assert.equal(seen.complete, true);
    assert.equal(seen.headers.expect, undefined);
  });

  it('keeps 1xx informational answers to itself and relays the final one', async () => {
    const r = await send('hints.corp.test', gh.httpsPort, ca.certPem, { path: '/hints' });
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), 'ok');
  });

  it('sends no SNI to an upstream given by address without tls.serverName, whatever the Host header', async () => {
    for (const path of ['/one', '/two']) {
      const r = await send('by-address.corp.test', gh.httpsPort, ca.certPem, { path });
      assert.equal(r.status, 200, r.body.toString());
      const seen = secure.requests.at(-1)!;
      assert.equal(seen.url, path);
      assert.equal(seen.headers.host, `by-address.corp.test:${gh.httpsPort}`);
      assert.equal(seen.servername, undefined);
    }
    // and both went over one pooled connection
    assert.equal(new Set(secure.requests.slice(-2).map((s) => s.connection)).size, 1);
  });
});
