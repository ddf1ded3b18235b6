/**
 * Connectors that share a name share the load and take over from each other: two `gatehouse connect` processes
 * named `office`, each beside its own backend, both serve some of 100 requests; one killed with SIGKILL mid-run
 * (requests in flight on it may fail with 502, nothing else), and new requests all go to the other; after a Gatehouse
 * restart the connector comes back by itself. Users here are not trusted with the internal CA (`trust: []`): it is
 * asked for only so connectors can present theirs.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Agent, request } from 'node:https';
import type { IncomingMessage } from 'node:http';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TestCa, curl, freePort, startGatehouse, tempDir, waitFor, type CertFiles, type RunningGatehouse } from '../harness/index.ts';
import { event, startConnector, startConnectorBackend, type ConnectorBackend, type ConnectorProcess } from '../harness/connectors.ts';
import dns from 'node:dns';
import { Logger } from '../../src/core/index.ts';
import { ConnectorAgent, ConnectorCredentials, parseTarget } from '../../src/connector/index.ts';
import { canonicalSerialFromNode } from '../../src/pki/index.ts';

/** `gate.test` resolves to 127.0.0.1 in this process (for an agent run here); returns the undo. */
function resolveGateTest(): () => void {
  const real = dns.lookup;
  const patched = ((host: string, options: unknown, callback: unknown): void => {
    if (typeof options === 'function') return void (patched as (...a: unknown[]) => void)(host, {}, options);
    const o = (typeof options === 'number' ? { family: options } : options) as { all?: boolean };
    const cb = callback as (err: null, a: unknown, f?: number) => void;
    if (host !== 'gate.test') return (real as (...a: unknown[]) => void).call(dns, host, options, callback);
    if (o?.all) process.nextTick(cb, null, [{ address: '127.0.0.1', family: 4 }]);
    else process.nextTick(cb, null, '127.0.0.1', 4);
  }) as typeof dns.lookup;
  dns.lookup = patched;
  return () => void (dns.lookup = real);
}

const HOST = 'office.corp.test';

describe('connectors: load sharing, failover, restart', () => {
  const t = tempDir('gatehouse-connector-failover-');
  let ca: TestCa;
  let server: CertFiles;
  let port: number;
  let gh: RunningGatehouse;
  let config: Record<string, unknown>;
  let a: ConnectorBackend;
  let b: ConnectorBackend;
  let agentA: ConnectorProcess;
  let agentB: ConnectorProcess;
  let files: { cert: string; key: string };
  let keepAlive: Agent;

  /** One GET through the front door on the keep-alive agent: status and which backend answered. */
  const get = (path: string) =>
    new Promise<{ status: number; tag: string | undefined; code: string | undefined }>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, servername: HOST, path, ca: ca.certPem, agent: keepAlive, headers: { host: `${HOST}:${port}` } }, (res: IncomingMessage) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, tag: res.headers['x-backend'] as string | undefined, code: res.headers['x-gatehouse-error'] as string | undefined }));
        res.on('error', () => resolve({ status: 0, tag: undefined, code: 'reset' }));
      });
      req.on('error', reject);
      req.end();
    });

  /** `count` requests, `parallel` at a time. */
  async function load(count: number, parallel: number, path: (i: number) => string) {
    const results: Array<{ status: number; tag: string | undefined; code: string | undefined }> = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: parallel }, async () => {
        while (next < count) {
          const i = next++;
          results[i] = await get(path(i)).catch(() => ({ status: 0, tag: undefined, code: 'error' }));
        }
      }),
    );
    return results;
  }

  const startAgent = (backend: ConnectorBackend) =>
    startConnector(t.dir, ['--via', `https://gate.test:${port}`, '--name', 'office', '--to', `127.0.0.1:${backend.port}`, '--cert', files.cert, '--key', files.key, '--ca', ca.cert]);

  before(async () => {
    ca = new TestCa(t.dir);
    server = ca.server(['*.corp.test', 'gate.test']);
    a = await startConnectorBackend('a');
    b = await startConnectorBackend('b');
    port = await freePort();
    config = {
      server: { https: `127.0.0.1:${port}`, authHost: 'gate.test', workers: 1, accessLog: false, tls: { cert: server.cert, key: server.key } },
      store: { sqlite: { path: join(t.dir, 'gatehouse.db') } },
      identity: { secretsKey: 'connector-failover-secrets-key-0123456789', certificates: { trust: [] } },
      connectors: [{ name: 'office' }],
      routes: [
        { name: 'office', host: HOST, to: 'connector:office', auth: 'public' },
        { name: 'devices', host: 'devices.corp.test', to: 'connector:office', auth: 'certificate' },
      ],
    };
    gh = await startGatehouse(t.dir, config);
    await gh.g.services.ca.createRoot({ by: 'test' });
    await waitFor(() => gh.g.state.tls.clientCas.length > 0, 'the front door asking for connector certificates');
    const issued = await gh.g.services.ca.issue({ connector: 'office', issuedBy: 'test' });
    files = { cert: join(t.dir, 'office.crt'), key: join(t.dir, 'office.key') };
    writeFileSync(files.cert, issued.certPem + issued.chainPem);
    writeFileSync(files.key, issued.keyPem!, { mode: 0o600 });
    keepAlive = new Agent({ keepAlive: true, maxSockets: 10 });
    agentA = startAgent(a);
    agentB = startAgent(b);
    await agentA.waitFor(event('connector_connected'));
    await agentB.waitFor(event('connector_connected'));
    await waitFor(() => gh.lines.filter((l) => l.event === 'connector_connected').length === 2, 'both sessions at the hub');
  });

  after(async () => {
    keepAlive?.destroy();
    await agentA?.stop('SIGKILL');
    await agentB?.stop('SIGKILL');
    await gh?.close();
    await a?.close();
    await b?.close();
    t.cleanup();
  });

  it('shares the load between connectors of one name', async (c) => {
    const results = await load(100, 10, (i) => `/share/${i}`);
    assert.deepEqual(results.filter((r) => r.status !== 200), []);
    const byA = results.filter((r) => r.tag === 'a').length;
    const byB = results.filter((r) => r.tag === 'b').length;
    assert.equal(byA + byB, 100);
    assert.ok(byA > 0 && byB > 0, `both connectors served some: a ${byA}, b ${byB}`);
    c.diagnostic(`100 requests, 10 at a time: ${byA} through connector a, ${byB} through b`);
    const sessions = (await gh.g.services.connectors.list())[0]!.sessions;
    assert.equal(sessions.length, 2);
  });

  it('goes on through the other when one is killed mid-run', async (c) => {
    const run = load(200, 10, (i) => `/slow?ms=20&i=${i}`);
    await waitFor(() => a.received.length + b.received.length > 150 + 50, 'requests under way', 10_000);
    agentA.child.kill('SIGKILL');
    const results = await run;
    const failed = results.filter((r) => r.status !== 200);
    for (const f of failed) assert.ok(f.status === 502 || f.code === 'reset', `only requests in flight on the killed connector fail: ${JSON.stringify(f)}`);
    c.diagnostic(`killed mid-run: ${results.length - failed.length} of 200 answered 200, ${failed.length} in flight failed (${failed.map((f) => f.status || f.code).join(', ') || 'none'})`);
    await waitFor(() => gh.lines.some((l) => l.event === 'connector_disconnected'), 'the hub saw the connector go');
    const after = await load(100, 10, (i) => `/after/${i}`);
    assert.deepEqual(after.filter((r) => r.status !== 200 || r.tag !== 'b'), [], 'every new request went to the other connector');
    assert.equal((await gh.g.services.connectors.list())[0]!.sessions.length, 1);
  });

  it('comes back by itself after Gatehouse restarts', async () => {
    const connectedBefore = agentB.count(event('connector_connected'));
    await gh.g.close();
    await agentB.waitFor(event('connector_disconnected'));
    gh = await startGatehouse(t.dir, config);
    await agentB.waitFor(() => agentB.count(event('connector_connected')) > connectedBefore, 20_000);
    await waitFor(() => gh.lines.some((l) => l.event === 'connector_connected'), 'the new Gatehouse took the session');
    keepAlive.destroy();
    keepAlive = new Agent({ keepAlive: true, maxSockets: 10 });
    const results = await load(20, 5, (i) => `/again/${i}`);
    assert.deepEqual(results.map((r) => r.status), Array(20).fill(200));
  });

  it('renews an enrolled certificate and rolls its sessions over without failing a request', async () => {
    await agentB.stop();
    await waitFor(() => gh.lines.filter((l) => l.event === 'connector_disconnected').length >= 1, 'the old connector left');
    const restore = resolveGateTest();
    const via = `https://gate.test:${port}`;
    const log = new Logger({ sink: { write: () => undefined } });
    let agent: ConnectorAgent | undefined;
    try {
      const enrollment = await gh.g.services.connectors.createEnrollment('office', 'test');
      const { credentials } = await ConnectorCredentials.fromState(join(t.dir, 'renew-state'), 'office', enrollment.token, { via, trust: [ca.certPem] });
      agent = new ConnectorAgent({ via, name: 'office', target: parseTarget(`127.0.0.1:${b.port}`), credentials, trust: [ca.certPem], log, version: 'test' });
      agent.start();
      await waitFor(() => agent!.links.length === 1, 'the enrolled connector connected');
      const first = canonicalSerialFromNode(credentials.current.serial);
      const sessions = async () => (await gh.g.services.connectors.list())[0]!.sessions;
      assert.deepEqual((await sessions()).map((x) => x.serial), [first]);

      const run = load(150, 5, (i) => `/slow?ms=10&renew=${i}`);
      await waitFor(() => b.received.some((r) => r.url.includes('renew=20')), 'requests under way');
      await agent.renew();
      const renewed = canonicalSerialFromNode(credentials.current.serial);
      assert.notEqual(renewed, first);
      const results = await run;
      assert.deepEqual(results.filter((r) => r.status !== 200), [], 'no request failed while the sessions rolled over');
      await waitFor(() => agent!.links.length === 1, 'the old session closed');
      let now = await sessions();
      for (let i = 0; i < 50 && (now.length !== 1 || now[0]!.serial !== renewed); i++) {
        await new Promise((r) => setTimeout(r, 20));
        now = await sessions();
      }
      assert.deepEqual(now.map((x) => x.serial), [renewed], 'one session, with the new certificate');
      const record = await gh.g.services.ca.get(renewed);
      assert.equal(record?.issuedBy, 'connector:office');
      assert.equal(readFileSync(join(t.dir, 'renew-state', 'connector.crt'), 'utf8'), credentials.current.certPem, 'kept in the state folder');
    } finally {
      await agent?.close();
      restore();
    }
  });

  it('asks for client certificates for connectors only: the internal CA stands for no user here', async () => {
    const device = await gh.g.services.ca.issue({ user: 'alice@example.com', issuedBy: 'test' });
    const cert = join(t.dir, 'alice.crt');
    const key = join(t.dir, 'alice.key');
    writeFileSync(cert, device.certPem);
    writeFileSync(key, device.keyPem!);
    const r = await curl(['--cacert', ca.cert, '--resolve', `devices.corp.test:${port}:127.0.0.1`, '--cert', cert, '--key', key, `https://devices.corp.test:${port}/`]);
    assert.equal(r.status, 403, r.body);
    assert.equal(r.headers['x-gatehouse-error'], 'ERR_CERT_UNTRUSTED');
  });
});
