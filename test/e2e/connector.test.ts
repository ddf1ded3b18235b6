/**
 * Connectors end to end: a backend that Gatehouse may not dial itself (a route pointing at it directly is refused),
 * reached through `gatehouse connect` running as a real child process beside it. HTTP with identity headers and
 * redirect rewriting, a WebSocket, streams through the `Dialer` (what TCP routes use), enrollment with a one-time
 * token (a second use refused, a restart reusing the state folder), and every certificate that must not open a
 * connector session: self-signed, another CA's, a device certificate, another connector's name, revoked (also cut
 * off while connected). A connector certificate never passes for a device on a certificate route.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { statSync, writeFileSync } from 'node:fs';
import type { LookupFunction } from 'node:net';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import WebSocket from 'ws';
import {
  TestCa,
  curl,
  startHttpsEcho,
  signInOverHttp,
  startSignInWorld,
  verifyAssertion,
  waitFor,
  type SignInGatehouse,
  type SignInWorld,
  type WebClient,
} from '../harness/index.ts';
import { connectRoute, readAll as readTunnel } from '../harness/tunnels.ts';
import { event, startConnector, startConnectorBackend, startTcpEcho, type ConnectorBackend, type ConnectorProcess } from '../harness/connectors.ts';
import type { Gatehouse } from '../../src/app/index.ts';

const SECRETS_KEY = 'connector-e2e-secrets-key-0123456789';
const ALICE = { email: 'alice@example.com', password: 'wonderland', groups: ['staff'] };
const APP = 'app.corp.test';
const ROOT = 'root@example.com';

/** Every name resolves to 127.0.0.1 (for the ws client). */
const lookup: LookupFunction = (_host, options, callback) => {
  if (options.all) (callback as unknown as (e: null, a: { address: string; family: number }[]) => void)(null, [{ address: '127.0.0.1', family: 4 }]);
  else callback(null, '127.0.0.1', 4);
};

function writeCredentials(dir: string, name: string, certPem: string, keyPem: string): { cert: string; key: string } {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  writeFileSync(cert, certPem);
  writeFileSync(key, keyPem, { mode: 0o600 });
  return { cert, key };
}

function readAll(stream: Duplex): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    stream.on('data', (c: Buffer) => (text += c.toString()));
    stream.on('end', () => resolve(text));
    stream.on('error', reject);
  });
}

describe('connectors', () => {
  let world: SignInWorld;
  let main: SignInGatehouse;
  let g: Gatehouse;
  let backend: ConnectorBackend;
  let client: WebClient;
  let office: { cert: string; key: string; serial: string };
  const agents: ConnectorProcess[] = [];

  const via = () => `https://gate.test:${main.port}`;
  const connect = (name: string, to: string, extra: string[]): ConnectorProcess => {
    const a = startConnector(world.dir, ['--via', via(), '--name', name, '--to', to, '--ca', world.ca.cert, ...extra]);
    agents.push(a);
    return a;
  };
  /** A connector started with a certificate that must be refused: the refusal is logged with its code, and no session opens. */
  async function refused(name: string, cert: { cert: string; key: string }, code: string): Promise<void> {
    const before = g.services.connectors ? (await g.services.connectors.list()).flatMap((c) => c.sessions).length : 0;
    const a = connect(name, `127.0.0.1:${backend.port}`, ['--cert', cert.cert, '--key', cert.key]);
    const line = await a.waitFor(event('connector_refused'));
    assert.equal(line.code, code, JSON.stringify(line));
    assert.equal(a.count(event('connector_connected')), 0);
    await a.stop();
    assert.equal((await g.services.connectors.list()).flatMap((c) => c.sessions).length, before);
  }

  before(async () => {
    backend = await startConnectorBackend('office');
    world = await startSignInWorld({
      users: [ALICE],
      identity: { secretsKey: SECRETS_KEY, certificates: { trust: ['internal'] }, admins: [ROOT] },
      connectors: [{ name: 'office' }, { name: 'other' }, { name: 'enrolled' }, { name: 'tcp' }],
      routes: [
        { name: 'app', host: APP, to: 'connector:office', allow: { users: [ALICE.email] } },
        // the same backend named directly: Gatehouse may not dial loopback for a templated upstream
        { name: 'direct', host: 'direct-*.corp.test', to: `http://127.0.0.{1}:${backend.port}`, auth: 'public' },
        { name: 'enrolled', host: 'enrolled.corp.test', to: 'connector:enrolled', auth: 'public' },
        { name: 'devices', host: 'devices.corp.test', auth: 'certificate', allow: { users: [ALICE.email] } },
        { name: 'secure', host: 'secure.corp.test', to: 'connector:other', auth: 'public' },
        { name: 'ssh', host: 'ssh.corp.test', tcp: 'connector:tcp', to: undefined, allow: { users: [ALICE.email] } },
      ],
    });
    main = world.main;
    g = main.gh!.g;
    await g.services.ca.createRoot({ by: 'test' });
    await waitFor(() => g.state.tls.clientCas.length > 0, 'the state with the internal CA');
    const issued = await g.services.ca.issue({ connector: 'office', issuedBy: 'test' });
    office = { ...writeCredentials(world.dir, 'office', issued.certPem + issued.chainPem, issued.keyPem!), serial: issued.record.serial };
    const browser = world.client();
    await signInOverHttp(browser, main.url(APP, '/'), ALICE);
    client = world.client({ jar: browser.jar, accept: 'application/json' });
  });

  after(async () => {
    await Promise.all(agents.map((a) => a.stop('SIGKILL')));
    await world?.close();
    await backend?.close();
  });

  it('is refused with a route that names the backend directly, and reaches it through a connector', async () => {
    const direct = await curl(['--cacert', world.ca.cert, '--resolve', `direct-1.corp.test:${main.port}:127.0.0.1`, `https://direct-1.corp.test:${main.port}/`]);
    assert.equal(direct.status, 403, direct.body);
    assert.equal(direct.headers['x-gatehouse-error'], 'ERR_UPSTREAM_FORBIDDEN');
    // before any connector is connected: 502
    const none = await client.request(main.url(APP, '/nobody'));
    assert.equal(none.status, 502, none.body);
    assert.equal(none.code, 'ERR_UPSTREAM_UNREACHABLE');
    assert.match(none.body, /no connector named office is connected/);

    const a = connect('office', `http://127.0.0.1:${backend.port}`, ['--cert', office.cert, '--key', office.key]);
    const up = await a.waitFor(event('connector_connected'));
    assert.equal(up.worker, '1/1');
    await waitFor(() => main.gh!.lines.some((l) => l.event === 'connector_connected' && l.name === 'office'), 'the hub saw the connector');

    const r = await client.request(main.url(APP, '/hello?x=1'), { headers: { 'x-gatehouse-user': 'mallory@example.com' } });
    assert.equal(r.status, 200, r.body);
    assert.equal(r.headers['x-backend'], 'office');
    const seen = JSON.parse(r.body) as { url: string; headers: Record<string, string> };
    assert.equal(seen.url, '/hello?x=1');
    assert.equal(seen.headers.host, APP, 'the Host header is the route host');
    assert.equal(seen.headers['x-gatehouse-user'], ALICE.email, 'identity headers reach the backend, forged ones do not');
    assert.equal(seen.headers['x-forwarded-host'], `${APP}:${main.port}`);
    assert.equal(seen.headers['x-forwarded-proto'], 'https');
    assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1');
    const claims = await verifyAssertion(client, main.port, seen.headers['x-gatehouse-jwt-assertion']!, APP);
    assert.equal(claims.email, ALICE.email);

    // redirects to the name the backend knows itself by come back as the public host
    const moved = await client.request(main.url(APP, `/redirect?to=${encodeURIComponent(`http://${APP}/landed`)}`));
    assert.equal(moved.status, 302);
    assert.equal(moved.headers.location, `https://${APP}:${main.port}/landed`);

    // a streamed body both ways, and many requests in parallel (streams on the one session)
    const many = await Promise.all(Array.from({ length: 20 }, (_, i) => client.request(main.url(APP, `/n/${i}`))));
    assert.deepEqual(many.map((m) => m.status), Array(20).fill(200));

    // the presence record names the session
    const listed = await g.services.connectors.list();
    const sessions = listed.find((c) => c.name === 'office')!.sessions;
    assert.equal(sessions.length, 1);
    assert.equal(sessions[0]!.address, '127.0.0.1');
    assert.equal(sessions[0]!.target, `127.0.0.1:${backend.port}`);
    assert.equal(sessions[0]!.worker, '1/1');
    assert.deepEqual(listed.find((c) => c.name === 'other')!.sessions, []);
  });

  it('carries a WebSocket through the connector', async () => {
    const cookie = client.jar.header(new URL(main.url(APP, '/ws')))!;
    const ws = new WebSocket(`wss://${APP}:${main.port}/ws`, { ca: world.ca.certPem, lookup, headers: { cookie } } as WebSocket.ClientOptions);
    const messages: string[] = [];
    ws.on('message', (d) => messages.push(String(d)));
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('unexpected-response', (_req, res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => reject(new Error(`refused: ${res.statusCode} ${String(res.headers['x-gatehouse-error'])} ${body}`)));
      });
      ws.once('error', reject);
    });
    ws.send('ping through the connector');
    await waitFor(() => messages.length >= 2, 'the greeting and the echo');
    assert.deepEqual(messages, [`hello office ${ALICE.email}`, 'echo ping through the connector']);
    ws.close();
  });

  it('makes the TLS connection to an https:// backend itself (Gatehouse speaks plain HTTP inside the stream)', async () => {
    const cert = world.ca.server(['localhost']);
    const https = await startHttpsEcho(cert.certPem, cert.keyPem);
    const issued = await g.services.ca.issue({ connector: 'other', issuedBy: 'test' });
    const files = writeCredentials(world.dir, 'other', issued.certPem + issued.chainPem, issued.keyPem!);
    const get = () => curl(['--cacert', world.ca.cert, '--resolve', `secure.corp.test:${main.port}:127.0.0.1`, `https://secure.corp.test:${main.port}/tls`]);
    // without the backend's CA the connector refuses the backend's certificate: 502
    const untrusting = connect('other', `https://localhost:${https.port}`, ['--cert', files.cert, '--key', files.key]);
    await untrusting.waitFor(event('connector_connected'));
    const refusedBackend = await get();
    assert.equal(refusedBackend.status, 502, refusedBackend.body);
    assert.match(refusedBackend.body, /could not reach its backend localhost:\d+: .*(?:certificate|CERT)/);
    await untrusting.stop();
    const trusting = connect('other', `https://localhost:${https.port}`, ['--cert', files.cert, '--key', files.key, '--to-ca', world.ca.cert]);
    await trusting.waitFor(event('connector_connected'));
    await waitFor(() => main.gh!.lines.filter((l) => l.event === 'connector_connected' && l.name === 'other').length === 2, 'the second session');
    const r = await get();
    assert.equal(r.status, 200, r.body);
    assert.equal(r.headers['x-backend'], 'echo');
    assert.equal((JSON.parse(r.body) as { headers: Record<string, string> }).headers.host, 'secure.corp.test');
    await trusting.stop();
    await https.close();
  });

  it('carries TCP: byte streams through the Dialer, and a tcp route to a connector', async () => {
    const echo = await startTcpEcho('tcp-echo');
    const issued = await g.services.ca.issue({ connector: 'tcp', issuedBy: 'test' });
    const files = writeCredentials(world.dir, 'tcp', issued.certPem + issued.chainPem, issued.keyPem!);
    const a = connect('tcp', `127.0.0.1:${echo.port}`, ['--cert', files.cert, '--key', files.key]);
    await a.waitFor(event('connector_connected'));
    await waitFor(() => main.gh!.lines.some((l) => l.event === 'connector_connected' && l.name === 'tcp'), 'the tcp session');
    const stream = await g.services.connectors.dial('tcp');
    const text = readAll(stream);
    stream.write('SSH-2.0-test\n');
    stream.end('bye\n');
    assert.equal(await text, 'tcp-echo\nSSH-2.0-test\nbye\n', 'bytes both ways, half-close passed on');
    await assert.rejects(g.services.connectors.dial('nobody'), { code: 'ERR_UPSTREAM_UNREACHABLE' });

    // `tcp: connector:tcp`, as `gatehouse tunnel` opens it: a CONNECT to the route with a bearer token
    const token = (await g.services.sessions.issueToken(ALICE.email, 'ssh', 600_000, 'cli')).token;
    const { response, tunnel } = await connectRoute('ssh.corp.test:22', { port: main.port, ca: world.ca.certPem, headers: { 'proxy-authorization': `Bearer ${token}` } });
    assert.equal(response.status, 200, response.raw);
    const through = readTunnel(tunnel);
    tunnel.write('SSH-2.0-OpenSSH_9.2\r\n');
    tunnel.end();
    assert.equal((await through).toString(), 'tcp-echo\nSSH-2.0-OpenSSH_9.2\r\n');

    // the backend gone: the connector says it cannot reach it, and the dial fails with that
    await echo.close();
    await assert.rejects(g.services.connectors.dial('tcp'), (err: Error & { code?: string }) => err.code === 'ERR_UPSTREAM_UNREACHABLE' && /could not reach its backend 127\.0\.0\.1:\d+: ECONNREFUSED/.test(err.message));
    await a.stop();
  });

  it('enrolls with a one-time token, keeps its key in the state folder, and refuses the token a second time', async () => {
    // the API: root only, for a configured connector; the token is shown once with the command that uses it
    const api = (path: string, token: string, method = 'GET') =>
      client.request(`https://gate.test:${main.port}/api/v1${path}`, { method, cookies: false, headers: { authorization: `Bearer ${token}`, accept: 'application/json' } });
    const rootToken = (await g.services.sessions.issueToken(ROOT, 'test', 600_000, 'api')).token;
    const aliceToken = (await g.services.sessions.issueToken(ALICE.email, 'test', 600_000, 'api')).token;
    assert.equal((await api('/connectors', aliceToken)).code, 'ERR_FORBIDDEN');
    assert.equal((await api('/connectors/enrolled/enrollment', aliceToken, 'POST')).code, 'ERR_FORBIDDEN');
    assert.equal((await api('/connectors/nowhere/enrollment', rootToken, 'POST')).code, 'ERR_NOT_FOUND');
    const answer = await api('/connectors/enrolled/enrollment', rootToken, 'POST');
    assert.equal(answer.status, 201, answer.body);
    const enrollment = JSON.parse(answer.body) as { name: string; token: string; expires: string; command: string };
    assert.match(enrollment.token, /^ghc_[A-Za-z0-9_-]{40,}$/);
    assert.equal(enrollment.command, `gatehouse connect --via https://gate.test:${main.port} --name enrolled --to http://BACKEND:PORT --enroll ${enrollment.token} --state /var/lib/gatehouse-connector/enrolled`);
    const listed = JSON.parse((await api('/connectors', rootToken)).body) as { connectors: Array<{ name: string; sessions: Array<{ worker: string }> }> };
    assert.deepEqual(listed.connectors.map((c) => c.name), ['office', 'other', 'enrolled', 'tcp']);
    assert.equal(listed.connectors[0]!.sessions[0]!.worker, '1/1');
    const state = join(world.dir, 'enrolled-state');
    const first = connect('enrolled', `127.0.0.1:${backend.port}`, ['--enroll', enrollment.token, '--state', state]);
    await first.waitFor(event('connector_enrolled'));
    await first.waitFor(event('connector_connected'));
    assert.equal(statSync(join(state, 'connector.key')).mode & 0o777, 0o600);
    assert.equal(statSync(join(state, 'connector.crt')).mode & 0o777, 0o600);
    const r = await curl(['--cacert', world.ca.cert, '--resolve', `enrolled.corp.test:${main.port}:127.0.0.1`, `https://enrolled.corp.test:${main.port}/e`]);
    assert.equal(r.status, 200, r.body);
    assert.equal(r.headers['x-backend'], 'office');

    // the same token again (another folder): refused, one line on stderr, exit 1
    const second = connect('enrolled', `127.0.0.1:${backend.port}`, ['--enroll', enrollment.token, '--state', join(world.dir, 'enrolled-2')]);
    assert.equal(await second.exited, 1);
    assert.match(second.stderr.join('\n'), /^gatehouse: .*refused: the enrollment token is unknown, used, expired or for another connector$/m);

    // restarted with the same folder and no token: it reuses its key and certificate
    assert.equal(await first.stop(), 0, 'SIGTERM: a graceful stop, exit 0');
    assert.ok(first.lines.some(event('connector_stopped')));
    const again = connect('enrolled', `127.0.0.1:${backend.port}`, ['--state', state]);
    await again.waitFor(event('connector_credentials_loaded'));
    await again.waitFor(event('connector_connected'));
    await again.stop();
    const audit = await g.store.list<{ action: string; target: string; actor: string }>('audit');
    assert.ok(audit.some((a) => a.value.action === 'connector.enrollment.create' && a.value.target === 'connector:enrolled' && a.value.actor === ROOT));
    const records = await g.store.list('connector-enrollment');
    assert.equal(records.length, 0, 'the token was taken');
  });

  it('refuses self-signed, foreign, device and misnamed certificates', async () => {
    const selfKey = join(world.dir, 'self.key');
    const selfCert = join(world.dir, 'self.crt');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', selfKey, '-out', selfCert, '-days', '1', '-subj', '/OU=gatehouse-connector/CN=office'], { stdio: 'ignore' });
    await refused('office', { cert: selfCert, key: selfKey }, 'ERR_CERT_UNTRUSTED');
    const foreign = new TestCa(world.dir, 'foreign', '/CN=Gatehouse internal CA/O=Gatehouse');
    await refused('office', foreign.client('/O=Gatehouse/OU=gatehouse-connector/CN=office'), 'ERR_CERT_UNTRUSTED');
    const device = await g.services.ca.issue({ user: ALICE.email, issuedBy: 'test' });
    await refused('office', writeCredentials(world.dir, 'alice-device', device.certPem, device.keyPem!), 'ERR_CERT_INVALID');
    await refused('other', office, 'ERR_CERT_SUBJECT_MISMATCH');
  });

  it('never takes a connector certificate for a device on a certificate route', async () => {
    const device = await g.services.ca.issue({ user: ALICE.email, issuedBy: 'test' });
    const files = writeCredentials(world.dir, 'alice-2', device.certPem, device.keyPem!);
    const get = (cert: { cert: string; key: string }) =>
      curl(['--cacert', world.ca.cert, '--resolve', `devices.corp.test:${main.port}:127.0.0.1`, '--cert', cert.cert, '--key', cert.key, `https://devices.corp.test:${main.port}/`]);
    const ok = await get(files);
    assert.equal(ok.status, 200, ok.body);
    const no = await get(office);
    assert.equal(no.status, 403, no.body);
    assert.equal(no.headers['x-gatehouse-error'], 'ERR_CERT_INVALID');
    assert.match(no.body, /connector certificate/);
  });

  it('cuts a connector off the moment its certificate is revoked, and refuses it from then on', async () => {
    const issued = await g.services.ca.issue({ connector: 'office', issuedBy: 'test' });
    const files = writeCredentials(world.dir, 'office-revoked', issued.certPem + issued.chainPem, issued.keyPem!);
    const a = connect('office', `127.0.0.1:${backend.port}`, ['--cert', files.cert, '--key', files.key]);
    const up = await a.waitFor(event('connector_connected'));
    const session = String(up.session);
    await g.services.ca.revoke(issued.record.serial, 'test', 'lost');
    const cut = await a.waitFor(event('connector_disconnected'), 5_000);
    assert.equal(cut.session, session);
    await waitFor(() => main.gh!.lines.some((l) => l.event === 'connector_revoked' && l.session === session), 'the hub logged the revocation');
    await a.waitFor((l) => l.event === 'connector_refused' && l.code === 'ERR_CERT_REVOKED');
    await a.stop();
  });
});
