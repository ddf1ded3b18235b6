import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import {
  TestCa, curl, headerValues, send, startBackend, startGatehouse, tempDir, waitFor,
  type BackendHandler, type RunningGatehouse, type ScriptedBackend,
} from '../harness/index.ts';

interface Echoed {
  method: string;
  url: string;
  headers: Record<string, string>;
  rawHeaders: string[];
}

/** An app that redirects to its own internal names, as old intranet apps do. */
const redirector = (origin: () => string): BackendHandler => (req, res) => {
  req.resume();
  const url = req.url ?? '/';
  if (url === '/self') {
    res.writeHead(302, [
      'Location', `${origin()}/landed?x=1`,
      'Refresh', `0; url=${origin()}/refreshed`,
      'Content-Location', `${origin()}/content`,
      'Set-Cookie', 'a=1; Domain=127.0.0.1; Path=/',
      'Set-Cookie', 'b=2; Domain=other.example; Path=/',
      'Content-Length', '0',
    ]);
    res.end();
  } else if (url === '/alias') {
    res.writeHead(301, [
      'Location', 'http://legacy-app/landed',
      'Refresh', '3;URL="http://LEGACY-APP.internal:80/refreshed"',
      'Content-Location', '//legacy-app/content',
      'Set-Cookie', 'a=1; Domain=.Legacy-App.Internal; Path=/',
      'Set-Cookie', 'b=2; Domain=legacy-app.other.example; Path=/',
      'Content-Length', '0',
    ]);
    res.end();
  } else if (url === '/elsewhere') {
    res.writeHead(302, ['Location', 'https://idp.example.com/auth?back=http://legacy-app/', 'Content-Length', '0']);
    res.end();
  } else if (url.startsWith('/forged')) {
    const status = Number(new URL(url, 'http://x').searchParams.get('status') ?? 200);
    res.writeHead(status, ['X-Gatehouse-Error', 'ERR_POLICY_DENIED', 'x-gatehouse-error', 'forged', 'X-Request-Id', 'upstream-id', 'Content-Length', '2']);
    res.end('ok');
  } else {
    res.writeHead(404, ['Content-Length', '0']);
    res.end();
  }
};

describe('forwarding', () => {
  const t = tempDir();
  let ca: TestCa;
  let echo: ScriptedBackend;
  let apps: ScriptedBackend;
  let gh: RunningGatehouse;
  let trusted: RunningGatehouse;
  let pub: (host: string) => string;

  before(async () => {
    ca = new TestCa(t.dir);
    const server = ca.server(['*.corp.test', '*.open.test', 'gate.test']);
    echo = await startBackend();
    let appsOrigin = '';
    apps = await startBackend(redirector(() => appsOrigin));
    appsOrigin = apps.origin;
    const tls = { cert: server.cert, key: server.key };
    gh = await startGatehouse(t.dir, {
      server: { https: '127.0.0.1:0', http: '127.0.0.1:0', authHost: 'gate.test', workers: 1, tls },
      store: { sqlite: { path: join(t.dir, 'gatehouse.db') } },
      routes: [
        { name: 'app', host: 'app.corp.test', to: echo.origin, auth: 'public' },
        { name: 'keep', host: 'keep.corp.test', to: echo.origin, auth: 'public', upstream: { hostHeader: 'preserve' } },
        { name: 'custom', host: 'custom.corp.test', to: echo.origin, auth: 'public', upstream: { hostHeader: 'intranet.local' } },
        { name: 'redir', host: 'redir.corp.test', aliases: ['legacy-app', 'legacy-app.internal'], to: apps.origin, auth: 'public' },
        { name: 'raw', host: 'raw.corp.test', aliases: ['legacy-raw'], to: apps.origin, auth: 'public', upstream: { rewriteRedirects: false } },
        { name: 'fixed-local', host: 'loopback.corp.test', to: `http://localhost:${echo.port}`, auth: 'public' },
        { name: 'ports', host: '*-*.corp.test', to: 'http://{1}:{2}', auth: 'public' },
        { name: 'open-ports', host: '*-*.open.test', to: 'http://{1}:{2}', auth: 'public', upstream: { allowLoopback: true } },
      ],
    });
    const trustedDir = join(t.dir, 'trusted');
    mkdirSync(trustedDir);
    trusted = await startGatehouse(trustedDir, {
      server: { https: '127.0.0.1:0', authHost: 'gate.test', workers: 1, tls, trustedProxies: ['127.0.0.1/32'] },
      store: { sqlite: { path: join(trustedDir, 'gatehouse.db') } },
      routes: [{ name: 'app', host: 'app.corp.test', to: echo.origin, auth: 'public' }],
    });
    pub = (host) => `https://${host}:${gh.httpsPort}`;
  });
  after(async () => {
    await gh?.close();
    await trusted?.close();
    await echo?.close();
    await apps?.close();
    t.cleanup();
  });

  const get = (host: string, path = '/', headers: Record<string, string> = {}, port = gh.httpsPort) => send(host, port, ca.certPem, { path, headers });
  const echoed = (body: Buffer): Echoed => JSON.parse(body.toString()) as Echoed;
  const curlAt = (host: string, ...args: string[]) => curl(['--cacert', ca.cert, '--resolve', `${host}:${gh.httpsPort}:127.0.0.1`, ...args]);

  /** Asserts that `echo` saw exactly `urls` since `from`, after a sentinel request that must arrive after anything stray. */
  async function echoSawOnly(from: number, urls: string[]): Promise<void> {
    const r = await get('app.corp.test', '/sentinel');
    assert.equal(r.status, 200);
    await waitFor(() => echo.requests.some((s, i) => i >= from && s.url === '/sentinel'), 'the sentinel at the backend');
    assert.deepEqual(echo.requests.slice(from).map((s) => s.url), [...urls, '/sentinel']);
  }

  describe('Host header', () => {
    it('sends the upstream URL\'s host by default', async () => {
      const r = await get('app.corp.test', '/h');
      assert.equal(r.status, 200);
      assert.equal(echoed(r.body).headers.host, `127.0.0.1:${echo.port}`);
    });

    it('keeps the client\'s Host with hostHeader: preserve', async () => {
      const r = await get('keep.corp.test', '/h');
      assert.equal(echoed(r.body).headers.host, `keep.corp.test:${gh.httpsPort}`);
    });

    it('sends a configured Host', async () => {
      const r = await get('custom.corp.test', '/h', { host: `CUSTOM.corp.test:${gh.httpsPort}` });
      assert.equal(r.status, 200);
      assert.deepEqual(headerValues(echoed(r.body).rawHeaders, 'host'), ['intranet.local']);
    });
  });

  describe('redirect rewriting', () => {
    it('maps Location, Refresh, Content-Location and Set-Cookie Domain naming the upstream to the public host', async () => {
      const r = await get('redir.corp.test', '/self');
      assert.equal(r.status, 302);
      const origin = pub('redir.corp.test');
      assert.equal(r.headers.location, `${origin}/landed?x=1`);
      assert.equal(r.headers.refresh, `0; url=${origin}/refreshed`);
      assert.equal(r.headers['content-location'], `${origin}/content`);
      assert.deepEqual(headerValues(r.rawHeaders, 'set-cookie'), ['a=1; Domain=redir.corp.test; Path=/', 'b=2; Domain=other.example; Path=/']);
    });

    it('maps URLs naming one of the route\'s aliases', async () => {
      const r = await get('redir.corp.test', '/alias');
      assert.equal(r.status, 301);
      const origin = pub('redir.corp.test');
      assert.equal(r.headers.location, `${origin}/landed`);
      assert.equal(r.headers.refresh, `3;URL="${origin}/refreshed"`);
      assert.equal(r.headers['content-location'], `${origin}/content`);
      assert.deepEqual(headerValues(r.rawHeaders, 'set-cookie'), ['a=1; Domain=redir.corp.test; Path=/', 'b=2; Domain=legacy-app.other.example; Path=/']);
    });

    it('leaves a redirect to another site alone', async () => {
      const r = await get('redir.corp.test', '/elsewhere');
      assert.equal(r.headers.location, 'https://idp.example.com/auth?back=http://legacy-app/');
    });

    it('rewrites nothing with rewriteRedirects: false', async () => {
      const self = await get('raw.corp.test', '/self');
      assert.equal(self.status, 302);
      assert.equal(self.headers.location, `${apps.origin}/landed?x=1`);
      assert.equal(self.headers.refresh, `0; url=${apps.origin}/refreshed`);
      assert.equal(self.headers['content-location'], `${apps.origin}/content`);
      assert.deepEqual(headerValues(self.rawHeaders, 'set-cookie'), ['a=1; Domain=127.0.0.1; Path=/', 'b=2; Domain=other.example; Path=/']);
      const alias = await get('raw.corp.test', '/alias');
      assert.equal(alias.headers.location, 'http://legacy-app/landed');
    });
  });

  describe('what the upstream receives', () => {
    const spoofed = {
      'X-Forwarded-For': '198.51.100.66',
      'X-Forwarded-Proto': 'http',
      'X-Forwarded-Host': 'evil.test',
      Forwarded: 'for=198.51.100.66;proto=http',
      'X-Real-IP': '198.51.100.66',
    };

    it('gets X-Forwarded-For/Proto/Host from Gatehouse, replacing what an untrusted client sent', async () => {
      const r = await get('app.corp.test', '/xf', spoofed);
      const seen = echoed(r.body);
      assert.deepEqual(headerValues(seen.rawHeaders, 'x-forwarded-for'), ['127.0.0.1']);
      assert.deepEqual(headerValues(seen.rawHeaders, 'x-forwarded-proto'), ['https']);
      assert.deepEqual(headerValues(seen.rawHeaders, 'x-forwarded-host'), [`app.corp.test:${gh.httpsPort}`]);
      assert.deepEqual(headerValues(seen.rawHeaders, 'forwarded'), []);
      assert.deepEqual(headerValues(seen.rawHeaders, 'x-real-ip'), []);
      assert.ok(!JSON.stringify(seen.rawHeaders).includes('198.51.100.66'));
    });

    it('keeps and appends to them when the peer is a trusted proxy', async () => {
      const r = await get('app.corp.test', '/xf', spoofed, trusted.httpsPort);
      const seen = echoed(r.body);
      assert.deepEqual(headerValues(seen.rawHeaders, 'x-forwarded-for'), ['198.51.100.66, 127.0.0.1']);
      assert.deepEqual(headerValues(seen.rawHeaders, 'x-forwarded-proto'), ['http']);
      assert.deepEqual(headerValues(seen.rawHeaders, 'x-forwarded-host'), ['evil.test']);
      assert.deepEqual(headerValues(seen.rawHeaders, 'forwarded'), ['for=198.51.100.66;proto=http']);
      assert.deepEqual(headerValues(seen.rawHeaders, 'x-real-ip'), ['198.51.100.66']);
    });

    it('never gets a client-sent X-Gatehouse-* header', async () => {
      for (const port of [gh.httpsPort, trusted.httpsPort]) {
        const r = await get('app.corp.test', '/id', { 'X-Gatehouse-User': 'root@forged.example', 'x-GATEHOUSE-roles': 'forged-admin' }, port);
        const seen = echoed(r.body);
        assert.equal(r.status, 200);
        assert.deepEqual(Object.keys(seen.headers).filter((h) => h.startsWith('x-gatehouse-')), []);
        assert.ok(!JSON.stringify(seen.rawHeaders).includes('forged'));
      }
    });

    it('gets exactly the normalised path it was checked with, query untouched', async () => {
      const cases: [string, string][] = [
        ['/a/./b/../c//d?x=1&y=/../z%2e', '/a/c/d?x=1&y=/../z%2e'],
        ['//admin', '/admin'],
        ['/api/../admin', '/admin'],
        ['/api/%2e%2e/admin', '/admin'],
        ['/files/a%2fb', '/files/a%2Fb'],
        ['/%41%7e%3a', '/A~%3A'],
        ['/x/..', '/'],
      ];
      for (const [sent, want] of cases) {
        const r = await curlAt('app.corp.test', '--path-as-is', `${pub('app.corp.test')}${sent}`);
        assert.equal(r.status, 200, sent);
        assert.equal((JSON.parse(r.body) as Echoed).url, want, sent);
      }
    });

    it('is not forwarded an unsafe path: 400', async () => {
      const from = echo.requests.length;
      for (const unsafe of ['/a%00b', '/api/%2E%2e%2fadmin', '/api/..%5Cadmin']) {
        const r = await curlAt('app.corp.test', '--path-as-is', `${pub('app.corp.test')}${unsafe}`);
        assert.equal(r.status, 400, unsafe);
        assert.equal(r.headers['x-gatehouse-error'], 'ERR_BAD_REQUEST', unsafe);
      }
      await echoSawOnly(from, []);
    });
  });

  describe('what the client receives', () => {
    it('never gets an upstream\'s x-gatehouse-error, and gets Gatehouse\'s request id', async () => {
      for (const status of [200, 403, 502]) {
        const r = await get('redir.corp.test', `/forged?status=${status}`);
        assert.equal(r.status, status);
        assert.deepEqual(headerValues(r.rawHeaders, 'x-gatehouse-error'), []);
        assert.equal(headerValues(r.rawHeaders, 'x-request-id').length, 1);
        assert.notEqual(r.headers['x-request-id'], 'upstream-id');
        assert.equal(r.body.toString(), 'ok');
      }
    });

    it('gets a JSON error for Accept: application/json and HTML otherwise, both with x-gatehouse-error and x-request-id', async () => {
      const json = await get('nope.corp.test', '/x', { accept: 'application/json' });
      assert.equal(json.status, 404);
      assert.match(String(json.headers['content-type']), /^application\/json/);
      assert.equal(json.headers['x-gatehouse-error'], 'ERR_ROUTE_NOT_FOUND');
      const body = JSON.parse(json.body.toString()) as { error: { code: string; message: string; requestId: string } };
      assert.equal(body.error.code, 'ERR_ROUTE_NOT_FOUND');
      assert.match(body.error.message, /nope\.corp\.test/);
      assert.equal(body.error.requestId, json.headers['x-request-id']);

      for (const accept of ['text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8', '*/*', '']) {
        const html = await get('nope.corp.test', '/x', accept ? { accept } : {});
        assert.equal(html.status, 404);
        assert.match(String(html.headers['content-type']), /^text\/html/);
        assert.equal(html.headers['x-gatehouse-error'], 'ERR_ROUTE_NOT_FOUND');
        const text = html.body.toString();
        assert.match(text, /^<!doctype html>/i);
        assert.ok(text.includes('ERR_ROUTE_NOT_FOUND') && text.includes(String(html.headers['x-request-id'])));
      }
    });
  });

  describe('destinations', () => {
    it('answers 404 for an unknown host and forwards nothing', async () => {
      const from = echo.requests.length;
      const r = await curlAt('nope.corp.test', `${pub('nope.corp.test')}/`);
      assert.equal(r.status, 404);
      assert.equal(r.headers['x-gatehouse-error'], 'ERR_ROUTE_NOT_FOUND');
      assert.match(r.headers['x-request-id'] ?? '', /\S/);
      await echoSawOnly(from, []);
    });

    it('refuses a templated upstream that is loopback (by name or by number): 403, nothing forwarded', async () => {
      const from = echo.requests.length;
      for (const name of ['localhost', '2130706433', '0x7f000001']) {
        const r = await get(`${name}-${echo.port}.corp.test`, '/loop');
        assert.equal(r.status, 403, name);
        assert.equal(r.headers['x-gatehouse-error'], 'ERR_UPSTREAM_FORBIDDEN', name);
        assert.match(String(r.headers['x-request-id']), /\S/);
      }
      await echoSawOnly(from, []);
    });

    it('still refuses it when a connection to the same loopback origin is already pooled', async () => {
      const from = echo.requests.length;
      const warm = await get('loopback.corp.test', '/warm');
      assert.equal(warm.status, 200, 'a fixed upstream may be loopback');
      const r = await get(`localhost-${echo.port}.corp.test`, '/loop');
      assert.equal(r.status, 403);
      assert.equal(r.headers['x-gatehouse-error'], 'ERR_UPSTREAM_FORBIDDEN');
      await echoSawOnly(from, ['/warm']);
    });

    it('forwards to a loopback templated upstream with allowLoopback: true', async () => {
      const r = await get(`localhost-${echo.port}.open.test`, '/open');
      assert.equal(r.status, 200);
      const seen = echoed(r.body);
      assert.equal(seen.url, '/open');
      assert.equal(seen.headers.host, `localhost:${echo.port}`);
    });
  });

  describe('server.http', () => {
    it('answers 308 to the same URL on https with the front door\'s port, forwarding nothing', async () => {
      const from = echo.requests.length;
      const r = await curl(['--resolve', `app.corp.test:${gh.httpPort}:127.0.0.1`, '--path-as-is', `http://app.corp.test:${gh.httpPort}/a/b?c=1&d=%2F`]);
      assert.equal(r.status, 308);
      assert.equal(r.headers.location, `${pub('app.corp.test')}/a/b?c=1&d=%2F`);
      const post = await curl(['--resolve', `app.corp.test:${gh.httpPort}:127.0.0.1`, '-X', 'POST', '--data', 'x=1', `http://app.corp.test:${gh.httpPort}/form`]);
      assert.equal(post.status, 308);
      assert.equal(post.headers.location, `${pub('app.corp.test')}/form`);
      await echoSawOnly(from, []);
    });
  });
});
