/**
 * HTTPS-proxy mode: the PAC file, the TLS front door used as an HTTPS proxy (absolute-form requests, CONNECT
 * into the front door, CONNECT alias:443 as a byte tunnel to an https upstream), the plain forward proxy,
 * and — through every entry point — no open proxy: a local server that is no route is never reached.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { createContext, runInContext } from 'node:vm';
import { stringify } from 'yaml';
import {
  TestCa,
  connectPlain,
  connectTls,
  curl,
  destroyProbes,
  exchange,
  openTunnel,
  runCli,
  startEcho,
  startHttpsEcho,
  startGatehouse,
  startSentinel,
  tempDir,
  waitFor,
  type Backend,
  type CertFiles,
  type RawResponse,
  type RunningGatehouse,
  type Sentinel,
} from '../harness/index.ts';

describe('HTTPS-proxy mode', () => {
  const t = tempDir();
  let ca: TestCa;
  let echo: Backend;
  let legacy: Backend;
  let stranger: Sentinel;
  let gh: RunningGatehouse;
  let config: Record<string, unknown>;
  let P: number;
  let FP: number;
  let S: number;
  let eng: CertFiles;
  let sales: CertFiles;

  /** curl options that use the TLS front door as an HTTPS proxy */
  const viaTls = () => ['--proxy', `https://gate.test:${P}`, '--proxy-cacert', ca.cert, '--resolve', `gate.test:${P}:127.0.0.1`, '--cacert', ca.cert];
  const viaPlain = () => ['--proxy', `http://127.0.0.1:${FP}`, '--cacert', ca.cert];
  const withCert = (c: CertFiles) => ['--cert', c.cert, '--key', c.key];
  const withProxyCert = (c: CertFiles) => ['--proxy-cert', c.cert, '--proxy-key', c.key];

  function assertNotReached(): void {
    assert.equal(stranger.connections, 0, 'the server that is no route was never connected to');
  }
  function assertCode(r: { status: number; headers: Record<string, string> }, status: number, code: string): void {
    assert.equal(r.status, status);
    assert.equal(r.headers['x-gatehouse-error'], code);
    assert.match(r.headers['x-request-id'] ?? '', /\S/);
  }

  before(async () => {
    ca = new TestCa(t.dir);
    const server = ca.server(['*.corp.test', 'gate.test']);
    const upstream = ca.server(['legacy.internal', 'localhost']);
    eng = ca.client('/CN=alice/O=Acme/OU=engineering');
    sales = ca.client('/CN=bob/O=Acme/OU=sales');
    echo = await startEcho();
    legacy = await startHttpsEcho(upstream.certPem, upstream.keyPem);
    stranger = await startSentinel();
    S = stranger.port;
    const engineering = { certificateSubject: { OU: 'engineering' } };
    config = {
      server: {
        https: '127.0.0.1:0',
        forwardProxy: '127.0.0.1:0',
        authHost: 'gate.test',
        workers: 1,
        accessLog: false,
        tls: { cert: server.cert, key: server.key },
      },
      store: { sqlite: { path: join(t.dir, 'gatehouse.db') } },
      identity: { certificates: { trust: [ca.cert] } },
      routes: [
        { name: 'app', host: 'app.corp.test', aliases: ['app', 'app.internal'], to: echo.origin, auth: 'public' },
        { name: 'secure', host: 'secure.corp.test', aliases: ['secure.internal'], to: echo.origin, auth: 'certificate', allow: engineering },
        {
          name: 'legacy',
          host: 'legacy.corp.test',
          aliases: ['legacy.internal'],
          to: `https://127.0.0.1:${legacy.port}`,
          auth: 'certificate',
          allow: engineering,
          upstream: { tls: { ca: ca.cert, serverName: 'localhost' } },
        },
        { name: 'apps', host: '*.apps.corp.test', to: echo.origin, auth: 'public' },
        // a templated upstream: the name picks host and port, loopback is not allowed
        { name: 'ports', host: '*-*.corp.test', to: 'http://{1}:{2}', auth: 'public' },
      ],
    };
    gh = await startGatehouse(t.dir, config);
    P = gh.httpsPort;
    FP = gh.proxyPort!;
  });
  after(async () => {
    destroyProbes();
    await gh?.close();
    await echo?.close();
    await legacy?.close();
    await stranger?.close();
    t.cleanup();
  });

  describe('the PAC file', () => {
    let pac: string;

    function findProxy(source: string): (url: string, host: string) => string {
      const sandbox = createContext({});
      runInContext(source, sandbox, { timeout: 1000 });
      const find = (sandbox as { FindProxyForURL?: unknown }).FindProxyForURL;
      assert.equal(typeof find, 'function');
      return find as (url: string, host: string) => string;
    }

    it('is served on the auth host as application/x-ns-proxy-autoconfig', async () => {
      const r = await curl(['--cacert', ca.cert, '--resolve', `gate.test:${P}:127.0.0.1`, `https://gate.test:${P}/proxy.pac`]);
      assert.equal(r.status, 200);
      assert.equal(r.headers['content-type'], 'application/x-ns-proxy-autoconfig');
      pac = r.body;
    });

    it('sends route hosts, aliases and pattern hosts to the front door, everything else direct', () => {
      const find = findProxy(pac);
      const proxy = `HTTPS gate.test:${P}`;
      for (const host of ['app.corp.test', 'app', 'app.internal', 'secure.corp.test', 'secure.internal', 'legacy.internal', 'x.apps.corp.test', 'a-b.corp.test', 'APP.corp.test']) {
        assert.equal(find(`http://${host}/some/path`, host), proxy, host);
      }
      for (const host of ['example.com', 'corp.test', 'apps.corp.test', 'a.b.apps.corp.test', 'app.corp.test.example.com', 'xapp', 'internal', 'x.apps.corp.test.evil']) {
        assert.equal(find(`http://${host}/`, host), 'DIRECT', host);
      }
    });

    it('`gatehouse pac -c FILE` prints the same file', async () => {
      // the same configuration with the port the front door really listens on
      const file = join(t.dir, 'pac.yaml');
      writeFileSync(file, stringify({ ...config, server: { ...(config.server as object), https: `127.0.0.1:${P}` } }));
      const r = await runCli(['pac', '-c', file]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, pac);
    });
  });

  describe('the TLS front door as an HTTPS proxy', () => {
    it('forwards an absolute-form request for an alias to its route', async () => {
      const before = echo.received.length;
      const r = await curl([...viaTls(), 'http://app.internal/old/path?q=1']);
      assert.equal(r.status, 200, r.body);
      assert.equal(r.headers['x-backend'], 'echo');
      assert.equal(echo.received.length, before + 1);
      assert.equal(echo.received.at(-1)!.url, '/old/path?q=1');
    });

    it('decides a certificate route by the certificate presented to the proxy', async () => {
      const before = echo.received.length;
      const ok = await curl([...viaTls(), ...withProxyCert(eng), 'http://secure.internal/cert']);
      assert.equal(ok.status, 200, ok.body);
      assert.equal(echo.received.at(-1)!.url, '/cert');
      const wrong = await curl([...viaTls(), ...withProxyCert(sales), 'http://secure.internal/cert']);
      assertCode(wrong, 403, 'ERR_CERT_SUBJECT_MISMATCH');
      const none = await curl([...viaTls(), 'http://secure.internal/cert']);
      assertCode(none, 403, 'ERR_CERT_MISSING');
      assert.match(none.body, /client certificate/);
      assert.equal(echo.received.length, before + 1);
    });

    it('CONNECT to a route host goes into the front door', async () => {
      const before = echo.received.length;
      const r = await curl([...viaTls(), `https://app.corp.test:${P}/tunnel`]);
      assert.equal(r.status, 200, r.stderr);
      assert.equal(echo.received.length, before + 1);
      assert.equal(echo.received.at(-1)!.url, '/tunnel');
    });

    it('CONNECT route-host:443 (the port browsers use) goes into the front door too, on both listeners', async () => {
      for (const open of [() => connectTls({ port: P, servername: 'gate.test', ca: ca.certPem }), () => connectPlain(FP)]) {
        const before = echo.received.length;
        const { response, tunnel } = await openTunnel(await open(), 'app.corp.test:443');
        assert.equal(response.status, 200);
        const inner = await connectTls({ socket: tunnel, servername: 'app.corp.test', ca: ca.certPem });
        const r = await exchange(inner, 'GET /via-443 HTTP/1.1\r\nHost: app.corp.test\r\nConnection: close\r\n\r\n');
        assert.equal(r.status, 200, r.raw.slice(0, 300));
        assert.equal(echo.received.length, before + 1);
        assert.equal(echo.received.at(-1)!.url, '/via-443');
      }
    });

    it('a certificate route inside the CONNECT tunnel sees the certificate presented inside', async () => {
      const before = echo.received.length;
      const ok = await curl([...viaTls(), ...withCert(eng), `https://secure.corp.test:${P}/inside`]);
      assert.equal(ok.status, 200, ok.stderr);
      assert.equal(echo.received.at(-1)!.url, '/inside');
      const wrong = await curl([...viaTls(), ...withCert(sales), `https://secure.corp.test:${P}/inside`]);
      assertCode(wrong, 403, 'ERR_CERT_SUBJECT_MISMATCH');
      // the certificate shown to the proxy does not stand in for the one inside the tunnel
      const none = await curl([...viaTls(), ...withProxyCert(eng), `https://secure.corp.test:${P}/inside`]);
      assertCode(none, 403, 'ERR_CERT_MISSING');
      assert.equal(echo.received.length, before + 1);
    });

    it('CONNECT alias:443 of an https route is a byte tunnel to its upstream, after the decision', async () => {
      // port 443 is only named in the CONNECT line: the tunnel goes to the route's upstream (a local port)
      const before = legacy.received.length;
      const ok = await curl([...viaTls(), ...withProxyCert(eng), 'https://legacy.internal/tunnelled']);
      assert.equal(ok.status, 200, ok.stderr);
      assert.equal(legacy.received.length, before + 1);
      assert.equal(legacy.received.at(-1)!.url, '/tunnelled');
      // the upstream's own certificate came through the tunnel: TLS ran end to end with the upstream
      assert.equal(legacy.received.at(-1)!.headers.host, 'legacy.internal');
      const refused = await curl([...viaTls(), ...withProxyCert(sales), 'https://legacy.internal/tunnelled']);
      assertCode(refused, 403, 'ERR_CERT_SUBJECT_MISMATCH');
      const missing = await curl([...viaTls(), 'https://legacy.internal/tunnelled']);
      assertCode(missing, 403, 'ERR_CERT_MISSING');
      assert.equal(legacy.received.length, before + 1);
    });

    it('CONNECT to an alias on another port, or alias:443 of an http route, is refused', async () => {
      for (const target of ['legacy.internal:8443', `legacy.internal:${legacy.port}`, 'app.internal:443', `app:${echo.port}`]) {
        const s = await connectTls({ port: P, servername: 'gate.test', ca: ca.certPem, cert: eng.certPem, key: eng.keyPem });
        const { response } = await openTunnel(s, target);
        assertCode(response, 403, 'ERR_PROXY_DESTINATION_FORBIDDEN');
        assert.match(response.body, /not an open proxy|not allowed/);
        s.destroy();
      }
    });
  });

  describe('the plain forward proxy', () => {
    it('CONNECT to a route host goes into the front door', async () => {
      const before = echo.received.length;
      const r = await curl([...viaPlain(), `https://app.corp.test:${P}/plain`]);
      assert.equal(r.status, 200, r.stderr);
      assert.equal(echo.received.at(-1)!.url, '/plain');
      assert.equal(echo.received.length, before + 1);
    });

    it('client certificates work inside its CONNECT tunnel', async () => {
      const before = echo.received.length;
      const ok = await curl([...viaPlain(), ...withCert(eng), `https://secure.corp.test:${P}/plain-cert`]);
      assert.equal(ok.status, 200, ok.stderr);
      assert.equal(echo.received.at(-1)!.url, '/plain-cert');
      const none = await curl([...viaPlain(), `https://secure.corp.test:${P}/plain-cert`]);
      assertCode(none, 403, 'ERR_CERT_MISSING');
      assert.equal(echo.received.length, before + 1);
    });

    it('redirects http://alias/… to the route’s https URL', async () => {
      const before = echo.received.length;
      const r = await curl([...viaPlain(), 'http://app/x?y']);
      assert.equal(r.status, 308);
      assert.equal(r.headers.location, `https://app.corp.test:${P}/x?y`);
      const host = await curl([...viaPlain(), 'http://APP.corp.test/a/b?c=d']);
      assert.equal(host.status, 308);
      assert.equal(host.headers.location, `https://app.corp.test:${P}/a/b?c=d`);
      assert.equal(echo.received.length, before, 'a redirect forwards nothing');
    });
  });

  describe('never an open proxy', () => {
    /** every way of naming the local server that is no route */
    const strangers = () => [
      `127.0.0.1:${S}`,
      `localhost:${S}`,
      `LOCALHOST:${S}`,
      `localhost.:${S}`,
      `[::1]:${S}`,
      `[::ffff:127.0.0.1]:${S}`,
      `2130706433:${S}`,
      `gate.test:${S}`,
      `nope.corp.test:${S}`,
    ];
    /** a route's own host or alias with the stranger's port */
    const routeNamesOnOtherPort = () => [`app.corp.test:${S}`, `APP.CORP.TEST.:${S}`, `app:${S}`, `app.internal:${S}`];

    const tlsToProxy = () => connectTls({ port: P, servername: 'gate.test', ca: ca.certPem });
    const get = (target: string, host: string) => `GET ${target} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`;

    async function refusedOn(open: () => Promise<Duplex>, request: string, status: number, code: string): Promise<RawResponse> {
      const s = await open();
      const r = await exchange(s, request);
      assert.equal(r.status, status, `${request.split('\r\n')[0]} (Host ${request.split('\r\n')[1]}): ${r.raw.slice(0, 400)}`);
      assertCode(r, status, code);
      assert.doesNotMatch(r.raw, /SENTINEL/);
      return r;
    }

    it('TLS front door, absolute-form: refused with 403', async () => {
      for (const a of strangers()) {
        await refusedOn(tlsToProxy, get(`http://${a}/`, a), 403, 'ERR_PROXY_DESTINATION_FORBIDDEN');
        await refusedOn(tlsToProxy, get(`https://${a}/`, a), 403, 'ERR_PROXY_DESTINATION_FORBIDDEN');
      }
      // credentials in the URL do not make a route host of the stranger: such a target is not accepted at all
      await refusedOn(tlsToProxy, get(`http://app.corp.test@127.0.0.1:${S}/`, `127.0.0.1:${S}`), 400, 'ERR_BAD_REQUEST');
      await refusedOn(tlsToProxy, get(`http://app.corp.test:${P}@localhost:${S}/`, `localhost:${S}`), 400, 'ERR_BAD_REQUEST');
      assertNotReached();
    });

    it('TLS front door, absolute-form: a route name with another port still goes to that route only', async () => {
      // the port of an old URL (http://app:8080/) does not pick the destination: the route does
      for (const a of routeNamesOnOtherPort()) {
        const before = echo.received.length;
        const s = await tlsToProxy();
        const r = await exchange(s, get(`http://${a}/old`, a));
        assert.equal(r.status, 200, a);
        assert.equal(r.headers['x-backend'], 'echo');
        assert.equal(echo.received.length, before + 1);
      }
      assertNotReached();
    });

    it('TLS front door, CONNECT: refused with 403', async () => {
      for (const a of [...strangers(), ...routeNamesOnOtherPort()]) {
        const s = await tlsToProxy();
        const { response } = await openTunnel(s, a);
        assertCode(response, 403, 'ERR_PROXY_DESTINATION_FORBIDDEN');
        s.destroy();
      }
      assertNotReached();
    });

    it('inside a CONNECT tunnel into the front door: foreign Host and absolute-form are refused', async () => {
      const inner = async (servername: string | undefined) => {
        const outer = await tlsToProxy();
        const { response, tunnel } = await openTunnel(outer, `app.corp.test:${P}`);
        assert.equal(response.status, 200);
        return connectTls({ socket: tunnel, ca: ca.certPem, verify: servername !== undefined, ...(servername ? { servername } : {}) });
      };
      await refusedOn(() => inner('app.corp.test'), get('/', `127.0.0.1:${S}`), 421, 'ERR_MISDIRECTED_REQUEST');
      await refusedOn(() => inner('app.corp.test'), get('/', `localhost:${S}`), 421, 'ERR_MISDIRECTED_REQUEST');
      await refusedOn(() => inner(undefined), get('/', `127.0.0.1:${S}`), 404, 'ERR_ROUTE_NOT_FOUND');
      await refusedOn(() => inner('app.corp.test'), get(`http://127.0.0.1:${S}/`, `127.0.0.1:${S}`), 403, 'ERR_PROXY_DESTINATION_FORBIDDEN');
      assertNotReached();
    });

    it('plain forward proxy, absolute-form: refused with 403', async () => {
      const plain = () => connectPlain(FP);
      for (const a of strangers()) {
        await refusedOn(plain, get(`http://${a}/`, a), 403, 'ERR_PROXY_DESTINATION_FORBIDDEN');
        await refusedOn(plain, get(`https://${a}/`, a), 403, 'ERR_PROXY_DESTINATION_FORBIDDEN');
      }
      await refusedOn(plain, get(`http://app.corp.test@127.0.0.1:${S}/`, `127.0.0.1:${S}`), 403, 'ERR_PROXY_DESTINATION_FORBIDDEN');
      // a route name with the stranger's port: only ever a redirect to the route's public https URL
      for (const a of routeNamesOnOtherPort()) {
        const s = await plain();
        const r = await exchange(s, get(`http://${a}/x?y`, a));
        assert.equal(r.status, 308, a);
        assert.equal(r.headers.location, `https://app.corp.test:${P}/x?y`);
      }
      assertNotReached();
    });

    it('plain forward proxy, CONNECT: refused with 403', async () => {
      for (const a of [...strangers(), ...routeNamesOnOtherPort(), 'app.internal:443', `app.internal:${P}`]) {
        const s = await connectPlain(FP);
        const { response } = await openTunnel(s, a);
        assertCode(response, 403, 'ERR_PROXY_DESTINATION_FORBIDDEN');
        s.destroy();
      }
      assertNotReached();
    });

    it('origin-form with a foreign Host: 404 on the front door, 403 on the forward proxy', async () => {
      const noSni = () => connectTls({ port: P, ca: ca.certPem, verify: false });
      const localhostSni = () => connectTls({ port: P, servername: 'localhost', ca: ca.certPem, verify: false });
      for (const a of [`127.0.0.1:${S}`, `[::1]:${S}`, `2130706433:${S}`]) {
        await refusedOn(noSni, get('/', a), 404, 'ERR_ROUTE_NOT_FOUND');
      }
      await refusedOn(localhostSni, get('/', `localhost:${S}`), 404, 'ERR_ROUTE_NOT_FOUND');
      await refusedOn(localhostSni, get('/', `LOCALHOST.:${S}`), 404, 'ERR_ROUTE_NOT_FOUND');
      const appSni = () => connectTls({ port: P, servername: 'app.corp.test', ca: ca.certPem });
      await refusedOn(appSni, get('/', `127.0.0.1:${S}`), 421, 'ERR_MISDIRECTED_REQUEST');
      for (const a of [`127.0.0.1:${S}`, `localhost:${S}`, `app.corp.test:${S}`]) {
        await refusedOn(() => connectPlain(FP), get('/', a), 403, 'ERR_PROXY_DESTINATION_FORBIDDEN');
      }
      assertNotReached();
    });

    it('a WebSocket upgrade in absolute-form is refused', async () => {
      const ws = 'Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n';
      for (const a of [`127.0.0.1:${S}`, `localhost:${S}`]) {
        const s = await tlsToProxy();
        const r = await exchange(s, `GET http://${a}/ HTTP/1.1\r\nHost: ${a}\r\nConnection: Upgrade\r\n${ws}\r\n`);
        assertCode(r, 403, 'ERR_PROXY_DESTINATION_FORBIDDEN');
      }
      assertNotReached();
    });

    it('a templated route never reaches loopback through any entry point', async () => {
      const host = `localhost-${S}.corp.test`;
      // absolute-form on the TLS front door
      await refusedOn(tlsToProxy, get(`http://${host}/`, host), 403, 'ERR_UPSTREAM_FORBIDDEN');
      // origin-form on the front door
      await refusedOn(() => connectTls({ port: P, servername: host, ca: ca.certPem }), get('/', host), 403, 'ERR_UPSTREAM_FORBIDDEN');
      // CONNECT into the front door, then the same request inside
      const r = await curl([...viaTls(), `https://${host}:${P}/`]);
      assertCode(r, 403, 'ERR_UPSTREAM_FORBIDDEN');
      const plain = await curl([...viaPlain(), `https://${host}:${P}/`]);
      assertCode(plain, 403, 'ERR_UPSTREAM_FORBIDDEN');
      assertNotReached();
    });
  });
});

// regression: a CONNECT socket is taken over from the HTTP server, so closeAllConnections() does not see it;
// destroy() left open tunnels working and close() never finished while one was open
describe('shutdown ends open CONNECT tunnels', () => {
  const t = tempDir();
  let ca: TestCa;
  let echo: Backend;
  let upstream: Backend;

  before(async () => {
    ca = new TestCa(t.dir);
    echo = await startEcho();
    const cert = ca.server(['localhost']);
    upstream = await startHttpsEcho(cert.certPem, cert.keyPem);
  });
  after(async () => {
    destroyProbes();
    await echo?.close();
    await upstream?.close();
    t.cleanup();
  });

  async function withTunnels(stop: (gh: RunningGatehouse) => Promise<void>): Promise<void> {
    const dir = join(t.dir, `g${Math.random().toString(36).slice(2)}`);
    mkdirSync(dir);
    const server = ca.server(['*.corp.test', 'gate.test']);
    const gh = await startGatehouse(dir, {
      server: {
        https: '127.0.0.1:0',
        forwardProxy: '127.0.0.1:0',
        authHost: 'gate.test',
        workers: 1,
        accessLog: false,
        shutdownTimeout: '300ms',
        tls: { cert: server.cert, key: server.key },
      },
      store: { sqlite: { path: join(dir, 'gatehouse.db') } },
      routes: [
        { name: 'app', host: 'app.corp.test', to: echo.origin, auth: 'public' },
        { name: 'up', host: 'up.corp.test', aliases: ['up.internal'], to: `https://127.0.0.1:${upstream.port}`, auth: 'public' },
      ],
    });
    try {
      const P = gh.httpsPort;
      const tunnels = [
        // into the front door through the TLS front door, with TLS running inside and a request answered
        (async () => {
          const { tunnel } = await openTunnel(await connectTls({ port: P, servername: 'gate.test', ca: ca.certPem }), `app.corp.test:${P}`);
          const inner = await connectTls({ socket: tunnel, servername: 'app.corp.test', ca: ca.certPem });
          inner.write(`GET /inside HTTP/1.1\r\nHost: app.corp.test:${P}\r\n\r\n`);
          await new Promise((r) => inner.once('data', r));
          return tunnel;
        })(),
        // into the front door through the plain forward proxy, nothing sent yet
        (async () => (await openTunnel(await connectPlain(gh.proxyPort!), `app.corp.test:${P}`)).tunnel)(),
        // a byte tunnel to an https upstream
        (async () => (await openTunnel(await connectTls({ port: P, servername: 'gate.test', ca: ca.certPem }), 'up.internal:443')).tunnel)(),
      ];
      const open = await Promise.all(tunnels);
      const closed = open.map(() => false);
      open.forEach((s, i) => s.once('close', () => (closed[i] = true)));
      await stop(gh);
      await waitFor(() => closed.every(Boolean), 'every tunnel to be closed', 3000);
    } finally {
      await gh.g.destroy();
    }
  }

  it('destroy() closes them', async () => {
    await withTunnels(async (gh) => {
      await gh.g.destroy();
    });
  });

  it('close() finishes within the shutdown timeout and closes them', async () => {
    await withTunnels(async (gh) => {
      const started = Date.now();
      let done = false;
      const closing = gh.g.close().then(() => (done = true));
      await waitFor(() => done, 'close() to finish', 3000);
      await closing;
      assert.ok(Date.now() - started < 2000);
    });
  });
});
