/**
 * Connections that leave the HTTP server (WebSocket upgrades) still end when Gatehouse stops.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import WebSocket, { WebSocketServer } from 'ws';
import { TestCa, startGatehouse, tempDir, type RunningGatehouse } from '../harness/index.ts';

describe('stopping with WebSockets open', () => {
  const t = tempDir();
  let ca: TestCa;
  let gh: RunningGatehouse;
  let backend: ReturnType<typeof createServer>;
  let wss: WebSocketServer;

  before(async () => {
    ca = new TestCa(t.dir);
    const server = ca.server(['*.corp.test', 'gate.test']);
    backend = createServer();
    wss = new WebSocketServer({ server: backend });
    wss.on('connection', (ws) => ws.on('message', (m) => ws.send(m)));
    await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
    const port = (backend.address() as AddressInfo).port;
    gh = await startGatehouse(t.dir, {
      server: { https: '127.0.0.1:0', authHost: 'gate.test', workers: 1, tls: { cert: server.cert, key: server.key }, shutdownTimeout: '1s' },
      routes: [{ name: 'ws', host: 'ws.corp.test', to: `http://127.0.0.1:${port}`, auth: 'public' }],
    });
  });
  after(async () => {
    for (const c of wss.clients) c.terminate();
    wss.close();
    backend.close();
    t.cleanup();
  });

  it('close() ends an open WebSocket (which the HTTP server no longer tracks) soon after the shutdown timeout', { timeout: 20_000 }, async () => {
    const ws = new WebSocket(`wss://127.0.0.1:${gh.httpsPort}/`, { ca: ca.certPem, servername: 'ws.corp.test', headers: { host: `ws.corp.test:${gh.httpsPort}` } } as WebSocket.ClientOptions);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => ws.send('hello'));
      ws.once('message', (m) => (String(m) === 'hello' ? resolve() : reject(new Error(String(m)))));
      ws.once('error', reject);
    });
    const closed = new Promise<number>((r) => ws.once('close', () => r(Date.now())));
    const started = Date.now();
    await gh.g.close();
    const at = await closed;
    // shutdownTimeout is 1 s; without Gatehouse ending upgraded sockets itself the WebSocket stays open for good.
    // The slack is for loaded CI machines (once seen: 4.9 s while other test files ran).
    assert.ok(at - started < 10_000, `the WebSocket ended ${at - started} ms after close()`);
  });
});
