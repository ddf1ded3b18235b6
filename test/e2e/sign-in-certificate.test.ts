/**
 * `auth: login+certificate`: a signed-in person on a device with a trusted certificate — both are needed.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { curl, signInOverHttp, startSignInWorld, type CertFiles, type SignInGatehouse, type SignInWorld } from '../harness/index.ts';

const ALICE = { email: 'alice@example.com', password: 'alice-password' };

describe('login+certificate routes', () => {
  let w: SignInWorld;
  let gh: SignInGatehouse;
  let device: CertFiles;
  let cookie: string;

  before(async () => {
    w = await startSignInWorld({ users: [ALICE], routes: [{ name: 'unused', host: 'unused.corp.test', auth: 'public' }], extraGatehouses: 1 });
    device = w.ca.client('/CN=alice-laptop/OU=engineering');
    gh = await w.startAnother({
      identity: { certificates: { trust: [w.ca.cert] } },
      routes: [{ name: 'both', host: 'both.corp.test', auth: 'login+certificate', allow: { domains: ['example.com'] } }],
    });
    const client = w.client();
    // the route itself refuses a browser without a certificate before anything else (signing in cannot fix
    // that), so this client signs in through the auth host's login page, which hands the session to the route
    const login = `${gh.authOrigin}/.gatehouse/login?return=${encodeURIComponent(gh.url('both.corp.test', '/start'))}`;
    const { last } = await signInOverHttp(client, login, ALICE);
    // signed in, but this client has no certificate: the route refuses it for that reason
    assert.equal(last.status, 403);
    assert.equal(last.code, 'ERR_CERT_MISSING');
    cookie = client.jar.header(new URL(gh.url('both.corp.test', '/')))!;
    assert.match(cookie, /__Host-gatehouse=/);
  });
  after(async () => {
    await w?.close();
  });

  const at = (...args: string[]) => [
    '--cacert', w.ca.cert,
    '--resolve', `both.corp.test:${gh.port}:127.0.0.1`,
    '-H', 'Accept: application/json',
    ...args,
    gh.url('both.corp.test', '/device'),
  ];

  it('admits a signed-in user with a trusted certificate, and tells the backend both', async () => {
    const before = w.echo.received.length;
    const r = await curl(at('--cert', device.cert, '--key', device.key, '-H', `Cookie: ${cookie}`));
    assert.equal(r.status, 200, r.body);
    const seen = w.echo.received.slice(before);
    assert.equal(seen.length, 1);
    assert.equal(seen[0]!.headers['x-gatehouse-user'], 'alice@example.com');
    assert.equal(seen[0]!.headers['x-gatehouse-device'], device.serial);
    assert.ok(seen[0]!.headers['x-gatehouse-jwt-assertion']);
    assert.doesNotMatch(String(seen[0]!.headers.cookie ?? ''), /__Host-gatehouse/);
  });

  it('refuses the signed-in user without a certificate', async () => {
    const r = await curl(at('-H', `Cookie: ${cookie}`));
    assert.equal(r.status, 403);
    assert.equal(r.headers['x-gatehouse-error'], 'ERR_CERT_MISSING');
  });

  it('refuses a certificate without a signed-in user', async () => {
    const r = await curl(at('--cert', device.cert, '--key', device.key));
    assert.equal(r.status, 401);
    assert.equal(r.headers['x-gatehouse-error'], 'ERR_NOT_SIGNED_IN');
  });

  it('refuses a certificate from an untrusted CA even when signed in', async () => {
    const { TestCa } = await import('../harness/index.ts');
    const other = new TestCa(w.dir, 'other', '/CN=Other CA');
    const foreign = other.client('/CN=alice-laptop/OU=engineering');
    const r = await curl(at('--cert', foreign.cert, '--key', foreign.key, '-H', `Cookie: ${cookie}`));
    assert.equal(r.status, 403);
    assert.equal(r.headers['x-gatehouse-error'], 'ERR_CERT_UNTRUSTED');
  });
});
