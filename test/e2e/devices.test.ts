/**
 * Devices and the internal CA through the whole front door, with the real `openssl` and `curl`: server certificates
 * per SNI without `server.tls`, device certificates from a CSR and as PKCS#12, the user a certificate names,
 * revocation within a second (keep-alive requests, WebSockets and CONNECT tunnels), expiry, `login+certificate`,
 * untrusted look-alikes and external CAs with `userField`, the CRL, disabling a user, and the CA key sealed on disk.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { Agent, request as httpsRequest } from 'node:https';
import type { LookupFunction, Socket } from 'node:net';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import WebSocket, { WebSocketServer } from 'ws';
import {
  TestCa,
  connectTls,
  curl,
  destroyProbes,
  openTunnel,
  parseRawResponse,
  runCli,
  signInOverHttp,
  startEcho,
  startGatehouse,
  startSignInWorld,
  tempDir,
  waitFor,
  type Backend,
  type CurlResult,
  type RawResponse,
  type RunningGatehouse,
  type SignInWorld,
} from '../harness/index.ts';
import { openssl, revokedSerialsInText } from '../pki/support.ts';
import { Keyring } from '../../src/authn/index.ts';
import { CA_ID, CA_KIND, InternalCa, type CaRecord, type IssuedCertificate } from '../../src/ca/index.ts';
import { openSqliteStore, type SqliteStore } from '../../src/store/index.ts';

const SECRETS_KEY = 'devices-e2e-secrets-key-0123456789';
const AUTH = 'gate.test';
const ALICE = 'alice@example.com';
const CAROL = 'carol@example.com';
const ROOT_ADMIN = 'root@example.com';

/** A CA service over the SQLite file Gatehouse uses, on its own connection: what another process (the CLI) does. */
interface Admin {
  readonly store: SqliteStore;
  readonly ca: InternalCa;
  readonly keyring: Keyring;
}

async function openAdmin(dbFile: string): Promise<Admin> {
  const store = await openSqliteStore(dbFile, { pollInterval: 20 });
  const keyring = Keyring.fromSecret(Buffer.from(SECRETS_KEY));
  const ca = new InternalCa({ store, keyring, secretsKeyConfigured: true });
  await ca.start();
  return { store, ca, keyring };
}

async function closeAdmin(admin: Admin | undefined): Promise<void> {
  admin?.ca.close();
  await admin?.store.close().catch(() => undefined);
}

/** Serials as openssl prints them (colons, leading zeros) and as Gatehouse stores them, made comparable. */
const norm = (serial: string) => serial.replace(/:/g, '').toUpperCase().replace(/^0+(?=.)/, '');

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs a command with stdin closed at once (s_client quits after the handshake), without throwing. */
function runClosed(command: string, args: readonly string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(command, args, { timeout: 10_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout: stdout.toString(), stderr: stderr.toString() });
    });
    child.stdin?.end();
  });
}

/** The refusal Gatehouse wrote as an HTTP answer (never a TLS alert), with nothing reaching the backend. */
function assertRefused(r: CurlResult, code: string, status = 403): void {
  assert.equal(r.exitCode, 0, `curl failed instead of getting an HTTP answer: ${r.stderr}`);
  assert.equal(r.status, status, r.body.slice(0, 400));
  assert.equal(r.headers['x-gatehouse-error'], code, r.body.slice(0, 400));
}

/** One GET over a keep-alive agent; reports which socket carried it and whether it was reused. */
function agentGet(agent: Agent, host: string, port: number, ca: string, path: string) {
  return new Promise<{ status: number; code: string | undefined; socket: Socket; reused: boolean }>((resolve, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', port, servername: host, ca, agent, path, headers: { host: `${host}:${port}` } }, (res) => {
      res.resume();
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, code: res.headers['x-gatehouse-error'] as string | undefined, socket: res.socket as Socket, reused: req.reusedSocket }),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

/** One keep-alive GET written on `socket`; resolves with the whole response (content-length or chunked). */
function requestOn(socket: Duplex, host: string, path: string, timeoutMs = 5000): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const done = (): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`no whole response within ${timeoutMs} ms: ${buf.toString('latin1').slice(0, 300)}`));
    }, timeoutMs);
    const onClose = (): void => {
      done();
      reject(new Error(`the connection closed before a whole response: ${buf.toString('latin1').slice(0, 300)}`));
    };
    const onData = (chunk: Buffer): void => {
      buf = Buffer.concat([buf, chunk]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = parseRawResponse(buf.subarray(0, end + 4).toString('latin1'));
      const body = buf.subarray(end + 4);
      const length = head.headers['content-length'];
      const complete = length !== undefined ? body.length >= Number(length) : /chunked/i.test(head.headers['transfer-encoding'] ?? '') && body.toString('latin1').endsWith('0\r\n\r\n');
      if (!complete) return;
      done();
      resolve(parseRawResponse(buf.toString('latin1')));
    };
    socket.on('data', onData);
    socket.once('close', onClose);
    socket.write(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
  });
}

/** Every name resolves to 127.0.0.1 (for the ws client, which connects by the URL's host). */
const lookup: LookupFunction = (_host, options, callback) => {
  if (options.all) (callback as unknown as (e: null, a: { address: string; family: number }[]) => void)(null, [{ address: '127.0.0.1', family: 4 }]);
  else callback(null, '127.0.0.1', 4);
};

interface OpenWs {
  readonly ws: WebSocket;
  readonly messages: string[];
  /** performance.now() when it closed */
  closedAt: number | undefined;
}

async function openWs(url: string, options: WebSocket.ClientOptions): Promise<OpenWs> {
  const ws = new WebSocket(url, { ...options, lookup } as WebSocket.ClientOptions);
  const out: OpenWs = { ws, messages: [], closedAt: undefined };
  ws.on('message', (data) => out.messages.push(String(data)));
  ws.on('close', () => (out.closedAt ??= performance.now()));
  ws.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('unexpected-response', (_req, res) => reject(new Error(`WebSocket refused: ${res.statusCode} ${String(res.headers['x-gatehouse-error'])}`)));
    ws.once('error', reject);
  });
  await waitFor(() => out.messages.length > 0, 'the greeting of the WebSocket backend');
  return out;
}

// ================================================================================================================

describe('devices: the internal CA at the front door (no server.tls)', () => {
  const t = tempDir('gatehouse-devices-');
  const file = (name: string) => join(t.dir, name);
  const dbFile = file('data/gatehouse.db');
  let admin: Admin;
  let external: TestCa;
  let twin: TestCa;
  let echo: Backend;
  let wss: WebSocketServer;
  let gh: RunningGatehouse;
  /** /ca/ca.crt as fetched from the auth host */
  let caFile: string;
  let caPem: string;
  const certs: Record<string, IssuedCertificate> = {};
  const openWebSockets: OpenWs[] = [];

  const at = (host: string, path: string, ...args: string[]) => [
    '--cacert', caFile,
    '--resolve', `${host}:${gh.httpsPort}:127.0.0.1`,
    ...args,
    `https://${host}:${gh.httpsPort}${path}`,
  ];
  /** curl to app.corp.test with a certificate; the request must reach the backend once, and returns what it saw */
  async function admitted(args: string[], path: string) {
    const before = echo.received.length;
    const r = await curl(at('app.corp.test', path, ...args));
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.status, 200, r.body.slice(0, 400));
    assert.equal(r.headers['x-backend'], 'echo');
    assert.equal(echo.received.length, before + 1);
    const seen = echo.received.at(-1)!;
    assert.equal(seen.url, path);
    return seen.headers;
  }
  async function refused(args: string[], code: string): Promise<void> {
    const before = echo.received.length;
    assertRefused(await curl(at('app.corp.test', '/secret', ...args)), code);
    assert.equal(echo.received.length, before, 'nothing reached the backend');
  }
  /** writes PEM (or PKCS#12) files for an issued certificate: NAME.crt, NAME.key, NAME.p12 */
  function save(name: string, issued: IssuedCertificate): { crt: string; key: string; p12: string } {
    const paths = { crt: file(`${name}.crt`), key: file(`${name}.key`), p12: file(`${name}.p12`) };
    writeFileSync(paths.crt, issued.certPem);
    if (issued.keyPem) writeFileSync(paths.key, issued.keyPem);
    if (issued.p12) writeFileSync(paths.p12, issued.p12);
    return paths;
  }

  before(async () => {
    // the CA exists before Gatehouse starts (as after `gatehouse ca init`), made by another connection to the store
    admin = await openAdmin(dbFile);
    await admin.ca.createRoot({ by: 'test' });
    external = new TestCa(t.dir, 'corp', '/CN=Corp Devices CA/O=Corp');
    // an untrusted CA with the very same name as the internal CA
    twin = new TestCa(t.dir, 'twin', '/O=Gatehouse/CN=Gatehouse internal CA');
    echo = await startEcho();
    wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await new Promise<void>((r) => wss.once('listening', () => r()));
    wss.on('connection', (socket, req) => {
      socket.send(JSON.stringify({ user: req.headers['x-gatehouse-user'], device: req.headers['x-gatehouse-device'] }));
      socket.on('message', (data) => socket.send(String(data)));
    });
    gh = await startGatehouse(t.dir, {
      server: { https: '127.0.0.1:0', authHost: AUTH, workers: 1, accessLog: false },
      store: { sqlite: { path: dbFile } },
      identity: {
        secretsKey: SECRETS_KEY,
        admins: [ROOT_ADMIN],
        certificates: { trust: ['internal', external.cert], userField: 'emailAddress' },
      },
      routes: [
        { name: 'app', host: 'app.corp.test', to: echo.origin, auth: 'certificate', allow: { users: [ALICE, CAROL, 'erin@example.com'] } },
        { name: 'apps', host: '*.apps.corp.test', to: echo.origin, auth: 'public' },
        { name: 'ws', host: 'ws.corp.test', to: `http://127.0.0.1:${(wss.address() as { port: number }).port}`, auth: 'certificate', allow: { users: [ALICE, CAROL] } },
      ],
    });
  });
  after(async () => {
    for (const o of openWebSockets) o.ws.terminate();
    destroyProbes();
    await gh?.close();
    await echo?.close();
    await new Promise<void>((r) => (wss ? wss.close(() => r()) : r()));
    await closeAdmin(admin);
    t.cleanup();
  });

  /** The certificate `openssl s_client` is shown for SNI `servername`, with its SANs and issuer as openssl prints them. */
  async function shownCertificate(servername: string): Promise<{ pem: string; san: string[]; issuer: string; verify: string }> {
    const r = await runClosed('openssl', ['s_client', '-connect', `127.0.0.1:${gh.httpsPort}`, '-servername', servername, '-CAfile', caFile]);
    const pem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/.exec(r.stdout)?.[0];
    assert.ok(pem, `s_client showed no certificate for ${servername}: ${r.stdout.slice(0, 300)} ${r.stderr.slice(0, 300)}`);
    const pemFile = file(`shown-${servername}.pem`);
    writeFileSync(pemFile, pem);
    const text = await openssl('x509', '-in', pemFile, '-noout', '-ext', 'subjectAltName', '-issuer');
    const san = /X509v3 Subject Alternative Name:\s*\n\s*(.+)\n/.exec(text)?.[1]?.split(/,\s*/) ?? [];
    const issuer = /issuer=(.+)\n/.exec(text)?.[1] ?? '';
    const verify = /Verify return code: (.+)\n/.exec(r.stdout)?.[1] ?? '';
    return { pem, san, issuer, verify };
  }

  it('1. serves /ca/ca.crt, and by SNI a certificate from the internal CA for each route host (a wildcard for a pattern route) that curl verifies with it', async () => {
    // a device bootstraps: it fetches the CA certificate from the auth host before it can verify anything
    const fetched = await curl(['-k', '--resolve', `${AUTH}:${gh.httpsPort}:127.0.0.1`, `https://${AUTH}:${gh.httpsPort}/ca/ca.crt`]);
    assert.equal(fetched.status, 200, fetched.stderr + fetched.body);
    assert.equal(fetched.headers['content-type'], 'application/x-pem-file');
    caPem = fetched.body;
    assert.equal(caPem, admin.ca.caCertificatePem(), 'the bundle of a root CA is its certificate');
    const caCert = new X509Certificate(caPem);
    assert.equal(caCert.ca, true);
    caFile = file('fetched-ca.crt');
    writeFileSync(caFile, caPem);

    const route = await shownCertificate('app.corp.test');
    assert.deepEqual(route.san, ['DNS:app.corp.test']);
    assert.equal(route.issuer, 'O = Gatehouse, CN = Gatehouse internal CA');
    assert.equal(route.verify, '0 (ok)');
    assert.ok(new X509Certificate(route.pem).verify(caCert.publicKey), 'signed by the internal CA key');
    const pattern = await shownCertificate('team-1.apps.corp.test');
    assert.deepEqual(pattern.san, ['DNS:*.apps.corp.test']);
    assert.equal(pattern.verify, '0 (ok)');
    const auth = await shownCertificate(AUTH);
    assert.deepEqual(auth.san, [`DNS:${AUTH}`]);
    assert.notEqual(route.pem, auth.pem);
    // each certificate came from the CA and is kept in the store (every process serves the same one)
    assert.equal((await admin.ca.serverCertificate(['app.corp.test'])).certPem.startsWith(route.pem.trim()), true);

    // curl verifies the route hosts with the fetched CA certificate and nothing else…
    const wildcard = await curl(at('team-1.apps.corp.test', '/through-wildcard'));
    assert.equal(wildcard.exitCode, 0, wildcard.stderr);
    assert.equal(wildcard.status, 200);
    assert.equal(echo.received.at(-1)!.url, '/through-wildcard');
    // …and refuses them with another CA, even one with the very same name
    const wrong = await curl(['--cacert', twin.cert, '--resolve', `app.corp.test:${gh.httpsPort}:127.0.0.1`, `https://app.corp.test:${gh.httpsPort}/`]);
    assert.equal(wrong.exitCode, 60, wrong.stderr);
    // a name without a route gets the auth host's certificate, which curl refuses for that name: the SAN is what counts
    const unknown = await curl(['--cacert', caFile, '--resolve', `nowhere.corp.test:${gh.httpsPort}:127.0.0.1`, `https://nowhere.corp.test:${gh.httpsPort}/`]);
    assert.equal(unknown.exitCode, 60, unknown.stderr);
    assert.match(unknown.stderr, /nowhere\.corp\.test/);
  });

  it('1b. without server.tls and without a CA, Gatehouse does not start, and says to run gatehouse ca init', async () => {
    await assert.rejects(
      startGatehouse(t.dir, {
        server: { https: '127.0.0.1:0', authHost: AUTH, workers: 1, accessLog: false },
        store: { sqlite: { path: file('empty/gatehouse.db') } },
        identity: { secretsKey: SECRETS_KEY, certificates: { trust: ['internal'] } },
        routes: [{ name: 'app', host: 'app.corp.test', to: echo.origin, auth: 'public' }],
      }, { name: 'no-ca.yaml' }),
      (err: Error) => {
        assert.match(err.message, /no CA yet: run `gatehouse ca init -c FILE`/);
        return true;
      },
    );
  });

  it('2. a certificate issued from an openssl CSR opens a route that allows its user; the backend learns user and device; another user is refused', async () => {
    const key = file('alice-laptop.key');
    const csr = file('alice-laptop.csr');
    // the CSR claims to be the root admin: only its public key counts
    await openssl('req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', csr, '-subj', `/CN=${ROOT_ADMIN}/emailAddress=${ROOT_ADMIN}`);
    certs.laptop = await admin.ca.issue({ user: ALICE, device: 'laptop', csrPem: readFileSync(csr, 'utf8'), issuedBy: 'test' });
    assert.equal(certs.laptop.keyPem, undefined, 'the key never left the device');
    const { crt } = save('alice-laptop', certs.laptop);
    assert.match(await openssl('verify', '-CAfile', caFile, crt), /OK/);
    const serial = (await openssl('x509', '-in', crt, '-noout', '-serial')).trim().split('=')[1]!;
    assert.equal(norm(serial), norm(certs.laptop.record.serial));

    // identity headers the client sends itself are replaced by what the certificate says
    const headers = await admitted(['--cert', crt, '--key', key, '-H', `X-Gatehouse-User: ${ROOT_ADMIN}`, '-H', 'X-Gatehouse-Device: 01'], '/hello?from=laptop');
    assert.equal(headers['x-gatehouse-user'], ALICE);
    assert.equal(headers['x-gatehouse-device'], certs.laptop.record.serial);

    certs.mallory = await admin.ca.issue({ user: 'mallory@example.com', device: 'pc', issuedBy: 'test' });
    const m = save('mallory', certs.mallory);
    await refused(['--cert', m.crt, '--key', m.key], 'ERR_POLICY_DENIED');
    // and without any certificate
    await refused([], 'ERR_CERT_MISSING');
  });

  it('3. a PKCS#12 issued without a CSR works in curl with its one-time password', async () => {
    certs.carol = await admin.ca.issue({ user: CAROL, device: 'desktop', issuedBy: 'test' });
    assert.ok(certs.carol.p12 && certs.carol.p12Password);
    const { p12 } = save('carol', certs.carol);
    const headers = await admitted(['--cert-type', 'P12', '--cert', `${p12}:${certs.carol.p12Password}`], '/from-p12');
    assert.equal(headers['x-gatehouse-user'], CAROL);
    assert.equal(headers['x-gatehouse-device'], certs.carol.record.serial);
    // the password is what opens it
    const wrong = await curl(at('app.corp.test', '/', '--cert-type', 'P12', '--cert', `${p12}:not-the-password`));
    assert.notEqual(wrong.exitCode, 0);
    assert.equal(wrong.status, 0);
  });

  it('7. an untrusted CA named like the internal CA, with the very same subject as a device certificate, is refused; a trusted external CA names its user by emailAddress', async () => {
    const look = twin.client(`/O=Gatehouse/CN=${ALICE}/emailAddress=${ALICE}`);
    assert.equal(new X509Certificate(look.certPem).subject, new X509Certificate(certs.laptop!.certPem).subject, 'same subject as alice’s laptop');
    assert.equal(new X509Certificate(twin.certPem).subject, new X509Certificate(caPem).subject, 'an issuer with the internal CA’s name');
    await refused(['--cert', look.cert, '--key', look.key], 'ERR_CERT_UNTRUSTED');

    const erin = external.client('/CN=Erin Example/O=Corp/emailAddress=Erin@Example.com');
    const headers = await admitted(['--cert', erin.cert, '--key', erin.key], '/from-corp');
    assert.equal(headers['x-gatehouse-user'], 'erin@example.com');
    assert.equal(norm(String(headers['x-gatehouse-device'])), norm(erin.serial));
    // the same CA naming someone the route does not allow
    const frank = external.client('/CN=Frank/O=Corp/emailAddress=frank@example.com');
    await refused(['--cert', frank.cert, '--key', frank.key], 'ERR_POLICY_DENIED');
  });

  it('4. a revocation by another process refuses the next request on an open keep-alive connection within 1 s, and new connections', async () => {
    certs.phone = await admin.ca.issue({ user: ALICE, device: 'phone', issuedBy: 'test' });
    const { certPem: cert, keyPem: key } = certs.phone;
    const serial = certs.phone.record.serial;
    const phone = save('phone', certs.phone);
    const agent = new Agent({ keepAlive: true, maxSockets: 1, cert, key: key! });
    try {
      const first = await agentGet(agent, 'app.corp.test', gh.httpsPort, caPem, '/before');
      assert.equal(first.status, 200);
      const t0 = performance.now();
      const { changed } = await admin.ca.revoke(serial, 'test', 'lost phone');
      assert.equal(changed, true);
      let last = first;
      let polls = 0;
      while (performance.now() - t0 < 1500) {
        last = await agentGet(agent, 'app.corp.test', gh.httpsPort, caPem, '/after');
        polls++;
        assert.equal(last.socket, first.socket, 'every request goes over the first connection');
        assert.equal(last.reused, true);
        if (last.status !== 200) break;
        await sleep(50);
      }
      const refusedAfter = performance.now() - t0;
      assert.equal(last.status, 403, `still ${last.status} after ${polls} requests`);
      assert.equal(last.code, 'ERR_CERT_REVOKED');
      assert.ok(refusedAfter < 1000, `refused after ${Math.round(refusedAfter)} ms`);
    } finally {
      agent.destroy();
    }
    // a new connection is refused too
    await refused(['--cert', phone.crt, '--key', phone.key], 'ERR_CERT_REVOKED');
    // alice's other device is not affected
    await admitted(['--cert', file('alice-laptop.crt'), '--key', file('alice-laptop.key')], '/laptop-still-works');
  });

  it('4b. a revocation by another process closes the WebSocket and the CONNECT tunnel opened with that certificate within 1 s, with no request to notice it', async () => {
    certs.tablet = await admin.ca.issue({ user: ALICE, device: 'tablet', issuedBy: 'test' });
    const { certPem: cert, keyPem: key } = certs.tablet;
    const serial = certs.tablet.record.serial;
    // a WebSocket with the tablet's certificate, and one with carol's (which must stay open)
    const tabletWs = await openWs(`wss://ws.corp.test:${gh.httpsPort}/live`, { ca: caPem, cert, key: key! });
    openWebSockets.push(tabletWs);
    assert.deepEqual(JSON.parse(tabletWs.messages[0]!), { user: ALICE, device: serial });
    const carolWs = await openWs(`wss://ws.corp.test:${gh.httpsPort}/live`, { ca: caPem, pfx: certs.carol!.p12, passphrase: certs.carol!.p12Password });
    openWebSockets.push(carolWs);
    assert.equal(JSON.parse(carolWs.messages[0]!).user, CAROL);

    // a CONNECT tunnel into the front door, opened with the tablet's certificate, a request answered inside it
    const outer = await connectTls({ port: gh.httpsPort, servername: 'app.corp.test', ca: caPem, cert, key: key! });
    const { response, tunnel } = await openTunnel(outer, 'app.corp.test:443');
    assert.equal(response.status, 200);
    const inner = await connectTls({ socket: tunnel, servername: 'app.corp.test', ca: caPem, cert, key: key! });
    let tunnelClosedAt: number | undefined;
    outer.once('close', () => (tunnelClosedAt ??= performance.now()));
    const inside = await requestOn(inner, 'app.corp.test', '/inside-tunnel');
    assert.equal(inside.status, 200, inside.raw.slice(0, 300));
    assert.equal(echo.received.at(-1)!.url, '/inside-tunnel');
    await sleep(150);
    assert.equal(tabletWs.closedAt, undefined, 'the WebSocket stays open until the revocation');
    assert.equal(tunnelClosedAt, undefined, 'the tunnel stays open until the revocation');

    // nothing asks Gatehouse anything from here on: only the store's change feed can tell it
    const t0 = performance.now();
    await admin.ca.revoke(serial, 'test', 'stolen tablet');
    await waitFor(() => tabletWs.closedAt !== undefined && tunnelClosedAt !== undefined, 'the WebSocket and the tunnel to close', 1500);
    assert.ok(tabletWs.closedAt! - t0 < 1000, `WebSocket closed after ${Math.round(tabletWs.closedAt! - t0)} ms`);
    assert.ok(tunnelClosedAt! - t0 < 1000, `tunnel closed after ${Math.round(tunnelClosedAt! - t0)} ms`);
    // (the log is flushed in batches)
    await waitFor(() => gh.lines.some((l) => l.event === 'certificate_revoked' && l.serial === serial), 'the certificate_revoked log line', 1000);
    const logged = gh.lines.find((l) => l.event === 'certificate_revoked' && l.serial === serial);
    assert.equal(logged?.droppedConnections, 2, JSON.stringify(logged));
    assert.equal(logged?.user, ALICE);

    // carol's WebSocket is untouched and still echoes
    assert.equal(carolWs.closedAt, undefined);
    carolWs.ws.send('still here');
    await waitFor(() => carolWs.messages.includes('still here'), 'carol’s echo');
  });

  it('9. disabling a user revokes their device certificate: refused on the next request, listed as revoked, their WebSocket closed', async () => {
    const p12 = ['--cert-type', 'P12', '--cert', `${file('carol.p12')}:${certs.carol!.p12Password}`];
    await admitted(p12, '/before-disable');
    const carolWs = openWebSockets.find((o) => o.messages[0]?.includes(CAROL))!;
    assert.equal(carolWs.closedAt, undefined);
    const result = await gh.g.services.directory.disable(CAROL, { email: ROOT_ADMIN });
    assert.equal(result.certificates, 1);
    await refused(p12, 'ERR_CERT_REVOKED');
    const listed = await gh.g.services.ca.list({ user: CAROL });
    assert.deepEqual(listed.map((r) => [r.serial, r.revoked?.reason]), [[certs.carol!.record.serial, 'user disabled']]);
    await waitFor(() => carolWs.closedAt !== undefined, 'carol’s WebSocket to close', 1000);
    // alice is not disabled
    await admitted(['--cert', file('alice-laptop.crt'), '--key', file('alice-laptop.key')], '/alice-after-carol');
  });

  it('8. /ca/crl parses with openssl and lists exactly the revoked serials; gatehouse ca crl prints the same', async () => {
    const expected = [certs.phone!.record.serial, certs.tablet!.record.serial, certs.carol!.record.serial].map(norm).sort();
    const r = await curl(at(AUTH, '/ca/crl'));
    assert.equal(r.status, 200, r.stderr);
    assert.equal(r.headers['content-type'], 'application/pkix-crl');
    const crlFile = file('served.crl');
    writeFileSync(crlFile, r.body);
    const text = await openssl('crl', '-in', crlFile, '-noout', '-text');
    assert.deepEqual(revokedSerialsInText(text).map(norm).sort(), expected);
    assert.match(await openssl('crl', '-in', crlFile, '-CAfile', caFile, '-noout'), /verify OK/);
    // openssl itself refuses the revoked phone certificate with this CRL, and accepts the laptop's
    const check = await runClosed('openssl', ['verify', '-crl_check', '-CAfile', caFile, '-CRLfile', crlFile, file('phone.crt')]);
    assert.notEqual(check.code, 0);
    assert.match(check.stdout + check.stderr, /certificate revoked/);
    assert.match(await openssl('verify', '-crl_check', '-CAfile', caFile, '-CRLfile', crlFile, file('alice-laptop.crt')), /OK/);

    const cli = await runCli(['ca', 'crl', '-c', gh.configFile]);
    assert.equal(cli.code, 0, cli.stderr);
    const cliFile = file('cli.crl');
    writeFileSync(cliFile, cli.stdout);
    assert.deepEqual(revokedSerialsInText(await openssl('crl', '-in', cliFile, '-noout', '-text')).map(norm).sort(), expected);
  });

  it('10. the CA key is nowhere in clear in the SQLite file and its WAL after all of this', async () => {
    const stored = await admin.store.get<CaRecord>(CA_KIND, CA_ID);
    assert.equal(stored?.value.state, 'active');
    const keyPem = admin.keyring.decrypt('ca-key', stored!.value.key);
    const key = createPrivateKey(keyPem);
    assert.ok(new X509Certificate(caPem).checkPrivateKey(key), 'the unsealed key is the CA key');
    const der = key.export({ type: 'pkcs8', format: 'der' });
    const scalar = Buffer.from(key.export({ format: 'jwk' }).d!, 'base64url');
    const body = keyPem.replace(/-----[A-Z ]+-----/g, '');
    const needles: Array<[string, Buffer]> = [
      ['PKCS#8 DER', der],
      ['base64 DER', Buffer.from(der.toString('base64'))],
      ['PEM body', Buffer.from(body.replace(/\s+/g, ''))],
      ['PEM in JSON', Buffer.from(JSON.stringify(keyPem).slice(1, 60))],
      ['private scalar', scalar],
      ['private scalar hex', Buffer.from(scalar.toString('hex'))],
      ...body.split('\n').filter((l) => l.length >= 40).map((l): [string, Buffer] => [`PEM line ${l.slice(0, 8)}…`, Buffer.from(l)]),
    ];
    const files = [dbFile, `${dbFile}-wal`, `${dbFile}-shm`].filter((p) => existsSync(p));
    const bytes = Buffer.concat(files.map((p) => readFileSync(p)));
    // the search does find what is stored in clear: a line of the CA certificate
    const certLine = caPem.split('\n')[3]!;
    assert.ok(certLine.length >= 60 && bytes.includes(certLine), 'the CA certificate is in the files (the search works)');
    for (const [what, needle] of needles) assert.equal(bytes.includes(needle), false, `${what} of the CA key is in ${files.join(', ')}`);
  });
});

// ================================================================================================================

describe('devices: an imported CA and an expired certificate', () => {
  const t = tempDir('gatehouse-devices-imported-');
  let admin: Admin;
  let issuer: TestCa;
  let echo: Backend;
  let gh: RunningGatehouse;

  before(async () => {
    issuer = new TestCa(t.dir, 'issuer', '/CN=Devices Root/O=Imported');
    const dbFile = join(t.dir, 'data/gatehouse.db');
    admin = await openAdmin(dbFile);
    await admin.ca.importCa({ certPem: issuer.certPem, keyPem: readFileSync(issuer.key, 'utf8'), by: 'test' });
    echo = await startEcho();
    gh = await startGatehouse(t.dir, {
      server: { https: '127.0.0.1:0', authHost: AUTH, workers: 1, accessLog: false },
      store: { sqlite: { path: dbFile } },
      identity: { secretsKey: SECRETS_KEY, certificates: { trust: ['internal'] } },
      routes: [{ name: 'app', host: 'app.corp.test', to: echo.origin, auth: 'certificate', allow: { users: [ALICE] } }],
    });
  });
  after(async () => {
    await gh?.close();
    await echo?.close();
    await closeAdmin(admin);
    t.cleanup();
  });

  const get = (cert: string, key: string) =>
    curl(['--cacert', issuer.cert, '--resolve', `app.corp.test:${gh.httpsPort}:127.0.0.1`, '--cert', cert, '--key', key, `https://app.corp.test:${gh.httpsPort}/x`]);

  it('5. an expired certificate signed by the CA key is refused with ERR_CERT_EXPIRED', async () => {
    // control: a current certificate of the same CA opens the route (the server certificate is the imported CA's too)
    const issued = await admin.ca.issue({ user: ALICE, issuedBy: 'test' });
    writeFileSync(join(t.dir, 'current.crt'), issued.certPem);
    writeFileSync(join(t.dir, 'current.key'), issued.keyPem!);
    const ok = await get(join(t.dir, 'current.crt'), join(t.dir, 'current.key'));
    assert.equal(ok.exitCode, 0, ok.stderr);
    assert.equal(ok.status, 200, ok.body);
    assert.equal(echo.received.at(-1)!.headers['x-gatehouse-user'], ALICE);

    // openssl 3.0 has no `x509 -not_before/-not_after`: TestCa backdates with `openssl ca -startdate/-enddate`
    const expired = issuer.client(`/O=Imported/CN=${ALICE}/emailAddress=${ALICE}`, { expired: true });
    assert.match(await openssl('x509', '-in', expired.cert, '-noout', '-enddate'), /notAfter=Feb {2}1 00:00:00 2020 GMT/);
    // its only fault is its age: signed by the CA key
    assert.match(await openssl('verify', '-no_check_time', '-CAfile', issuer.cert, expired.cert), /OK/);
    const before = echo.received.length;
    assertRefused(await get(expired.cert, expired.key), 'ERR_CERT_EXPIRED');
    // a current certificate signed with the same key outside Gatehouse (no record of its serial) is not valid either
    const unrecorded = issuer.client(`/O=Imported/CN=${ALICE}/emailAddress=${ALICE}`);
    assertRefused(await get(unrecorded.cert, unrecorded.key), 'ERR_CERT_INVALID');
    assert.equal(echo.received.length, before);
  });
});

// ================================================================================================================

describe('devices: login+certificate with internal-CA certificates', () => {
  const ALICE_LOGIN = { email: ALICE, password: 'alice-password' };
  let w: SignInWorld;
  let port: number;
  const files: Record<string, { crt: string; key: string; serial: string }> = {};
  let cookie: string;

  before(async () => {
    w = await startSignInWorld({
      users: [ALICE_LOGIN, { email: 'bob@example.com', password: 'bob-password' }],
      identity: { secretsKey: SECRETS_KEY, certificates: { trust: ['internal'] } },
      routes: [{ name: 'both', host: 'both.corp.test', auth: 'login+certificate', allow: { domains: ['example.com'] } }],
    });
    port = w.main.port;
    const g = w.main.gh!.g;
    // the CA is created while Gatehouse runs: it reloads and starts trusting it
    await g.services.ca.createRoot({ by: 'test' });
    const deadline = Date.now() + 5000;
    for (;;) {
      const r = await curl(['--cacert', w.ca.cert, '--resolve', `${AUTH}:${port}:127.0.0.1`, `https://${AUTH}:${port}/ca/ca.crt`]);
      if (r.status === 200) break;
      if (Date.now() > deadline) throw new Error(`/ca/ca.crt never appeared: ${r.status}`);
      await sleep(50);
    }
    for (const user of [ALICE, 'bob@example.com']) {
      const issued = await g.services.ca.issue({ user, device: 'laptop', issuedBy: 'test' });
      const name = user.split('@')[0]!;
      files[name] = { crt: join(w.dir, `${name}.crt`), key: join(w.dir, `${name}.key`), serial: issued.record.serial };
      writeFileSync(files[name].crt, issued.certPem);
      writeFileSync(files[name].key, issued.keyPem!);
    }
    const client = w.client();
    const login = `${w.main.authOrigin}/.gatehouse/login?return=${encodeURIComponent(w.main.url('both.corp.test', '/start'))}`;
    const { last } = await signInOverHttp(client, login, ALICE_LOGIN);
    assert.equal(last.status, 403);
    assert.equal(last.code, 'ERR_CERT_MISSING');
    cookie = client.jar.header(new URL(w.main.url('both.corp.test', '/')))!;
    assert.match(cookie, /__Host-gatehouse=/);
  });
  after(async () => {
    await w?.close();
  });

  const at = (...args: string[]) => [
    '--cacert', w.ca.cert,
    '--resolve', `both.corp.test:${port}:127.0.0.1`,
    '-H', 'Accept: application/json',
    '-H', `Cookie: ${cookie}`,
    ...args,
    w.main.url('both.corp.test', '/device'),
  ];

  it('6. another user’s certificate while signed in as alice is refused with ERR_CERT_WRONG_USER; her own is admitted', async () => {
    const before = w.echo.received.length;
    const wrong = await curl(at('--cert', files.bob!.crt, '--key', files.bob!.key));
    assertRefused(wrong, 'ERR_CERT_WRONG_USER');
    assert.match(wrong.body, /bob@example\.com/);
    assert.equal(w.echo.received.length, before, 'nothing reached the backend');

    const own = await curl(at('--cert', files.alice!.crt, '--key', files.alice!.key));
    assert.equal(own.status, 200, own.body.slice(0, 400));
    const seen = w.echo.received.slice(before);
    assert.equal(seen.length, 1);
    assert.equal(seen[0]!.headers['x-gatehouse-user'], ALICE);
    assert.equal(seen[0]!.headers['x-gatehouse-device'], files.alice!.serial);
  });
});
