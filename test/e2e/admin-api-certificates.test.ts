/**
 * Device certificates through the JSON API, end to end: a real OpenID provider, an in-process Gatehouse with
 * `identity.secretsKey` and `identity.certificates.trust: [internal]`, its internal CA created the way
 * `gatehouse ca init` would (Gatehouse reloads itself when the CA appears). Certificates are asked for with a CSR
 * made by the real openssl, or as a PKCS#12 that openssl opens; the PKCS#12 then opens an `auth: certificate` route
 * with the real curl, and stops opening it once revoked through the API.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AUTH_HOST, SESSION_COOKIE_NAME, curl, signInOverHttp, startSignInWorld, type SignInGatehouse, type SignInWorld, type WebClient, type WebResponse } from '../harness/index.ts';
import { openssl, run } from '../pki/support.ts';

const password = (email: string) => `${email.split('@')[0]}-password`;
const person = (email: string) => ({ email, password: password(email) });
const ROOT = person('root@example.com');
const BOB = person('bob@example.com');
const CAROL = person('carol@example.com');
const SECRETS_KEY = 'a-secrets-key-for-the-certificates-api-test';

interface CertificateJson {
  serial: string;
  kind: 'device' | 'connector';
  user: string | null;
  connector: string | null;
  device: string;
  subject: string;
  notBefore: string;
  notAfter: string;
  issuedBy: string;
  issued: string;
  revoked: { at: string; by: string; reason: string | null } | null;
}
interface IssuedJson {
  record: CertificateJson;
  certificate: string;
  chain: string;
  p12?: string;
  password?: string;
}
interface ErrorJson {
  error: { code: string; message: string; requestId: string };
}

/** Someone calling the API: with the session cookies in `client`'s jar, or with a bearer token. */
interface Caller {
  readonly email: string;
  readonly client: WebClient;
  readonly token?: string;
}

type Answer = WebResponse & { readonly json: unknown };

/** Polls `check` every 20 ms until it holds; fails after `ms`. */
async function eventually(check: () => Promise<boolean>, what: string, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** `AB:CD:…` in lower case: how `openssl x509 -serial`-like tools and people may write a serial. */
function colons(serial: string): string {
  return serial.toLowerCase().match(/../g)!.join(':');
}

describe('device certificates through the JSON API', () => {
  let w: SignInWorld;
  let bare: SignInGatehouse;
  let root: Caller;
  let bob: Caller;
  let carol: Caller;
  let caFile: string;
  const file = (name: string) => join(w.dir, name);
  const identity = {
    admins: [ROOT.email],
    secretsKey: SECRETS_KEY,
    certificates: { trust: ['internal'] },
  };
  const routes = [
    { name: 'app', host: 'app.corp.test', allow: { domains: ['example.com'] } },
    { name: 'device', host: 'device.corp.test', auth: 'certificate', allow: { users: [BOB.email] } },
  ];

  before(async () => {
    w = await startSignInWorld({ users: [ROOT, BOB, CAROL], identity, routes, extraGatehouses: 1 });
    const g = w.main.gh!.g;
    await g.services.ca.createRoot({ by: 'test', organisation: 'Acme' });
    // Gatehouse follows the CA (onCaChanged) and reloads: it trusts the CA once /ca/ca.crt is published
    const client = w.client();
    let published: WebResponse | undefined;
    await eventually(
      async () => {
        published = await client.request(w.main.url(AUTH_HOST, '/ca/ca.crt'));
        return published.status === 200;
      },
      '/ca/ca.crt is published',
      5000,
    );
    caFile = file('internal-ca.crt');
    writeFileSync(caFile, published!.body);
    assert.equal(new X509Certificate(published!.body).subject, 'O=Acme\nCN=Gatehouse internal CA');
    root = await signIn(ROOT);
    bob = await signIn(BOB);
    carol = await signIn(CAROL);
  });
  after(async () => {
    await w?.close();
  });

  async function signIn(user: { email: string; password: string }, on: SignInGatehouse = w.main): Promise<Caller> {
    const client = w.client();
    await signInOverHttp(client, on.url('app.corp.test', '/'), user);
    assert.ok(client.jar.get(AUTH_HOST, SESSION_COOKIE_NAME), `${user.email} has a session on the auth host`);
    return { email: user.email, client };
  }

  async function call(
    who: Caller,
    method: string,
    path: string,
    o: { body?: unknown; raw?: string; sameOrigin?: boolean; on?: SignInGatehouse } = {},
  ): Promise<Answer> {
    const body = o.raw ?? (o.body === undefined ? undefined : JSON.stringify(o.body));
    const headers: Record<string, string> = { accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (who.token) headers.authorization = `Bearer ${who.token}`;
    else if (method !== 'GET' && o.sameOrigin !== false) headers['sec-fetch-site'] = 'same-origin';
    const r = await who.client.request((o.on ?? w.main).url(AUTH_HOST, `/api/v1${path}`), {
      method,
      headers,
      ...(body !== undefined ? { body } : {}),
      cookies: who.token === undefined,
    });
    const type = String(r.headers['content-type'] ?? '');
    return { ...r, json: type.startsWith('application/json') && r.body ? (JSON.parse(r.body) as unknown) : undefined };
  }

  function expectOk<T>(r: Answer, status = 200): T {
    assert.equal(r.status, status, `${r.method} ${r.url.pathname}: ${r.body.slice(0, 400)}`);
    assert.equal(r.code, undefined);
    return r.json as T;
  }

  function expectError(r: Answer, status: number, code: string): ErrorJson {
    assert.equal(r.status, status, `${r.method} ${r.url.pathname}: ${r.body.slice(0, 400)}`);
    assert.equal(r.code, code);
    const e = r.json as ErrorJson;
    assert.equal(e.error.code, code);
    assert.equal(e.error.requestId, r.headers['x-request-id']);
    return e;
  }

  async function list(who: Caller, all = false): Promise<CertificateJson[]> {
    return expectOk<{ certificates: CertificateJson[] }>(await call(who, 'GET', all ? '/certificates?all=true' : '/certificates')).certificates;
  }

  /** A new key and CSR made by openssl (subject chosen by the holder: Gatehouse ignores it). */
  async function csr(name: string, subject = '/CN=admin@example.com/O=Evil'): Promise<string> {
    const path = file(`${name}.csr`);
    await openssl('req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', file(`${name}.key`), '-out', path, '-subj', subject);
    return readFileSync(path, 'utf8');
  }

  /** The `device` route with a PKCS#12 client certificate, through the real curl. */
  function visitWithP12(p12: string, pass: string, path = '/') {
    return curl([
      '--cacert', w.ca.cert,
      '--resolve', `device.corp.test:${w.main.port}:127.0.0.1`,
      '-H', 'Accept: application/json',
      '--cert-type', 'P12',
      '--cert', `${p12}:${pass}`,
      w.main.url('device.corp.test', path),
    ]);
  }

  /** bob's PKCS#12, issued in one test and used in the next ones */
  let p12File: string;
  let p12Password: string;
  let p12Serial: string;

  it('lists my certificates: none at first', async () => {
    assert.deepEqual(await list(bob), []);
  });

  it('issues a certificate for an openssl CSR: its key, Gatehouse\'s subject, the days asked for', async () => {
    const request = await csr('bob-laptop');
    const r = await call(bob, 'POST', '/certificates', { body: { device: 'laptop', csr: request, days: 30 } });
    const issued = expectOk<IssuedJson>(r, 201);
    assert.deepEqual(Object.keys(issued).sort(), ['certificate', 'chain', 'record'], 'no PKCS#12 and no password for a CSR');
    assert.equal(issued.chain, '', 'a root CA: nothing to send after the certificate');
    assert.equal(issued.record.user, BOB.email);
    assert.equal(issued.record.kind, 'device');
    assert.equal(issued.record.device, 'laptop');
    assert.equal(issued.record.issuedBy, BOB.email);
    assert.equal(issued.record.revoked, null);
    writeFileSync(file('bob-laptop.crt'), issued.certificate);
    assert.match(await openssl('verify', '-CAfile', caFile, file('bob-laptop.crt')), /OK/);
    const text = await openssl('x509', '-in', file('bob-laptop.crt'), '-noout', '-subject', '-serial');
    assert.match(text, /subject=O = Acme, CN = bob@example\.com, emailAddress = bob@example\.com/, 'the CSR\'s subject is ignored');
    assert.match(text, new RegExp(`serial=${issued.record.serial}`));
    // the certificate is for the CSR's key
    const pub = await openssl('pkey', '-in', file('bob-laptop.key'), '-pubout');
    assert.equal(new X509Certificate(issued.certificate).publicKey.export({ type: 'spki', format: 'pem' }), pub.trim() + '\n');
    const days = (Date.parse(issued.record.notAfter) - Date.now()) / 86_400_000;
    assert.ok(days > 29.9 && days < 30.1, `${days} days`);

    const mine = await list(bob);
    assert.deepEqual(mine.map((c) => c.serial), [issued.record.serial]);
    assert.deepEqual(mine[0], issued.record);
  });

  it('issues a PKCS#12 without a CSR: openssl opens it with the one-time password, and nothing keeps the password', async () => {
    const r = await call(bob, 'POST', '/certificates', { body: { device: 'phone' } });
    const issued = expectOk<IssuedJson>(r, 201);
    assert.ok(issued.p12 && issued.password, 'a PKCS#12 and its password');
    assert.match(issued.password, /^[A-Za-z0-9_-]{20}$/);
    p12File = file('bob-phone.p12');
    p12Password = issued.password;
    p12Serial = issued.record.serial;
    writeFileSync(p12File, Buffer.from(issued.p12, 'base64'));
    const opened = await openssl('pkcs12', '-in', p12File, '-passin', `pass:${p12Password}`, '-nokeys');
    assert.match(opened, /BEGIN CERTIFICATE/);
    assert.match(opened, /subject=O = Acme, CN = bob@example\.com, emailAddress = bob@example\.com/);
    const wrong = await run('openssl', ['pkcs12', '-in', p12File, '-passin', 'pass:not-the-password', '-nokeys']);
    assert.notEqual(wrong.code, 0, 'a wrong password does not open it');
    const days = (Date.parse(issued.record.notAfter) - Date.now()) / 86_400_000;
    assert.ok(days > 364.9 && days < 365.1, `365 days by default, not ${days}`);

    // the list and the audit log have the certificate, never the password or the PKCS#12
    const listed = await call(bob, 'GET', '/certificates');
    assert.ok(listed.body.includes(p12Serial));
    const audit = await call(root, 'GET', `/audit?target=certificate:${p12Serial}`);
    const records = expectOk<{ records: Array<{ action: string; actor: string; target: string }> }>(audit).records;
    assert.deepEqual(records.map((a) => [a.action, a.actor]), [['certificate.issue', BOB.email]], 'the CA audited the issue, once');
    for (const text of [listed.body, audit.body]) {
      assert.ok(!text.includes(p12Password), 'no password');
      assert.ok(!text.includes(issued.p12.slice(0, 40)), 'no PKCS#12');
    }
  });

  it('the PKCS#12 opens an auth: certificate route as its user (curl --cert-type P12)', async () => {
    const seen = w.echo.received.length;
    const r = await visitWithP12(p12File, p12Password, '/with-p12');
    assert.equal(r.status, 200, `${r.stderr} ${r.body.slice(0, 300)}`);
    const reached = w.echo.received.slice(seen);
    assert.equal(reached.length, 1);
    assert.equal(reached[0]!.headers['x-gatehouse-user'], BOB.email);
  });

  it('revoking my own certificate (serial in any spelling): the route refuses it within a second', async () => {
    const started = Date.now();
    const r = await call(bob, 'POST', `/certificates/${colons(p12Serial)}/revoke`, { body: { reason: 'phone lost' } });
    const { certificate } = expectOk<{ certificate: CertificateJson }>(r);
    assert.equal(certificate.serial, p12Serial);
    assert.equal(certificate.revoked?.by, BOB.email);
    assert.equal(certificate.revoked?.reason, 'phone lost');
    let refused: Awaited<ReturnType<typeof visitWithP12>> | undefined;
    await eventually(
      async () => {
        refused = await visitWithP12(p12File, p12Password, '/after-revoke');
        return refused.status === 403;
      },
      'the revoked certificate is refused',
      1000,
    );
    assert.ok(Date.now() - started < 1500, `refused after ${Date.now() - started} ms`);
    assert.equal(refused!.headers['x-gatehouse-error'], 'ERR_CERT_REVOKED');
    assert.ok(!w.echo.received.some((x) => x.url === '/after-revoke'), 'nothing reached the backend');

    const listed = (await list(bob)).find((c) => c.serial === p12Serial);
    assert.equal(listed?.revoked?.reason, 'phone lost');
    // revoking again changes nothing: the first revocation stays
    const again = expectOk<{ certificate: CertificateJson }>(await call(bob, 'POST', `/certificates/0x${p12Serial.toLowerCase()}/revoke`));
    assert.deepEqual(again.certificate.revoked, certificate.revoked);
  });

  it('a user can neither revoke someone else\'s certificate (404) nor list everyone\'s (403) nor issue for them; root can', async () => {
    const forCarol = expectOk<IssuedJson>(await call(root, 'POST', '/certificates', { body: { device: 'desktop', user: CAROL.email, days: 10 } }), 201);
    assert.equal(forCarol.record.user, CAROL.email);
    assert.equal(forCarol.record.issuedBy, ROOT.email);
    const serial = forCarol.record.serial;

    expectError(await call(bob, 'POST', `/certificates/${serial}/revoke`), 404, 'ERR_NOT_FOUND');
    expectError(await call(bob, 'GET', '/certificates?all=true'), 403, 'ERR_FORBIDDEN');
    expectError(await call(bob, 'POST', '/certificates', { body: { device: 'x', user: CAROL.email } }), 403, 'ERR_FORBIDDEN');
    assert.ok(!(await list(bob)).some((c) => c.serial === serial), 'bob does not see carol\'s certificate');
    assert.deepEqual((await list(carol)).map((c) => c.serial), [serial], 'carol sees hers');
    assert.equal((await list(carol))[0]!.revoked, null, 'bob changed nothing');

    const everyone = await list(root, true);
    assert.deepEqual(new Set(everyone.map((c) => c.user)), new Set([BOB.email, CAROL.email]));
    assert.equal(everyone.length, 3);
    const { certificate } = expectOk<{ certificate: CertificateJson }>(await call(root, 'POST', `/certificates/${serial}/revoke`));
    assert.equal(certificate.revoked?.by, ROOT.email);
    assert.equal(certificate.revoked?.reason, null);
  });

  it('refuses a change made with the session cookie without Origin or Sec-Fetch-Site (CSRF); a bearer token needs neither', async () => {
    const before = (await list(bob)).length;
    expectError(await call(bob, 'POST', '/certificates', { body: { device: 'csrf' }, sameOrigin: false }), 403, 'ERR_CSRF');
    const laptop = (await list(bob)).find((c) => c.device === 'laptop')!;
    expectError(await call(bob, 'POST', `/certificates/${laptop.serial}/revoke`, { sameOrigin: false }), 403, 'ERR_CSRF');
    assert.equal((await list(bob)).length, before, 'nothing was issued');
    assert.equal((await list(bob)).find((c) => c.device === 'laptop')?.revoked, null, 'nothing was revoked');

    const { token } = await w.main.gh!.g.services.sessions.issueToken(BOB.email, 'script', 3600_000, 'api');
    const byToken: Caller = { email: BOB.email, client: w.client(), token };
    const issued = expectOk<IssuedJson>(await call(byToken, 'POST', '/certificates', { body: { device: 'script', csr: await csr('bob-script') } }), 201);
    assert.equal(issued.record.user, BOB.email);
  });

  it('refuses bad input with 400 naming the problem, and unknown serials with 404', async () => {
    const badCsr = '-----BEGIN CERTIFICATE REQUEST-----\nMIIBADCBpwIBADAPMQ0wCwYDVQQDDAR0ZXN0\n-----END CERTIFICATE REQUEST-----\n';
    assert.match(expectError(await call(bob, 'POST', '/certificates', { body: { device: 'x', csr: badCsr } }), 400, 'ERR_BAD_REQUEST').error.message, /CSR was refused/);
    assert.match(expectError(await call(bob, 'POST', '/certificates', { body: { device: 'x', csr: 'hello' } }), 400, 'ERR_BAD_REQUEST').error.message, /PEM/);
    // a well-formed CSR whose signature does not verify: its subject was changed after signing
    const der = Buffer.from((await csr('tampered')).replace(/-----[^-]+-----|\s/g, ''), 'base64');
    const at = der.indexOf('Evil');
    assert.ok(at > 0);
    der.write('Evim', at);
    const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64').replace(/.{64}/g, '$&\n')}\n-----END CERTIFICATE REQUEST-----\n`;
    assert.match(expectError(await call(bob, 'POST', '/certificates', { body: { device: 'x', csr: tampered } }), 400, 'ERR_BAD_REQUEST').error.message, /signature/);
    for (const days of [0, 826, 1.5]) {
      assert.match(expectError(await call(bob, 'POST', '/certificates', { body: { device: 'x', days } }), 400, 'ERR_BAD_REQUEST').error.message, /days/);
    }
    assert.match(expectError(await call(bob, 'POST', '/certificates', { body: { days: 10 } }), 400, 'ERR_BAD_REQUEST').error.message, /"device" is required/);
    assert.match(expectError(await call(bob, 'POST', '/certificates', { body: { device: 'x', key: 'k' } }), 400, 'ERR_BAD_REQUEST').error.message, /unknown field "key"/);
    expectError(await call(bob, 'POST', '/certificates', { body: { device: 'bad\u0007name' } }), 400, 'ERR_BAD_REQUEST');
    expectError(await call(bob, 'POST', '/certificates/not-hex/revoke'), 400, 'ERR_BAD_REQUEST');
    expectError(await call(bob, 'POST', '/certificates/0123456789ABCDEF/revoke'), 404, 'ERR_NOT_FOUND');
    expectError(await call(bob, 'POST', '/certificates/0123456789ABCDEF/revoke', { body: { reason: 'r'.repeat(201) } }), 400, 'ERR_BAD_REQUEST');
    expectError(await call(bob, 'GET', '/certificates/0123456789ABCDEF/revoke'), 405, 'ERR_METHOD_NOT_ALLOWED');
  });

  it('issues nothing to a service account or a disabled user', async () => {
    const directory = w.main.gh!.g.services.directory;
    await directory.createServiceAccount('ci', { email: ROOT.email });
    const { token } = await w.main.gh!.g.services.sessions.issueToken('ci@service.gatehouse', 'ci', 3600_000, 'api');
    const ci: Caller = { email: 'ci@service.gatehouse', client: w.client(), token };
    expectError(await call(ci, 'POST', '/certificates', { body: { device: 'runner' } }), 403, 'ERR_FORBIDDEN');
    expectError(await call(root, 'POST', '/certificates', { body: { device: 'runner', user: 'ci@service.gatehouse' } }), 403, 'ERR_FORBIDDEN');
    await directory.disable('dave@example.com', { email: ROOT.email });
    assert.match(
      expectError(await call(root, 'POST', '/certificates', { body: { device: 'laptop', user: 'dave@example.com' } }), 403, 'ERR_FORBIDDEN').error.message,
      /disabled/,
    );
    assert.ok(!(await list(root, true)).some((c) => c.user === 'dave@example.com' || c.user === 'ci@service.gatehouse'));
  });

  it('without an internal CA, issuing is 503 ERR_CA_NOT_INITIALISED pointing at gatehouse ca init; the list is empty', async () => {
    bare = await w.startAnother({ identity, routes });
    const bobThere = await signIn(BOB, bare);
    const e = expectError(await call(bobThere, 'POST', '/certificates', { body: { device: 'laptop' }, on: bare }), 503, 'ERR_CA_NOT_INITIALISED');
    assert.match(e.error.message, /gatehouse ca init/);
    expectError(await call(bobThere, 'POST', '/certificates', { body: { device: 'laptop', csr: await csr('bare') }, on: bare }), 503, 'ERR_CA_NOT_INITIALISED');
    assert.deepEqual(expectOk<{ certificates: unknown[] }>(await call(bobThere, 'GET', '/certificates', { on: bare })).certificates, []);
    expectError(await call(bobThere, 'POST', `/certificates/${p12Serial}/revoke`, { on: bare }), 404, 'ERR_NOT_FOUND');
  });
});
