import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { TestCa, curl, startEcho, startGatehouse, tempDir, type Backend, type RunningGatehouse } from '../harness/index.ts';

describe('routing', () => {
  const t = tempDir();
  let ca: TestCa;
  let echo: Backend;
  let gh: RunningGatehouse;
  let resolve: (host: string) => string[];

  before(async () => {
    ca = new TestCa(t.dir);
    const server = ca.server(['*.corp.test', 'gate.test']);
    echo = await startEcho();
    gh = await startGatehouse(t.dir, {
      server: { https: '127.0.0.1:0', authHost: 'gate.test', workers: 1, tls: { cert: server.cert, key: server.key } },
      routes: [
        { name: 'app', host: 'app.corp.test', to: echo.origin, auth: 'public' },
        { name: 'ports', host: '*-*.corp.test', to: 'http://{1}:{2}', auth: 'public', upstream: { allowLoopback: true } },
      ],
    });
    resolve = (host) => ['--cacert', ca.cert, '--resolve', `${host}:${gh.httpsPort}:127.0.0.1`];
  });
  after(async () => {
    await gh.close();
    await echo.close();
    t.cleanup();
  });

  it('forwards an exact host with the upstream host as Host', async () => {
    const r = await curl([...resolve('app.corp.test'), `https://app.corp.test:${gh.httpsPort}/hello`]);
    assert.equal(r.status, 200);
    const seen = JSON.parse(r.body) as { url: string; headers: Record<string, string> };
    assert.equal(seen.url, '/hello');
    assert.equal(seen.headers.host, `127.0.0.1:${echo.port}`);
  });

  it('maps a port in the name to the upstream port', async () => {
    const r = await curl([...resolve(`localhost-${echo.port}.corp.test`), `https://localhost-${echo.port}.corp.test:${gh.httpsPort}/p`]);
    assert.equal(r.status, 200);
    assert.equal((JSON.parse(r.body) as { headers: Record<string, string> }).headers.host, `localhost:${echo.port}`);
  });

  it('answers 404 for an unknown host and forwards nothing', async () => {
    const before = echo.received.length;
    const r = await curl([...resolve('nope.corp.test'), `https://nope.corp.test:${gh.httpsPort}/`]);
    assert.equal(r.status, 404);
    assert.equal(r.headers['x-gatehouse-error'], 'ERR_ROUTE_NOT_FOUND');
    assert.ok(r.headers['x-request-id']);
    assert.equal(echo.received.length, before);
  });
});
