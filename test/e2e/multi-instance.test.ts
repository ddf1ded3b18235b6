/**
 * Many Gatehouse instances on one etcd: a real three-member etcd cluster on 127.0.0.1, three Gatehouse instances on
 * it (the first a real `gatehouse serve` child with two workers, the others in this process), a real OpenID provider, and connectors as
 * real `gatehouse connect` children. A sign-in through one instance holds on the others; a sign-out, a revocation, a
 * new member and a disabled user made on one apply on the others within a second (the times are printed); a connector
 * held by one instance (a session with each of its workers) serves requests and a TCP tunnel arriving at another (the
 * peer relay, mutual TLS); the etcd leader killed changes nothing, without waiting for the election; every member stopped leaves signed-in users served from memory while changes are
 * refused with 503 and /readyz says not ready; etcd started again is caught up with by itself.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { connect as http2Connect } from 'node:http2';
import { join } from 'node:path';
import { request } from 'undici';
import {
  curl,
  listeningPort,
  signInOverHttp,
  startEtcd,
  startSignInWorld,
  tempDir,
  until,
  verifyAssertion,
  waitFor,
  type EtcdCluster,
  type SignInGatehouse,
  type SignInWorld,
  type WebClient,
} from '../harness/index.ts';
import { event, startConnector, startConnectorBackend, startTcpEcho, type ConnectorBackend, type ConnectorProcess } from '../harness/connectors.ts';
import { connectRoute } from '../harness/tunnels.ts';
import type { Gatehouse } from '../../src/app/index.ts';

const SECRETS_KEY = 'multi-instance-secrets-key-0123456789';
const ALICE = { email: 'alice@example.com', password: 'alice-password' };
const BOB = { email: 'bob@example.com', password: 'bob-password' };
const CAROL = { email: 'carol@example.com', password: 'carol-password' };
const ROOT = { email: 'root@example.com', password: 'root-password' };
const APP = 'app.corp.test';
const TEAM = 'team.corp.test';
const OFFICE = 'office.corp.test';
const DEVICES = 'devices.corp.test';
const SSH = 'ssh.corp.test';

describe('many instances on one etcd', { timeout: 120_000 }, () => {
  const t = tempDir('gatehouse-multi-');
  let etcd: EtcdCluster;
  let world: SignInWorld;
  let i1: SignInGatehouse;
  let i2: SignInGatehouse;
  let i3: SignInGatehouse;
  let g2: Gatehouse;
  let g3: Gatehouse;
  let backend: ConnectorBackend;
  let sshEcho: { port: number; close(): Promise<void> };
  const agents: ConnectorProcess[] = [];
  const tokens: Record<string, string> = {};
  let alice: WebClient;
  let metricsPort: number;

  const instances = () => [i1, i2, i3];
  const json = (c: WebClient) => world.client({ jar: c.jar, accept: 'application/json' });
  /** An API call with a bearer token. */
  const api = (at: SignInGatehouse, method: string, path: string, token: string, body?: unknown) =>
    world.client({ accept: 'application/json' }).request(at.url('gate.test', `/api/v1${path}`), {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      cookies: false,
    });
  /** A route request with a bearer token: the status and error code. */
  const withToken = async (at: SignInGatehouse, host: string, token: string) => {
    const r = await world.client({ accept: 'application/json' }).request(at.url(host, '/'), { headers: { authorization: `Bearer ${token}` }, cookies: false });
    return { status: r.status, code: r.code, body: r.body, backend: r.headers['x-backend'] };
  };
  const readyz = async () => (await request(`http://127.0.0.1:${metricsPort}/readyz`)).statusCode;
  const withCert = (at: SignInGatehouse, cert: { cert: string; key: string }) =>
    curl(['--cacert', world.ca.cert, '--cert', cert.cert, '--key', cert.key, '--resolve', `${DEVICES}:${at.port}:127.0.0.1`, at.url(DEVICES, '/')]);

  before(async () => {
    [etcd, backend, sshEcho] = await Promise.all([startEtcd({ dir: join(t.dir, 'etcd'), members: 3 }), startConnectorBackend('office'), startTcpEcho('ssh-echo')]);
    const common = {
      store: { etcd: { endpoints: etcd.endpoints } },
      identity: { secretsKey: SECRETS_KEY, admins: [ROOT.email], certificates: { trust: ['internal'] } },
      connectors: [{ name: 'office' }, { name: 'ssh' }],
      routes: [
        { name: 'app', host: APP, allow: { users: [ALICE.email] } },
        { name: 'team', host: TEAM, allow: { roles: ['staff'] } },
        { name: 'office', host: OFFICE, to: 'connector:office', auth: 'public' },
        { name: 'devices', host: DEVICES, auth: 'certificate', allow: { users: [ALICE.email] } },
        { name: 'ssh', host: SSH, to: undefined, tcp: 'connector:ssh', allow: { users: [ALICE.email] } },
      ],
      roles: [{ name: 'staff', grants: ['team'] }],
    };
    world = await startSignInWorld({
      users: [ALICE, BOB, CAROL, ROOT],
      extraGatehouses: 2,
      serve: true,
      ...common,
      // instance 1 is `gatehouse serve` with two workers: a connector keeps a session with each, and a relay from
      // another instance reaches whichever worker accepts it
      server: { peer: { listen: '127.0.0.1:0' }, metrics: '127.0.0.1:0', workers: 2 },
    });
    i1 = world.main;
    metricsPort = listeningPort(i1.child!, 'metrics');
    i2 = await world.startAnother({ ...common, server: { peer: { listen: '127.0.0.1:0' } } });
    i3 = await world.startAnother({ ...common, server: { peer: { listen: '127.0.0.1:0' } } });
    g2 = i2.gh!.g;
    g3 = i3.gh!.g;
    // the CA made on one instance reaches the others through etcd
    await g2.services.ca.createRoot({ by: 'test' });
    await waitFor(() => g2.state.tls.clientCas.length > 0 && g3.state.tls.clientCas.length > 0, 'instances 2 and 3 trusting the internal CA', 10_000);
    await i1.child!.waitFor((l) => l.event === 'ca_instance_certificate_issued', 10_000);
    await i1.child!.waitFor((l) => l.event === 'config_reloaded', 10_000);
    for (const name of ['office', 'ssh']) {
      const issued = await g2.services.ca.issue({ connector: name, issuedBy: 'test' });
      writeFileSync(join(t.dir, `${name}.crt`), issued.certPem + issued.chainPem);
      writeFileSync(join(t.dir, `${name}.key`), issued.keyPem!, { mode: 0o600 });
    }
    for (const u of [ALICE, BOB, CAROL, ROOT]) tokens[u.email] = (await g2.services.sessions.issueToken(u.email, 'tests', 3_600_000, 'api')).token;
  });

  after(async () => {
    await Promise.all(agents.map((a) => a.stop('SIGKILL')));
    await world?.close();
    await etcd?.close();
    await Promise.all([backend?.close(), sshEcho?.close()]);
    t.cleanup();
  });

  it('a sign-in through instance 1 holds on instances 2 and 3: cookies, the assertion, the API', async () => {
    alice = world.client();
    const { last } = await signInOverHttp(alice, i1.url(APP, '/first'), ALICE);
    assert.equal(last.status, 200, last.body.slice(0, 300));
    for (const at of [i2, i3]) {
      const r = await json(alice).request(at.url(APP, '/next'));
      assert.equal(r.status, 200, `instance on ${at.port}: ${r.body.slice(0, 300)}`);
      const seen = JSON.parse(r.body) as { headers: Record<string, string> };
      assert.equal(seen.headers['x-gatehouse-user'], ALICE.email);
      // signed by the keys every instance shares, published by each
      const claims = await verifyAssertion(alice, at.port, seen.headers['x-gatehouse-jwt-assertion']!, APP);
      assert.equal(claims.email, ALICE.email);
      const me = await json(alice).request(at.url('gate.test', '/api/v1/me'));
      assert.equal(me.status, 200, me.body);
      assert.equal((JSON.parse(me.body) as { email: string }).email, ALICE.email);
    }
  });

  it('a sign-out on instance 2 ends the session on instance 1 within a second', async (c) => {
    const before = alice.jar.clone();
    const out = await alice.request(i2.url(APP, '/.gatehouse/logout'));
    assert.equal(out.status, 302);
    const stale = world.client({ jar: before, accept: 'application/json' });
    const ms = await until(async () => (await stale.request(i1.url(APP, '/after'))).status === 401, 'instance 1 refusing the session', 1000);
    c.diagnostic(`sign-out on instance 2 refused on instance 1 after ${ms} ms`);
    const r = await stale.request(i3.url(APP, '/after'));
    assert.equal(r.status, 401);
    assert.equal(r.code, 'ERR_NOT_SIGNED_IN');
  });

  it('a device certificate revoked on instance 1 is refused on instance 3 within a second', async (c) => {
    const issued = await g2.services.ca.issue({ user: ALICE.email, device: 'laptop', issuedBy: 'test' });
    const files = { cert: join(t.dir, 'laptop.crt'), key: join(t.dir, 'laptop.key') };
    writeFileSync(files.cert, issued.certPem + issued.chainPem);
    writeFileSync(files.key, issued.keyPem!, { mode: 0o600 });
    for (const at of instances()) assert.equal((await withCert(at, files)).status, 200);
    const revoked = await api(i1, 'POST', `/certificates/${issued.record.serial}/revoke`, tokens[ROOT.email]!, { reason: 'lost' });
    assert.equal(revoked.status, 200, revoked.body);
    const ms = await until(async () => (await withCert(i3, files)).headers['x-gatehouse-error'] === 'ERR_CERT_REVOKED', 'instance 3 refusing the certificate', 1000);
    c.diagnostic(`certificate revoked on instance 1 refused on instance 3 after ${ms} ms (curl runs included)`);
    const r = await withCert(i2, files);
    assert.equal(r.status, 403);
    assert.equal(r.headers['x-gatehouse-error'], 'ERR_CERT_REVOKED');
  });

  it('a member added on instance 3 is let in on instances 1 and 2 within a second; disabled, refused as fast', async (c) => {
    assert.equal((await withToken(i1, TEAM, tokens[BOB.email]!)).code, 'ERR_POLICY_DENIED');
    const added = await api(i3, 'PUT', `/roles/staff/members/${BOB.email}`, tokens[ROOT.email]!, {});
    assert.equal(added.status, 200, added.body);
    const ms = await until(async () => (await withToken(i1, TEAM, tokens[BOB.email]!)).status === 200, 'instance 1 letting bob in', 1000);
    assert.equal((await withToken(i2, TEAM, tokens[BOB.email]!)).status, 200);
    c.diagnostic(`membership added on instance 3 used on instance 1 after ${ms} ms`);

    const disabled = await api(i3, 'POST', `/users/${BOB.email}/disable`, tokens[ROOT.email]!, {});
    assert.equal(disabled.status, 200, disabled.body);
    const off = await until(async () => (await withToken(i1, TEAM, tokens[BOB.email]!)).status !== 200, 'instance 1 refusing bob', 1000);
    c.diagnostic(`user disabled on instance 3 refused on instance 1 after ${off} ms`);
    assert.notEqual((await withToken(i2, TEAM, tokens[BOB.email]!)).status, 200);
  });

  it('a connector held by instance 1 serves requests arriving at instances 2 and 3, and a TCP tunnel through instance 2', async () => {
    for (const [name, to] of [['office', `http://127.0.0.1:${backend.port}`], ['ssh', `127.0.0.1:${sshEcho.port}`]] as const) {
      const a = startConnector(t.dir, ['--via', i1.url('gate.test', ''), '--name', name, '--to', to, '--ca', world.ca.cert, '--cert', join(t.dir, `${name}.crt`), '--key', join(t.dir, `${name}.key`)]);
      agents.push(a);
      await a.waitFor(event('connector_connected'));
    }
    // the presence records reach the other instances' memory through etcd
    for (const at of [i2, i3, i1]) {
      await until(async () => (await withToken(at, OFFICE, tokens[ALICE.email]!)).status === 200, `instance on ${at.port} reaching the connector`, 3000);
      assert.equal((await withToken(at, OFFICE, tokens[ALICE.email]!)).backend, 'office');
    }
    // the API on instance 3 lists the sessions with the instance that holds them
    type Listed = { connectors: Array<{ name: string; sessions: Array<{ instance: string | null; worker: string }> }> };
    let connectors: Listed['connectors'] = [];
    await until(async () => {
      const listed = await api(i3, 'GET', '/connectors', tokens[ROOT.email]!);
      assert.equal(listed.status, 200, listed.body);
      connectors = (JSON.parse(listed.body) as Listed).connectors;
      return connectors.every((c) => c.sessions.length === 2);
    }, 'each connector holding a session with both workers of instance 1', 5000);
    for (const c of connectors) assert.deepEqual(c.sessions.map((x) => x.worker).sort(), ['1/2', '2/2'], `${c.name}: a session with each worker of instance 1`);
    const sessions = connectors.flatMap((c) => c.sessions);
    // instance 1 runs as `gatehouse serve`: its id is the one that is neither 2's nor 3's
    assert.equal(sessions.length, 4, JSON.stringify(sessions));
    assert.equal(new Set(sessions.map((x) => x.instance)).size, 1, JSON.stringify(sessions));
    assert.ok(typeof sessions[0]!.instance === 'string' && ![g2.instance, g3.instance].includes(sessions[0]!.instance), JSON.stringify(sessions));
    const relayed = g2.metrics.snapshot().find((m) => m.name === 'gatehouse_peer_relays_total');
    assert.ok(relayed && Object.entries(relayed.values).some(([k, v]) => k.includes('direction="out"') && k.includes('result="ok"') && Number(v) > 0), 'instance 2 relayed');

    const { response, tunnel } = await connectRoute(`${SSH}:22`, { port: i2.port, ca: world.ca.certPem, headers: { 'proxy-authorization': `Bearer ${tokens[ALICE.email]}` } });
    assert.equal(response.status, 200, response.raw);
    const text = await new Promise<string>((resolve) => {
      let got = '';
      tunnel.on('data', (c: Buffer) => {
        got += c.toString();
        if (got.includes('hello through instance 2')) resolve(got);
      });
      tunnel.resume();
      tunnel.write('hello through instance 2');
    });
    assert.match(text, /^ssh-echo\n/);
    tunnel.destroy();
  });

  it('the peer listener lets in other instances only: no certificate, or a device certificate, is refused', async () => {
    const device = await g2.services.ca.issue({ user: ALICE.email, device: 'peer-probe', issuedBy: 'test' });
    const attempt = (credentials: { cert?: string; key?: string }) =>
      new Promise<string>((resolve) => {
        const session = http2Connect(g2.peerAddress!, { ca: g2.services.ca.caBundlePem(), servername: `${g2.instance!.toLowerCase()}.instance.gatehouse.invalid`, ...credentials });
        session.on('error', (err) => resolve(`session error: ${err.message}`));
        const stream = session.request({ ':method': 'CONNECT', ':authority': 'office.connector.invalid:443' });
        stream.on('response', (h) => resolve(`status ${String(h[':status'])}`));
        stream.on('error', (err) => resolve(`stream error: ${err.message}`));
        stream.on('close', () => resolve('closed'));
        setTimeout(() => resolve('no answer'), 3000).unref();
      }).finally(() => undefined);
    const anonymous = await attempt({});
    assert.doesNotMatch(anonymous, /status/, anonymous);
    const withDevice = await attempt({ cert: device.certPem + device.chainPem, key: device.keyPem! });
    assert.doesNotMatch(withDevice, /status/, withDevice);
    // TLS takes it (it chains to the internal CA); the relay does not (it is no instance's)
    await waitFor(() => i2.gh!.lines.some((l) => l.event === 'peer_refused' && /device certificate/.test(String(l.reason))), 'the relay refusing the device certificate', 2000);
  });

  it('losing the etcd leader changes nothing for users: sign-in, requests, API changes and relays carry on at once', async (c) => {
    const leader = await etcd.leader();
    assert.ok(leader, 'a leader to kill');
    await leader.kill();
    const lost = Date.now();
    // no waiting for the election: a write that meets it waits for the new leader, or finds out whether it went through
    alice = world.client();
    const { last } = await signInOverHttp(alice, i3.url(APP, '/again'), ALICE);
    assert.equal(last.status, 200, last.body.slice(0, 300));
    for (const at of instances()) assert.equal((await json(alice).request(at.url(APP, '/'))).status, 200);
    const added = await api(i2, 'PUT', `/roles/staff/members/${CAROL.email}`, tokens[ROOT.email]!, {});
    assert.equal(added.status, 200, added.body);
    await until(async () => (await withToken(i1, TEAM, tokens[CAROL.email]!)).status === 200, 'carol let in on instance 1', 1000);
    assert.equal((await withToken(i3, OFFICE, tokens[ALICE.email]!)).status, 200);
    c.diagnostic(`sign-in, requests and a change done ${Date.now() - lost} ms after the leader was killed`);
    await leader.start();
  });

  it('with every etcd member down: signed-in users are served from memory, changes are refused with 503, /readyz is 503', async (c) => {
    const device = await g2.services.ca.issue({ user: ALICE.email, device: 'desktop', issuedBy: 'test' });
    const files = { cert: join(t.dir, 'desktop.crt'), key: join(t.dir, 'desktop.key') };
    writeFileSync(files.cert, device.certPem + device.chainPem);
    writeFileSync(files.key, device.keyPem!, { mode: 0o600 });
    await until(async () => (await withCert(i1, files)).status === 200, 'the new certificate known to instance 1', 2000);
    assert.equal(await readyz(), 200);

    const stopping = Date.now();
    await Promise.all(etcd.members.map((m) => m.stop()));
    c.diagnostic(`etcd stopped in ${Date.now() - stopping} ms`);
    const served = Date.now();
    for (const at of instances()) {
      assert.equal((await json(alice).request(at.url(APP, '/outage'))).status, 200, 'the session, from memory');
      assert.equal((await withToken(at, APP, tokens[ALICE.email]!)).status, 200, 'the token, from memory');
      assert.equal((await withCert(at, files)).status, 200, 'the certificate, from memory');
    }
    assert.equal((await withToken(i2, OFFICE, tokens[ALICE.email]!)).status, 200, 'the relay to the connector on instance 1');
    c.diagnostic(`served from memory in ${Date.now() - served} ms`);

    const started = Date.now();
    const change = await api(i2, 'PUT', `/roles/staff/members/${ALICE.email}`, tokens[ROOT.email]!, {});
    const refused = JSON.parse(change.body) as { error: { code: string; message: string } };
    assert.equal(change.status, 503);
    assert.equal(change.code, 'ERR_STORE_UNAVAILABLE');
    assert.equal(refused.error.code, 'ERR_STORE_UNAVAILABLE');
    assert.match(refused.error.message, /unreachable.*nothing was changed/);
    assert.doesNotMatch(refused.error.message, /127\.0\.0\.1/, 'no etcd address reaches the client');
    c.diagnostic(`a change refused after ${Date.now() - started} ms with etcd down`);

    // so does opening a TCP tunnel (its record is written to the store)
    const tcp = await connectRoute(`${SSH}:22`, { port: i2.port, ca: world.ca.certPem, headers: { 'proxy-authorization': `Bearer ${tokens[ALICE.email]}` } });
    assert.equal(tcp.response.status, 503, tcp.response.raw);
    assert.equal(tcp.response.headers['x-gatehouse-error'], 'ERR_STORE_UNAVAILABLE');
    tcp.tunnel.destroy();
    // a new sign-in needs the store: refused as clearly
    const stranger = world.client();
    const login = await stranger.follow(i1.url(APP, '/'), { stop: (r) => r.url.pathname === '/.gatehouse/login' && r.status !== 302 });
    assert.equal(login.last.status, 503, login.last.body.slice(0, 300));
    assert.equal(login.last.code, 'ERR_STORE_UNAVAILABLE');
    // an unknown token is simply invalid, at once
    const unknownAt = Date.now();
    assert.equal((await withToken(i3, APP, 'gh_unknown-token-0123456789')).code, 'ERR_TOKEN_INVALID');
    assert.ok(Date.now() - unknownAt < 1000, 'an unknown token does not wait on etcd');

    assert.equal(await readyz(), 503);
    assert.equal(await g2.ready(), false);
    assert.equal(await g3.ready(), false);
  });

  it('etcd started again is caught up with: ready again, changes go through and reach every instance', async (c) => {
    const back = Date.now();
    await Promise.all(etcd.members.map((m) => m.start({ wait: false })));
    await Promise.all(etcd.members.map((m) => m.ready()));
    const ms = await until(async () => (await readyz()) === 200 && (await g2.ready()) && (await g3.ready()), 'every instance ready', 15_000);
    c.diagnostic(`every instance ready ${ms} ms after etcd answered again (${Date.now() - back} ms after its start)`);
    const removed = await api(i1, 'DELETE', `/roles/staff/members/${CAROL.email}`, tokens[ROOT.email]!);
    assert.equal(removed.status, 204, removed.body);
    await until(async () => (await withToken(i2, TEAM, tokens[CAROL.email]!)).status === 403, 'instance 2 refusing carol', 1000);
    await until(async () => (await withToken(i3, TEAM, tokens[CAROL.email]!)).status === 403, 'instance 3 refusing carol', 1000);
    // signing in works again, and the connector is still reachable from everywhere
    const fresh = world.client();
    const { last } = await signInOverHttp(fresh, i2.url(APP, '/back'), ALICE);
    assert.equal(last.status, 200);
    for (const at of instances()) assert.equal((await withToken(at, OFFICE, tokens[ALICE.email]!)).status, 200);
  });
});
