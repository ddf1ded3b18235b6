/**
 * Client certificates on `auth: certificate` routes, with the real `curl --cert/--key`: trusted and matching
 * certificates reach the backend; every other case gets a 403 page (an HTTP answer, never a TLS alert) whose
 * `x-gatehouse-error` and body say why. Revocation comes from CRL files and CRL URLs and takes effect on
 * connections that are already open.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Agent, request as httpsRequest } from 'node:https';
import type { Socket } from 'node:net';
import {
  TestCa,
  curl,
  startEcho,
  startFileServer,
  startGatehouse,
  tempDir,
  waitFor,
  type Backend,
  type CertFiles,
  type CurlResult,
  type FileServer,
  type RunningGatehouse,
} from '../harness/index.ts';

const ENG = '/CN=alice/O=Acme/OU=engineering';

interface Refusal {
  readonly code: string;
  /** words the page must contain to say what is wrong */
  readonly says: RegExp;
}

/** A refusal Gatehouse wrote as an HTTP answer: status, code, request id, and a page that names the reason. */
function assertRefused(r: CurlResult, expected: Refusal, status = 403): void {
  assert.equal(r.exitCode, 0, `curl failed instead of getting an HTTP answer (a TLS alert?): ${r.stderr}`);
  assert.equal(r.status, status, r.body.slice(0, 500));
  assert.equal(r.headers['x-gatehouse-error'], expected.code);
  assert.match(r.headers['x-request-id'] ?? '', /\S/);
  assert.match(r.headers['content-type'] ?? '', /^text\/html/);
  assert.ok(r.body.includes(expected.code), `the page names the code ${expected.code}`);
  assert.match(r.body, expected.says);
}

/** One GET over a keep-alive agent; reports which socket carried it and whether it was reused. */
function agentGet(agent: Agent, host: string, port: number, ca: string, path: string) {
  return new Promise<{ status: number; code: string | undefined; socket: Socket; reused: boolean }>((resolve, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', port, servername: host, ca, agent, path, headers: { host: `${host}:${port}` } }, (res) => {
      res.resume();
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          code: res.headers['x-gatehouse-error'] as string | undefined,
          socket: res.socket as Socket,
          reused: req.reusedSocket,
        }),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

describe('client certificates', () => {
  const t = tempDir();
  let ca: TestCa;
  let echo: Backend;
  let gh: RunningGatehouse;
  let crlFile: string;
  const c: Record<string, CertFiles> = {};

  const get = (host: string, path = '/', cert?: CertFiles, extra: string[] = []) =>
    curl([
      '--cacert', ca.cert,
      '--resolve', `${host}:${gh.httpsPort}:127.0.0.1`,
      ...(cert ? ['--cert', cert.cert, '--key', cert.key] : []),
      ...extra,
      `https://${host}:${gh.httpsPort}${path}`,
    ]);

  /** curl through a route: the backend got exactly this request, or nothing at all. */
  async function admitted(host: string, cert: CertFiles | undefined, path: string): Promise<void> {
    const before = echo.received.length;
    const r = await get(host, path, cert);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.status, 200, r.body.slice(0, 500));
    assert.equal(r.headers['x-backend'], 'echo');
    assert.equal(echo.received.length, before + 1);
    assert.equal(echo.received.at(-1)!.url, path);
  }
  async function refused(host: string, cert: CertFiles | undefined, expected: Refusal, status = 403): Promise<CurlResult> {
    const before = echo.received.length;
    const r = await get(host, '/secret', cert);
    assertRefused(r, expected, status);
    assert.equal(echo.received.length, before, 'nothing reached the backend');
    return r;
  }

  before(async () => {
    ca = new TestCa(t.dir);
    const server = ca.server(['*.corp.test', 'gate.test']);
    // another CA with the very same name: only the signature tells them apart
    const evil = new TestCa(t.dir, 'evil');
    const stranger = new TestCa(t.dir, 'stranger', '/CN=Stranger CA/O=Elsewhere');
    c.eng = ca.client(ENG);
    c.sales = ca.client('/CN=bob/O=Acme/OU=sales');
    c.research = ca.client('/CN=carol/O=Acme/OU=research');
    c.otherOrg = ca.client('/CN=dave/O=Other/OU=engineering');
    c.evil = evil.client(ENG);
    c.stranger = stranger.client(ENG);
    c.expired = ca.client(ENG, { expired: true });
    c.revoked = ca.client(ENG);
    c.later = ca.client(ENG);
    ca.revoke(c.revoked);
    crlFile = ca.crl();
    echo = await startEcho();
    gh = await startGatehouse(t.dir, {
      server: { https: '127.0.0.1:0', authHost: 'gate.test', workers: 1, accessLog: false, tls: { cert: server.cert, key: server.key } },
      store: { sqlite: { path: `${t.dir}/gatehouse.db` } },
      identity: { certificates: { trust: [ca.cert], crl: [crlFile] } },
      routes: [
        { name: 'secure', host: 'secure.corp.test', to: echo.origin, auth: 'certificate', allow: { certificateSubject: { OU: 'engineering' } } },
        { name: 'either', host: 'either.corp.test', to: echo.origin, auth: 'certificate', allow: { certificateSubject: { OU: ['engineering', 'research'] } } },
        { name: 'both', host: 'both.corp.test', to: echo.origin, auth: 'certificate', allow: { certificateSubject: { OU: 'engineering', O: 'Acme' } } },
        { name: 'nobody', host: 'nobody.corp.test', to: echo.origin, auth: 'certificate' },
        { name: 'open', host: 'open.corp.test', to: echo.origin, auth: 'public' },
        { name: 'signin', host: 'signin.corp.test', to: echo.origin, auth: 'login' },
      ],
    });
  });
  after(async () => {
    await gh?.close();
    await echo?.close();
    t.cleanup();
  });

  it('admits a trusted certificate whose OU matches', async () => {
    await admitted('secure.corp.test', c.eng, '/hello?x=1');
    // and learns which device it was: the certificate's serial
    const serial = (hex: string) => hex.toUpperCase().replace(/^0+/, '');
    assert.equal(serial(String(echo.received.at(-1)!.headers['x-gatehouse-device'] ?? '')), serial(c.eng!.serial));
  });

  it('refuses a request without a certificate with a page, not a TLS alert', async () => {
    await refused('secure.corp.test', undefined, { code: 'ERR_CERT_MISSING', says: /client certificate/ });
  });

  it('refuses a certificate whose OU does not match', async () => {
    const r = await refused('secure.corp.test', c.sales, { code: 'ERR_CERT_SUBJECT_MISMATCH', says: /match/ });
    assert.match(r.body, /OU=sales/);
  });

  it('refuses a certificate with the same subject from another CA, even one with the same name', async () => {
    await refused('secure.corp.test', c.evil, { code: 'ERR_CERT_UNTRUSTED', says: /trusted/ });
    await refused('secure.corp.test', c.stranger, { code: 'ERR_CERT_UNTRUSTED', says: /trusted/ });
  });

  it('refuses an expired certificate', async () => {
    await refused('secure.corp.test', c.expired, { code: 'ERR_CERT_EXPIRED', says: /expired/ });
  });

  it('refuses a certificate listed in the CRL file', async () => {
    await refused('secure.corp.test', c.revoked, { code: 'ERR_CERT_REVOKED', says: /revoked/ });
  });

  it('a list of values in certificateSubject admits any of them', async () => {
    await admitted('either.corp.test', c.eng, '/e');
    await admitted('either.corp.test', c.research, '/r');
    await refused('either.corp.test', c.sales, { code: 'ERR_CERT_SUBJECT_MISMATCH', says: /match/ });
  });

  it('several subject fields must all match', async () => {
    await admitted('both.corp.test', c.eng, '/both');
    await refused('both.corp.test', c.otherOrg, { code: 'ERR_CERT_SUBJECT_MISMATCH', says: /match/ });
    await refused('both.corp.test', c.sales, { code: 'ERR_CERT_SUBJECT_MISMATCH', says: /match/ });
    await refused('both.corp.test', c.research, { code: 'ERR_CERT_SUBJECT_MISMATCH', says: /match/ });
  });

  it('a public route on the same listener works without a certificate', async () => {
    await admitted('open.corp.test', undefined, '/public');
  });

  it('a certificate route without allow refuses even a valid certificate (deny by default)', async () => {
    await refused('nobody.corp.test', c.eng, { code: 'ERR_POLICY_DENIED', says: /no rule/ });
  });

  it('a login route answers 501 when sign-in is not configured', async () => {
    await refused('signin.corp.test', c.eng, { code: 'ERR_LOGIN_NOT_CONFIGURED', says: /sign-in/ }, 501);
  });

  it('a CRL updated on disk and reloaded revokes a certificate on an already-open keep-alive connection', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1, cert: c.later!.certPem, key: c.later!.keyPem });
    try {
      const first = await agentGet(agent, 'secure.corp.test', gh.httpsPort, ca.certPem, '/before');
      assert.equal(first.status, 200);
      ca.revoke(c.later!);
      ca.crl(crlFile);
      const reloaded = await gh.g.reload();
      assert.equal(reloaded.ok, true);
      const before = echo.received.length;
      const second = await agentGet(agent, 'secure.corp.test', gh.httpsPort, ca.certPem, '/after');
      assert.equal(second.reused, true, 'the second request went over the same connection');
      assert.equal(second.socket, first.socket);
      assert.equal(second.status, 403);
      assert.equal(second.code, 'ERR_CERT_REVOKED');
      assert.equal(echo.received.length, before);
    } finally {
      agent.destroy();
    }
  });
});

describe('client certificates: CRL served over http', () => {
  const t = tempDir();
  let ca: TestCa;
  let echo: Backend;
  let gh: RunningGatehouse;
  let crl: FileServer;
  let crlFile: string;
  const c: Record<string, CertFiles> = {};

  before(async () => {
    ca = new TestCa(t.dir, 'web');
    const server = ca.server(['*.corp.test', 'gate.test']);
    c.good = ca.client(ENG);
    c.revoked = ca.client(ENG);
    c.later = ca.client(ENG);
    ca.revoke(c.revoked);
    crlFile = ca.crl();
    crl = await startFileServer(crlFile, '/web.crl');
    echo = await startEcho();
    gh = await startGatehouse(t.dir, {
      server: { https: '127.0.0.1:0', authHost: 'gate.test', workers: 1, accessLog: false, tls: { cert: server.cert, key: server.key } },
      store: { sqlite: { path: `${t.dir}/gatehouse.db` } },
      identity: { certificates: { trust: [ca.cert], crl: [crl.url], crlRefresh: '100ms' } },
      routes: [{ name: 'secure', host: 'secure.corp.test', to: echo.origin, auth: 'certificate', allow: { certificateSubject: { OU: 'engineering' } } }],
    });
  });
  after(async () => {
    await gh?.close();
    await crl?.close();
    await echo?.close();
    t.cleanup();
  });

  const get = (cert: CertFiles) =>
    curl(['--cacert', ca.cert, '--resolve', `secure.corp.test:${gh.httpsPort}:127.0.0.1`, '--cert', cert.cert, '--key', cert.key, `https://secure.corp.test:${gh.httpsPort}/x`]);

  it('fetches the CRL from its URL and refuses what it lists', async () => {
    assert.ok(crl.requests >= 1, 'the CRL URL was fetched');
    const ok = await get(c.good!);
    assert.equal(ok.status, 200, ok.body);
    const before = echo.received.length;
    const r = await get(c.revoked!);
    assertRefused(r, { code: 'ERR_CERT_REVOKED', says: /revoked/ });
    assert.equal(echo.received.length, before);
  });

  it('a short crlRefresh picks up a new revocation on an open keep-alive connection', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1, cert: c.later!.certPem, key: c.later!.keyPem });
    try {
      const first = await agentGet(agent, 'secure.corp.test', gh.httpsPort, ca.certPem, '/before');
      assert.equal(first.status, 200);
      ca.revoke(c.later!);
      ca.crl(crlFile);
      const fetched = crl.requests;
      // no reload: only the periodic refresh can bring the new list in; ask on the same connection until it has
      let last = first;
      const deadline = Date.now() + 5000;
      while (Date.now() < deadline) {
        last = await agentGet(agent, 'secure.corp.test', gh.httpsPort, ca.certPem, '/after');
        assert.equal(last.socket, first.socket, 'every request goes over the first connection');
        assert.equal(last.reused, true);
        if (last.status !== 200) break;
        await waitFor(() => crl.requests > fetched, 'a CRL fetch after the update');
      }
      assert.equal(last.status, 403);
      assert.equal(last.code, 'ERR_CERT_REVOKED');
    } finally {
      agent.destroy();
    }
  });
});
