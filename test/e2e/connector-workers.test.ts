/**
 * Connectors and workers: with `server.workers: 2` a connection lands on one worker, and only that worker can use
 * it. The hub's 101 says which worker took it (`gatehouse-worker: ID/2`); the connector keeps opening connections
 * (naming the workers it holds, which then decline) until it has one to each, so every worker reaches the backend:
 * requests on new connections, whichever worker accepts them, all get through.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { TestCa, curl, listeningPort, runCli, startServe, tempDir, waitFor, type ServeProcess } from '../harness/index.ts';
import { event, startConnector, startConnectorBackend, type ConnectorBackend, type ConnectorProcess } from '../harness/connectors.ts';
import { openSqliteStore } from '../../src/store/index.ts';
import { PRESENCE_KIND, type ConnectorPresence } from '../../src/connector/index.ts';

const HOST = 'office.corp.test';

describe('connectors with several workers', () => {
  const t = tempDir('gatehouse-connector-workers-');
  let ca: TestCa;
  let serve: ServeProcess;
  let backend: ConnectorBackend;
  let agent: ConnectorProcess;
  let port: number;

  before(async () => {
    ca = new TestCa(t.dir);
    const server = ca.server(['*.corp.test', 'gate.test']);
    backend = await startConnectorBackend('office');
    serve = await startServe(t.dir, {
      server: { https: '127.0.0.1:0', authHost: 'gate.test', workers: 2, accessLog: false, tls: { cert: server.cert, key: server.key } },
      store: { sqlite: { path: join(t.dir, 'gatehouse.db') } },
      identity: { secretsKey: 'connector-workers-secrets-key-0123456789' },
      connectors: [{ name: 'office' }],
      routes: [{ name: 'office', host: HOST, to: 'connector:office', auth: 'public' }],
    });
    port = listeningPort(serve, 'https');
    const init = await runCli(['ca', 'init', '-c', serve.configFile]);
    assert.equal(init.code, 0, init.stderr);
    // both workers rebuild their state with the new CA
    await waitFor(() => serve.lines.filter((l) => l.event === 'config_reloaded').length >= 2, 'both workers reloaded with the CA', 10_000);
    const issued = await runCli(['ca', 'issue', '-c', serve.configFile, '--connector', 'office', '--out', join(t.dir, 'office')]);
    assert.equal(issued.code, 0, issued.stderr);
  });

  after(async () => {
    await agent?.stop();
    await serve?.stop();
    await backend?.close();
    t.cleanup();
  });

  it('keeps a session with every worker, so that each of them reaches the backend', async (c) => {
    agent = startConnector(t.dir, ['--via', `https://gate.test:${port}`, '--name', 'office', '--to', `127.0.0.1:${backend.port}`, '--cert', join(t.dir, 'office.crt'), '--key', join(t.dir, 'office.key'), '--ca', ca.cert]);
    await agent.waitFor((l) => l.event === 'connector_connected' && String(l.worker).endsWith('/2'));
    await agent.waitFor(() => new Set(agent.lines.filter(event('connector_connected')).map((l) => l.worker)).size === 2, 20_000);
    const workers = agent.lines.filter(event('connector_connected')).map((l) => String(l.worker)).sort();
    assert.equal(workers.length, 2, `one session per worker: ${workers.join(', ')}`);
    assert.notEqual(workers[0], workers[1]);
    c.diagnostic(`sessions with workers ${workers.join(' and ')}`);

    // the presence records in the store, as any worker or instance lists them
    const store = await openSqliteStore(join(t.dir, 'gatehouse.db'));
    try {
      const listed = (await store.list<ConnectorPresence>(PRESENCE_KIND)).map((r) => r.value);
      assert.deepEqual(listed.map((p) => p.worker).sort(), workers);
      assert.ok(listed.every((p) => p.name === 'office' && p.address === '127.0.0.1'));
    } finally {
      await store.close();
    }

    // every request on a new connection, whichever worker accepts it, gets through
    for (let i = 0; i < 12; i++) {
      const r = await curl(['--cacert', ca.cert, '--resolve', `${HOST}:${port}:127.0.0.1`, `https://${HOST}:${port}/w/${i}`]);
      assert.equal(r.status, 200, r.body);
      assert.equal(r.headers['x-backend'], 'office');
    }
    // and nothing more was opened than needed: no session beyond one per worker
    assert.equal(agent.count(event('connector_connected')), 2);
  });
});
