/**
 * Sign-in in a real browser: headless Chromium (playwright-core) against Gatehouse and a real OpenID provider
 * (oidc-provider). One password opens every route host (each gets its own host-only cookie through a hand-off
 * code), the backend gets the identity headers and a signed assertion, cookies that are tampered or carried to
 * another host send the browser back through the auth host, hand-off codes work once and on one host, sign-out on
 * any host ends every host and the IdP session, sign-ins in parallel tabs do not disturb each other, and the CLI
 * sign-in ends at a loopback address with a code that becomes a bearer token.
 *
 * Chromium resolves *.corp.test and gate.test to 127.0.0.1 and trusts the server certificate by its key pin.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Browser, BrowserContext, Cookie, Page } from 'playwright-core';
import { launchChromium, newContext } from '../harness/browser.ts';
import {
  AUTH_HOST,
  SESSION_COOKIE_NAME,
  assertNotSignedIn,
  fetchJwks,
  flipChar,
  loginInBrowser,
  pkcePair,
  signInInBrowser,
  startSignInWorld,
  verifyAssertion,
  type SignInWorld,
} from '../harness/index.ts';

const ALICE = { email: 'alice@example.com', password: 'alice-password', groups: ['sre-team'] };
const BOB = { email: 'bob@example.com', password: 'bob-password' };

interface Echoed {
  method: string;
  url: string;
  headers: Record<string, string | undefined>;
}

describe('sign-in in a real browser', () => {
  let w: SignInWorld;
  let browser: Browser;
  const url = (host: string, path = '/') => w.main.url(host, path);
  const logins = (email: string) => w.idp.events.filter((e) => e.type === 'login' && e.email === email).length;
  const logouts = () => w.idp.events.filter((e) => e.type === 'logout').length;

  before(async () => {
    w = await startSignInWorld({
      users: [ALICE, BOB],
      routes: [
        { name: 'a', host: 'a.corp.test', allow: { users: ['alice@example.com'] } },
        { name: 'b', host: 'b.corp.test', allow: { domains: ['example.com'] } },
      ],
      roles: [
        { name: 'sre', groups: ['sre-team'], grants: ['a'] },
        { name: 'viewers', members: ['alice@example.com'], grants: ['b'] },
      ],
    });
    browser = await launchChromium({ trust: [w.server.certPem] });
  });
  after(async () => {
    await browser?.close();
    await w?.close();
  });

  /** What the echo backend answered, as the page shows it. */
  async function shown(page: Page): Promise<Echoed> {
    return JSON.parse(await page.locator('body').innerText()) as Echoed;
  }

  /** The last request the backend received for `path` (the browser also asks for /favicon.ico). */
  function received(path: string) {
    const r = w.echo.received.filter((x) => x.url === path).at(-1);
    assert.ok(r, `the backend received ${path}`);
    return r;
  }

  function cookieOn(cookies: readonly Cookie[], host: string, name = SESSION_COOKIE_NAME): Cookie | undefined {
    return cookies.find((c) => c.domain === host && c.name === name);
  }

  /** Every URL the page requested (redirect hops included) while `run` ran. */
  async function requestsDuring(page: Page, run: () => Promise<unknown>): Promise<URL[]> {
    const seen: URL[] = [];
    const listener = (r: { url(): string }) => seen.push(new URL(r.url()));
    page.on('request', listener);
    try {
      await run();
    } finally {
      page.off('request', listener);
    }
    return seen;
  }

  /** A fetch() from inside the page (a real XHR with the page's cookies). */
  function fetchInPage(page: Page, target: string, headers: Record<string, string>) {
    return page.evaluate(
      async ({ target, headers }) => {
        try {
          const r = await fetch(target, { headers, credentials: 'include' });
          return { status: r.status, body: await r.text(), error: undefined };
        } catch (err) {
          return { status: 0, body: '', error: String(err) };
        }
      },
      { target, headers },
    );
  }

  // ------------------------------------------------------------------------------------------ one sign-in, two hosts

  describe('one sign-in', () => {
    let context: BrowserContext;
    let page: Page;
    const handoffs: URL[] = [];

    before(async () => {
      context = await newContext(browser);
      page = await context.newPage();
      page.on('request', (r) => {
        const u = new URL(r.url());
        if (u.pathname === '/.gatehouse/handoff') handoffs.push(u);
      });
    });
    after(async () => {
      await context?.close();
    });

    it('takes the browser from route A to the IdP and back to the same path and query', async () => {
      const target = url('a.corp.test', '/hello/world?x=1&y=two%20words');
      await context.addCookies([{ name: 'theme', value: 'dark', domain: 'a.corp.test', path: '/', secure: true }]);
      const before = logins(ALICE.email);
      const hops = await requestsDuring(page, async () => {
        await page.goto(target);
        assert.equal(new URL(page.url()).origin, w.idp.issuer, 'at the IdP');
        assert.equal(await loginInBrowser(page, ALICE), 'submitted');
        await page.waitForURL(target);
      });
      assert.equal(page.url(), target);
      assert.equal(logins(ALICE.email), before + 1);
      const paths = hops.map((u) => `${u.host}${u.pathname}`);
      for (const step of [`a.corp.test:${w.main.port}/hello/world`, `${AUTH_HOST}:${w.main.port}/.gatehouse/login`, `${AUTH_HOST}:${w.main.port}/.gatehouse/callback`, `a.corp.test:${w.main.port}/.gatehouse/handoff`]) {
        assert.ok(paths.includes(step), `the browser went through ${step}: ${paths.join(' → ')}`);
      }
      const echoed = await shown(page);
      assert.equal(echoed.url, '/hello/world?x=1&y=two%20words');
      assert.equal(echoed.headers['x-gatehouse-user'], ALICE.email);
    });

    it('opens route B without a password (a hand-off only)', async () => {
      const before = logins(ALICE.email);
      const target = url('b.corp.test', '/second?q=1');
      const hops = await requestsDuring(page, async () => {
        await page.goto(target);
        await page.waitForURL(target);
      });
      assert.equal(logins(ALICE.email), before, 'no second sign-in at the IdP');
      assert.ok(!hops.some((u) => u.origin === w.idp.issuer), `the IdP was not visited: ${hops.map((u) => u.href).join(' → ')}`);
      assert.ok(hops.some((u) => u.host === `b.corp.test:${w.main.port}` && u.pathname === '/.gatehouse/handoff'));
      assert.equal((await shown(page)).headers['x-gatehouse-user'], ALICE.email);
    });

    it('has a host-only, HttpOnly, Secure, SameSite=Lax session cookie on each host, the auth host included', async () => {
      const cookies = await context.cookies();
      const values = new Set<string>();
      for (const host of ['a.corp.test', 'b.corp.test', AUTH_HOST]) {
        const c = cookieOn(cookies, host);
        assert.ok(c, `a session cookie for ${host}: ${cookies.map((k) => `${k.domain} ${k.name}`).join(', ')}`);
        assert.equal(c.path, '/');
        assert.equal(c.httpOnly, true);
        assert.equal(c.secure, true);
        assert.equal(c.sameSite, 'Lax');
        assert.ok(c.expires * 1000 > Date.now() + 3_600_000, 'lives as long as the session');
        values.add(c.value);
      }
      assert.equal(values.size, 3, 'each host its own cookie value');
      assert.deepEqual(
        cookies.filter((c) => c.name.startsWith(SESSION_COOKIE_NAME) && (c.domain.startsWith('.') || !['a.corp.test', 'b.corp.test', AUTH_HOST].includes(c.domain))),
        [],
        'no domain cookie',
      );
      assert.deepEqual(cookies.filter((c) => c.name.startsWith(`${SESSION_COOKIE_NAME}-login-`)), [], 'the login attempt cookie is gone');
    });

    it('gives the backend the identity headers and an assertion that verifies against the JWKS, and no Gatehouse cookie', async () => {
      const client = w.client();
      const jwks = await fetchJwks(client, w.main.port);
      assert.equal(jwks.keys.length, 2, 'the current and the next key');
      assert.equal(new Set(jwks.keys.map((k) => k.kid)).size, 2);

      const a = received('/hello/world?x=1&y=two%20words');
      assert.equal(a.headers['x-gatehouse-user'], ALICE.email);
      assert.equal(a.headers['x-gatehouse-roles'], 'sre,viewers', 'sre from the IdP group, viewers from members');
      assert.equal(a.headers.cookie, 'theme=dark', 'other cookies kept, Gatehouse cookies gone');
      const claims = await verifyAssertion(client, w.main.port, String(a.headers['x-gatehouse-jwt-assertion']), 'a.corp.test');
      assert.equal(claims.email, ALICE.email);
      assert.deepEqual(claims.groups, ['sre-team']);
      assert.deepEqual(claims.roles, ['sre', 'viewers']);

      const b = received('/second?q=1');
      assert.equal(b.headers.cookie, undefined);
      const forB = await verifyAssertion(client, w.main.port, String(b.headers['x-gatehouse-jwt-assertion']), 'b.corp.test');
      assert.equal(forB.email, ALICE.email);
      for (const r of w.echo.received) {
        assert.ok(!String(r.headers.cookie ?? '').includes('__Host-gatehouse'), `no Gatehouse cookie in ${r.url}`);
      }
    });

    it('answers an XHR on a signed-in host, and 401 JSON with CORS for a route origin once the cookie is bad', async () => {
      await page.goto(url('b.corp.test', '/xhr-page'));
      const same = await fetchInPage(page, '/data', { accept: 'application/json' });
      assert.equal(same.status, 200);
      assert.equal((JSON.parse(same.body) as Echoed).headers['x-gatehouse-user'], ALICE.email);

      // route A's cookie tampered: a cross-origin XHR from route B gets a 401 that CORS lets it read
      const cookies = await context.cookies();
      const good = cookieOn(cookies, 'a.corp.test')!;
      await context.addCookies([{ ...good, value: flipChar(good.value, 3) }]);
      const cross = await fetchInPage(page, url('a.corp.test', '/api'), { accept: 'application/json' });
      assert.equal(cross.status, 401, cross.error ?? cross.body);
      assert.equal((JSON.parse(cross.body) as { error: { code: string } }).error.code, 'ERR_NOT_SIGNED_IN');

      // from a foreign origin (the IdP's page) the same 401 carries no CORS headers: the browser hides it
      await page.goto(`${w.idp.issuer}/.well-known/openid-configuration`);
      const foreign = await fetchInPage(page, url('a.corp.test', '/api'), { accept: 'application/json' });
      assert.equal(foreign.status, 0, 'blocked by CORS');
      assert.match(foreign.error ?? '', /TypeError|Failed to fetch/);
      await context.addCookies([good]);
    });

    it('sends a browser with a tampered or foreign cookie back through the auth host, which hands off a good one', async () => {
      const cookies = await context.cookies();
      const a = cookieOn(cookies, 'a.corp.test')!;
      const b = cookieOn(cookies, 'b.corp.test')!;
      const dot = a.value.indexOf('.');
      const cases: Array<[string, string, string]> = [
        ['tampered-secret', 'a.corp.test', flipChar(a.value.slice(0, dot), 5) + a.value.slice(dot)],
        ['tampered-mac', 'a.corp.test', a.value.slice(0, dot + 1) + flipChar(a.value.slice(dot + 1), 5)],
        ['b-cookie-on-a', 'a.corp.test', b.value],
        ['a-cookie-on-b', 'b.corp.test', a.value],
      ];
      for (const [what, host, value] of cases) {
        await context.addCookies([{ ...a, domain: host, value }]);
        await assertNotSignedIn(w.client(), url(host, '/refused'), `${SESSION_COOKIE_NAME}=${value}`, w.echo).catch((err: Error) => {
          throw new Error(`${what}: ${err.message}`, { cause: err });
        });
        const before = logins(ALICE.email);
        const target = url(host, `/again?case=${what}`);
        const hops = await requestsDuring(page, async () => {
          await page.goto(target);
          await page.waitForURL(target);
        });
        assert.ok(hops.some((u) => u.host === `${AUTH_HOST}:${w.main.port}` && u.pathname === '/.gatehouse/login'), `${what}: back through the auth host`);
        assert.equal(logins(ALICE.email), before, `${what}: no password needed`);
        const fresh = cookieOn(await context.cookies(), host)!;
        assert.notEqual(fresh.value, value, `${what}: replaced`);
        assert.equal((await shown(page)).headers['x-gatehouse-user'], ALICE.email);
      }
    });

    it('refuses a used hand-off URL, and a fresh code taken to another route host', async () => {
      assert.ok(handoffs.length >= 2, 'the browser went through hand-offs');
      const fresh = await newContext(browser);
      try {
        const other = await fresh.newPage();
        for (const used of handoffs.slice(0, 2)) {
          const r = await other.goto(used.href);
          assert.equal(r?.status(), 400, used.href);
          assert.equal(r?.headers()['x-gatehouse-error'], 'ERR_HANDOFF_INVALID');
          assert.match(await other.content(), /ERR_HANDOFF_INVALID/);
        }
        assert.deepEqual((await fresh.cookies()).filter((c) => c.name === SESSION_COOKIE_NAME), [], 'no cookie from a used code');
      } finally {
        await fresh.close();
      }

      // a fresh hand-off to route B, fetched with the browser's auth-host cookie, taken to route A instead
      const auth = cookieOn(await context.cookies(), AUTH_HOST)!;
      const fetched = await w.client().request(url(AUTH_HOST, `/.gatehouse/login?return=${encodeURIComponent(url('b.corp.test', '/moved'))}`), {
        headers: { cookie: `${SESSION_COOKIE_NAME}=${auth.value}` },
      });
      const caught = fetched.location;
      assert.ok(caught, `a hand-off: ${fetched.status} ${fetched.body.slice(0, 200)}`);
      assert.equal(caught.hostname, 'b.corp.test');
      assert.equal(caught.pathname, '/.gatehouse/handoff');
      await context.clearCookies({ domain: 'a.corp.test' });
      const moved = await page.goto(url('a.corp.test', `/.gatehouse/handoff${caught.search}`));
      assert.equal(moved?.status(), 400);
      assert.equal(moved?.headers()['x-gatehouse-error'], 'ERR_HANDOFF_INVALID');
      assert.equal(cookieOn(await context.cookies(), 'a.corp.test'), undefined, 'no cookie for route A');
    });
  });

  // ------------------------------------------------------------------------------------------ sign-out

  describe('sign-out', () => {
    it('on route B ends route A, route B and the auth host, and the IdP session', async () => {
      const context = await newContext(browser);
      try {
        const page = await context.newPage();
        await signInInBrowser(page, url('a.corp.test', '/a'), ALICE);
        await page.goto(url('b.corp.test', '/b'));
        await page.waitForURL(url('b.corp.test', '/b'));
        const before = await context.cookies();
        const kept = Object.fromEntries(['a.corp.test', 'b.corp.test', AUTH_HOST].map((h) => [h, cookieOn(before, h)!.value]));
        const out = logouts();

        const hops = await requestsDuring(page, async () => {
          await page.goto(url('b.corp.test', '/.gatehouse/logout'));
          await page.waitForURL((u) => u.origin === w.idp.issuer && u.pathname.startsWith('/session/end/success'));
        });
        assert.ok(hops.some((u) => u.host === `${AUTH_HOST}:${w.main.port}` && u.pathname === '/.gatehouse/logout'), 'through the auth host');
        const endSession = hops.find((u) => u.origin === w.idp.issuer && u.pathname === '/session/end');
        assert.ok(endSession, 'through the IdP end-session endpoint');
        assert.match(endSession.searchParams.get('id_token_hint') ?? '', /^ey/, 'with id_token_hint');
        assert.equal(logouts(), out + 1, 'the IdP signed the user out');

        const after = await context.cookies();
        assert.equal(cookieOn(after, 'b.corp.test'), undefined, "route B's cookie is cleared");
        assert.equal(cookieOn(after, AUTH_HOST), undefined, "the auth host's cookie is cleared");
        const client = w.client();
        for (const host of ['a.corp.test', 'b.corp.test']) {
          await assertNotSignedIn(client, url(host, '/after-logout'), `${SESSION_COOKIE_NAME}=${kept[host]}`, w.echo);
        }
        const login = await client.request(url(AUTH_HOST, `/.gatehouse/login?return=${encodeURIComponent(url('a.corp.test', '/'))}`), {
          headers: { cookie: `${SESSION_COOKIE_NAME}=${kept[AUTH_HOST]}` },
        });
        assert.equal(login.location?.origin, w.idp.issuer, 'the auth host sends the old cookie to the IdP again');

        // route A's cookie is still in the browser, and refused: an XHR gets 401, a visit needs the password again
        await page.goto(url('a.corp.test', '/.gatehouse/handoff'));
        assert.ok(cookieOn(await context.cookies(), 'a.corp.test'));
        const xhr = await fetchInPage(page, '/data', { accept: 'application/json' });
        assert.equal(xhr.status, 401);
        assert.equal((JSON.parse(xhr.body) as { error: { code: string } }).error.code, 'ERR_NOT_SIGNED_IN');
        const xrw = await fetchInPage(page, '/data', { accept: 'text/html', 'x-requested-with': 'XMLHttpRequest' });
        assert.equal(xrw.status, 401);
        await page.goto(url('a.corp.test', '/again'));
        assert.equal(new URL(page.url()).origin, w.idp.issuer);
        await page.waitForSelector('input[name=password]');
      } finally {
        await context.close();
      }
    });

    it('on the auth host ends every route and the IdP session', async () => {
      const context = await newContext(browser);
      try {
        const page = await context.newPage();
        await signInInBrowser(page, url('a.corp.test', '/a'), ALICE);
        const a = cookieOn(await context.cookies(), 'a.corp.test')!.value;
        const out = logouts();
        await page.goto(url(AUTH_HOST, '/.gatehouse/logout'));
        await page.waitForURL((u) => u.origin === w.idp.issuer && u.pathname.startsWith('/session/end/success'));
        assert.equal(logouts(), out + 1);
        assert.equal(cookieOn(await context.cookies(), AUTH_HOST), undefined);
        await assertNotSignedIn(w.client(), url('a.corp.test', '/after'), `${SESSION_COOKIE_NAME}=${a}`, w.echo);
      } finally {
        await context.close();
      }
    });
  });

  // ------------------------------------------------------------------------------------------ parallel tabs

  describe('two tabs signing in at once', () => {
    for (const order of ['first tab first', 'second tab first'] as const) {
      it(`both succeed, finishing the ${order === 'first tab first' ? 'first' : 'second'} one first`, async () => {
        const context = await newContext(browser);
        try {
          const [one, two] = await Promise.all([context.newPage(), context.newPage()]);
          const targets = [url('a.corp.test', '/tab-one?n=1'), url('b.corp.test', '/tab-two?n=2')] as const;
          await Promise.all([one.goto(targets[0]), two.goto(targets[1])]);
          for (const p of [one, two]) assert.equal(new URL(p.url()).origin, w.idp.issuer, 'both tabs are at the IdP');
          const attempts = (await context.cookies()).filter((c) => c.domain === AUTH_HOST && c.name.startsWith(`${SESSION_COOKIE_NAME}-login-`));
          assert.equal(attempts.length, 2, 'one login cookie per attempt');
          const tabs = order === 'first tab first' ? ([[one, targets[0]], [two, targets[1]]] as const) : ([[two, targets[1]], [one, targets[0]]] as const);
          for (const [p, target] of tabs) {
            assert.equal(await loginInBrowser(p, ALICE), 'submitted');
            await p.waitForURL(target);
            assert.equal((await shown(p)).headers['x-gatehouse-user'], ALICE.email);
          }
        } finally {
          await context.close();
        }
      });
    }
  });

  // ------------------------------------------------------------------------------------------ CLI sign-in

  describe('CLI sign-in in the browser', () => {
    let loopback: Server;
    let loopbackPort: number;
    const arrived: URL[] = [];

    before(async () => {
      loopback = createServer((req, res) => {
        arrived.push(new URL(req.url ?? '/', `http://127.0.0.1:${loopbackPort}`));
        res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>CLI</title><p>You may close this window.</p>');
      });
      await new Promise<void>((r) => loopback.listen(0, '127.0.0.1', r));
      loopbackPort = (loopback.address() as AddressInfo).port;
    });
    after(async () => {
      await new Promise<void>((r) => loopback?.close(() => r()));
    });

    it('signs in at the IdP, ends at the loopback redirect with code and state, and the code becomes a bearer token', async () => {
      const context = await newContext(browser);
      try {
        const page = await context.newPage();
        const { verifier, challenge } = pkcePair();
        const redirectUri = `http://127.0.0.1:${loopbackPort}/callback`;
        const params = new URLSearchParams({ redirect_uri: redirectUri, code_challenge: challenge, code_challenge_method: 'S256', state: 'cli-state-1' });
        await page.goto(url(AUTH_HOST, `/.gatehouse/cli?${params.toString()}`));
        assert.equal(new URL(page.url()).origin, w.idp.issuer);
        assert.equal(await loginInBrowser(page, BOB), 'submitted');
        await page.waitForURL((u) => u.origin === `http://127.0.0.1:${loopbackPort}`);
        const landed = arrived.filter((u) => u.pathname === '/callback').at(-1)!;
        assert.equal(landed.pathname, '/callback');
        assert.equal(landed.searchParams.get('state'), 'cli-state-1');
        const code = landed.searchParams.get('code')!;

        const client = w.client();
        const issued = await client.request(url(AUTH_HOST, '/.gatehouse/cli/token'), {
          method: 'POST',
          headers: { accept: 'application/json', 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ code, code_verifier: verifier }).toString(),
        });
        assert.equal(issued.status, 200, issued.body);
        const { token, user } = JSON.parse(issued.body) as { token: string; user: string };
        assert.equal(user, BOB.email);
        const r = await client.request(url('b.corp.test', '/from-cli'), { headers: { accept: 'application/json', authorization: `Bearer ${token}` } });
        assert.equal(r.status, 200);
        const seen = received('/from-cli');
        assert.equal(seen.headers['x-gatehouse-user'], BOB.email);
        assert.equal(seen.headers.authorization, undefined);

        // the browser is signed in now: the next CLI sign-in goes straight to the loopback address
        const again = new URLSearchParams({ redirect_uri: redirectUri, code_challenge: challenge, code_challenge_method: 'S256', state: 'cli-state-2' });
        const hops = await requestsDuring(page, async () => {
          await page.goto(url(AUTH_HOST, `/.gatehouse/cli?${again.toString()}`));
          await page.waitForURL((u) => u.origin === `http://127.0.0.1:${loopbackPort}` && u.searchParams.get('state') === 'cli-state-2');
        });
        assert.ok(!hops.some((u) => u.origin === w.idp.issuer), 'no IdP visit');
        const second = arrived.filter((u) => u.searchParams.get('state') === 'cli-state-2');
        assert.equal(second.length, 1);
        assert.match(second[0]!.searchParams.get('code') ?? '', /^[\w-]{40,}$/);
      } finally {
        await context.close();
      }
    });
  });
});
