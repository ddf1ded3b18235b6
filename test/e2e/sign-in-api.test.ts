/**
 * Sign-in seen by plain HTTP clients (node's https client with a cookie jar, and the real curl) against a real
 * OpenID provider: return URLs (no open redirect), hand-off codes (single use, one host), session cookies that
 * are tampered, foreign, expired, idle or revoked, what the backend receives, who may use which route, refused
 * accounts, sign-out across the workers of a real `gatehouse serve`, and the CLI sign-in with PKCE and its tokens.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  AUTH_HOST,
  SESSION_COOKIE_NAME,
  assertNotSignedIn,
  curl,
  flipChar,
  parseSetCookie,
  pkcePair,
  signInOverHttp,
  startSignInWorld,
  verifyAssertion,
  type CurlResult,
  type GatehouseSetup,
  type SignInGatehouse,
  type SignInWorld,
  type WebClient,
  type WebResponse,
} from '../harness/index.ts';

const ALICE = { email: 'alice@example.com', password: 'alice-password', groups: ['sre-team'] };
const BOB = { email: 'bob@example.com', password: 'bob-password' };
const CAROL = { email: 'carol@example.com', password: 'carol-password', groups: ['ops-team'] };
const DAVE = { email: 'dave@example.com', password: 'dave-password' };
const MALLORY = { email: 'mallory@other.example', password: 'mallory-password' };
const UNVERIFIED = { email: 'unverified@example.com', password: 'unverified-password', emailVerified: false };

const SETUP: GatehouseSetup = {
  identity: { allowedDomains: ['example.com'] },
  routes: [
    { name: 'a', host: 'a.corp.test', allow: { users: ['alice@example.com'] } },
    { name: 'b', host: 'b.corp.test', allow: { domains: ['example.com'] } },
    { name: 'wiki', host: 'wiki.corp.test' },
    { name: 'ops', host: 'ops.corp.test' },
    { name: 'plain', host: 'plain.corp.test', allow: { domains: ['example.com'] }, identityHeaders: false },
    { name: 'secret', host: 'secret.corp.test', allow: { users: ['root@example.com'] } },
  ],
  roles: [
    { name: 'sre', groups: ['sre-team'], grants: ['a'] },
    { name: 'viewers', members: ['alice@example.com', 'bob@example.com'], grants: ['wiki'] },
    { name: 'ops', groups: ['ops-team'], grants: ['ops'] },
  ],
};

interface Echoed {
  url: string;
  headers: Record<string, string | undefined>;
}

describe('sign-in over HTTP', () => {
  let w: SignInWorld;
  let gh: SignInGatehouse;
  const url = (host: string, path = '/') => gh.url(host, path);

  before(async () => {
    w = await startSignInWorld({ users: [ALICE, BOB, CAROL, DAVE, MALLORY, UNVERIFIED], extraGatehouses: 2, ...SETUP });
    gh = w.main;
  });
  after(async () => {
    await w?.close();
  });

  /** A fresh client (no IdP session) signed in as `user`, starting at `start`. */
  async function signedIn(user: { email: string; password: string }, start = url('a.corp.test', '/')) {
    const client = w.client();
    const { hops, last } = await signInOverHttp(client, start, user);
    return { client, hops, last };
  }

  function sessionCookieOf(client: WebClient, host: string): string {
    const c = client.jar.get(host, SESSION_COOKIE_NAME);
    assert.ok(c, `a session cookie for ${host}`);
    return c.value;
  }

  function echoed(r: { body: string }): Echoed {
    return JSON.parse(r.body) as Echoed;
  }

  /** curl to `url` through 127.0.0.1, trusting the test CA. */
  function curlTo(target: string, args: string[] = []): Promise<CurlResult> {
    const u = new URL(target);
    return curl(['--resolve', `${u.hostname}:${u.port}:127.0.0.1`, '--cacert', w.ca.cert, ...args, target]);
  }

  // ------------------------------------------------------------------------------------------ return URLs

  describe('the return URL after sign-in', () => {
    const refused = () => [
      'https://evil.example/',
      '//evil.example',
      '//evil.example/path',
      `http://a.corp.test:${gh.port}/`,
      `https://a.corp.test:${gh.port + 1 === 65536 ? 1 : gh.port + 1}/`,
      `https://a.corp.test/`,
      'javascript:alert(document.cookie)',
      `javascript://a.corp.test:${gh.port}/%0aalert(1)`,
      `https://${AUTH_HOST}:${gh.port}/.gatehouse/logout`,
      `https://a.corp.test:${gh.port}/.gatehouse/logout`,
      `https://a.corp.test:${gh.port}/.gatehouse/handoff?code=x`,
      `https://${AUTH_HOST}:${gh.port}/%2Egatehouse/logout`,
      `https://a.corp.test:${gh.port}/%2egatehouse/logout`,
      `https://${AUTH_HOST}:${gh.port}//.gatehouse/logout`,
      `https://a.corp.test:${gh.port}/x/../.gatehouse/logout`,
      `https://user:secret@${AUTH_HOST}:${gh.port}/`,
      `https://user@a.corp.test:${gh.port}/`,
      `https://${AUTH_HOST}:${gh.port}@evil.example/`,
      `https://evil.example\\@a.corp.test:${gh.port}/`,
      `https://a.corp.test.evil.example:${gh.port}/`,
      `https://nothing.corp.test:${gh.port}/`,
      '/relative/path',
      'not a url',
    ];

    async function assertRefused(client: WebClient) {
      for (const ret of refused()) {
        const r = await client.request(url(AUTH_HOST, `/.gatehouse/login?return=${encodeURIComponent(ret)}`));
        assert.equal(r.status, 400, `${ret} is refused: ${r.status} ${r.location?.href ?? ''}`);
        assert.equal(r.code, 'ERR_RETURN_URL_INVALID', ret);
        assert.equal(r.location, undefined, `${ret}: no redirect`);
        assert.equal(r.headers.refresh, undefined);
      }
    }

    it('refuses anything but a route or the auth host on the front door, before sign-in', async () => {
      await assertRefused(w.client());
    });

    it('refuses them for a signed-in user too, who would be sent on at once', async () => {
      const { client } = await signedIn(ALICE);
      await assertRefused(client);
    });

    it('accepts a route URL and the auth host', async () => {
      const anonymous = await w.client().request(url(AUTH_HOST, `/.gatehouse/login?return=${encodeURIComponent(url('b.corp.test', '/x?y=1'))}`));
      assert.equal(anonymous.status, 302);
      assert.equal(anonymous.location?.origin, w.idp.issuer, 'off to the IdP');

      const { client } = await signedIn(ALICE);
      const route = await client.request(url(AUTH_HOST, `/.gatehouse/login?return=${encodeURIComponent(url('b.corp.test', '/x?y=1'))}`));
      assert.equal(route.status, 302);
      assert.equal(route.location?.origin, `https://b.corp.test:${gh.port}`);
      assert.equal(route.location?.pathname, '/.gatehouse/handoff');
      const auth = await client.request(url(AUTH_HOST, `/.gatehouse/login?return=${encodeURIComponent(url(AUTH_HOST, '/'))}`));
      assert.equal(auth.status, 302);
      assert.equal(auth.location?.href, url(AUTH_HOST, '/'));
    });
  });

  // ------------------------------------------------------------------------------------------ hand-off

  describe('hand-off codes', () => {
    /** A fresh hand-off URL for `host` from the signed-in auth-host session in `client`. */
    async function handoffFor(client: WebClient, host: string, path: string): Promise<URL> {
      const r = await client.request(url(AUTH_HOST, `/.gatehouse/login?return=${encodeURIComponent(url(host, path))}`));
      assert.equal(r.status, 302);
      const to = r.location!;
      assert.equal(to.origin, `https://${host}:${gh.port}`);
      assert.equal(to.pathname, '/.gatehouse/handoff');
      assert.match(to.searchParams.get('code') ?? '', /^[\w-]{40,}$/);
      assert.equal([...to.searchParams.keys()].join(), 'code', 'the return path is not in the URL');
      return to;
    }

    it('gives each route host its own host-only cookie, once per code', async () => {
      const { client } = await signedIn(ALICE);
      const code = await handoffFor(client, 'a.corp.test', '/deep/path?q=1&r=two');
      const stranger = w.client();
      const first = await stranger.request(code);
      assert.equal(first.status, 302);
      assert.equal(first.location?.href, url('a.corp.test', '/deep/path?q=1&r=two'));
      assert.equal(first.setCookies.length, 1);
      const set = parseSetCookie(first.setCookies[0]!, 'a.corp.test');
      assert.equal(set.name, SESSION_COOKIE_NAME);
      assert.equal(set.path, '/');
      assert.equal(set.domain, undefined, 'host-only');
      assert.ok(set.secure && set.httpOnly);
      assert.equal(set.sameSite, 'Lax');
      assert.ok(set.maxAge! > 3600, `Max-Age ${set.maxAge}`);
      assert.notEqual(set.value, sessionCookieOf(client, AUTH_HOST), "not the auth host's cookie");
      const page = await stranger.request(url('a.corp.test', '/deep/path?q=1&r=two'), { headers: { accept: 'application/json' } });
      assert.equal(page.status, 200);
      assert.equal(echoed(page).headers['x-gatehouse-user'], ALICE.email);

      const replay = await w.client().request(code);
      assert.equal(replay.status, 400);
      assert.equal(replay.code, 'ERR_HANDOFF_INVALID');
      assert.deepEqual(replay.setCookies, []);
      assert.equal(replay.location, undefined);
      const replayByOwner = await stranger.request(code);
      assert.equal(replayByOwner.code, 'ERR_HANDOFF_INVALID');
    });

    it('refuses a code taken to another route host', async () => {
      const { client } = await signedIn(ALICE);
      const forA = await handoffFor(client, 'a.corp.test', '/');
      const moved = new URL(forA.pathname + forA.search, `https://b.corp.test:${gh.port}`);
      const r = await w.client().request(moved);
      assert.equal(r.status, 400);
      assert.equal(r.code, 'ERR_HANDOFF_INVALID');
      assert.deepEqual(r.setCookies, []);
      const onAuthHost = await w.client().request(new URL(forA.pathname + forA.search, gh.authOrigin));
      assert.notEqual(onAuthHost.status, 302);
      assert.deepEqual(onAuthHost.setCookies, []);
    });

    it('refuses a missing or made-up code', async () => {
      for (const q of ['', '?code=', '?code=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA']) {
        const r = await w.client().request(url('a.corp.test', `/.gatehouse/handoff${q}`));
        assert.equal(r.status, 400, q);
        assert.equal(r.code, 'ERR_HANDOFF_INVALID', q);
        assert.deepEqual(r.setCookies, []);
      }
    });
  });

  // ------------------------------------------------------------------------------------------ session cookies

  describe('session cookies that are not good', () => {
    it('accepts the real cookie (the control) and refuses tampered, truncated and foreign ones', async () => {
      const { client } = await signedIn(ALICE, url('a.corp.test', '/'));
      await client.follow(url('b.corp.test', '/'));
      const a = sessionCookieOf(client, 'a.corp.test');
      const b = sessionCookieOf(client, 'b.corp.test');
      const auth = sessionCookieOf(client, AUTH_HOST);
      const dot = a.indexOf('.');
      assert.ok(dot > 0, 'secret.mac');
      const secret = a.slice(0, dot);
      const mac = a.slice(dot + 1);
      assert.equal(b.slice(0, b.indexOf('.')), secret, 'one session behind every host');
      assert.notEqual(b, a, 'each host its own MAC');

      const target = url('a.corp.test', '/private?x=1');
      const ok = await client.request(target, { headers: { accept: 'application/json', cookie: `${SESSION_COOKIE_NAME}=${a}` }, cookies: false });
      assert.equal(ok.status, 200, 'the untouched cookie works');

      const bad: Record<string, string> = {
        'a character of the secret flipped': `${flipChar(secret)}.${mac}`,
        'a character of the MAC flipped': `${secret}.${flipChar(mac)}`,
        'the MAC cut short': `${secret}.${mac.slice(0, -4)}`,
        'no MAC': secret,
        'an empty value': '',
        "route B's cookie": b,
        "the auth host's cookie": auth,
      };
      for (const [what, value] of Object.entries(bad)) {
        await assertNotSignedIn(client, target, `${SESSION_COOKIE_NAME}=${value}`, w.echo).catch((err: Error) => {
          throw new Error(`${what}: ${err.message}`, { cause: err });
        });
      }
    });

    it('answers a route origin with CORS headers on the 401, and no other origin', async () => {
      const target = url('a.corp.test', '/api/data');
      const ask = (origin: string) => w.client().request(target, { headers: { accept: 'application/json', origin } });
      for (const origin of [`https://b.corp.test:${gh.port}`, `https://a.corp.test:${gh.port}`]) {
        const r = await ask(origin);
        assert.equal(r.status, 401);
        assert.equal(r.headers['access-control-allow-origin'], origin);
        assert.equal(r.headers['access-control-allow-credentials'], 'true');
        assert.match(String(r.headers.vary), /Origin/i);
      }
      for (const origin of ['https://evil.example', `http://b.corp.test:${gh.port}`, 'null', `https://b.corp.test.evil.example:${gh.port}`, 'https://b.corp.test:1', 'https://b.corp.test']) {
        const r = await ask(origin);
        assert.equal(r.status, 401, origin);
        assert.equal(r.headers['access-control-allow-origin'], undefined, origin);
        assert.equal(r.headers['access-control-allow-credentials'], undefined, origin);
      }
    });

    it('refuses a revoked session (signed out elsewhere) on every host', async () => {
      const { client } = await signedIn(ALICE, url('a.corp.test', '/'));
      await client.follow(url('b.corp.test', '/'));
      const kept = client.jar.clone();
      const a = sessionCookieOf(client, 'a.corp.test');
      const auth = sessionCookieOf(client, AUTH_HOST);
      const ok = await client.request(url('a.corp.test', '/'), { headers: { accept: 'application/json' } });
      assert.equal(ok.status, 200);

      const out = await client.request(url('b.corp.test', '/.gatehouse/logout'));
      assert.equal(out.status, 302);
      assert.ok(out.setCookies.some((c) => c.startsWith(`${SESSION_COOKIE_NAME}=;`) && /Max-Age=0/i.test(c)), 'the cookie is cleared');

      await assertNotSignedIn(client, url('a.corp.test', '/after'), `${SESSION_COOKIE_NAME}=${a}`, w.echo);
      await assertNotSignedIn(client, url('b.corp.test', '/after'), `${SESSION_COOKIE_NAME}=${kept.get('b.corp.test', SESSION_COOKIE_NAME)!.value}`, w.echo);
      // the auth host no longer vouches for it either: login starts again at the IdP instead of handing off
      const login = await client.request(url(AUTH_HOST, `/.gatehouse/login?return=${encodeURIComponent(url('a.corp.test', '/'))}`), {
        headers: { cookie: `${SESSION_COOKIE_NAME}=${auth}` },
        cookies: false,
      });
      assert.equal(login.status, 302);
      assert.equal(login.location?.origin, w.idp.issuer);
    });

    it('ends a session at its ttl however busy, and after idle time when unused', async () => {
      const short = await w.startAnother({ ...SETUP, identity: { ...SETUP.identity, session: { ttl: '4s', idle: '2s' } } });
      try {
        const target = (path: string) => short.url('a.corp.test', path);
        const busy = w.client();
        await signInOverHttp(busy, target('/'), ALICE);
        const idle = w.client();
        await signInOverHttp(idle, target('/'), ALICE);
        const started = Date.now();
        const get = (c: WebClient) => c.request(target('/tick'), { headers: { accept: 'application/json' } });
        assert.equal((await get(idle)).status, 200);
        const idleSince = Date.now();
        // `busy` keeps using its session: it outlives the idle timeout, not the ttl
        let idleEnded: number | undefined;
        let busyEnded: number | undefined;
        while (Date.now() - started < 8_000 && busyEnded === undefined) {
          const r = await get(busy);
          if (r.status !== 200) busyEnded = Date.now();
          if (idleEnded === undefined && Date.now() - idleSince > 2_000) {
            if ((await get(idle)).status === 401) idleEnded = Date.now();
          }
          await new Promise((r) => setTimeout(r, 250));
        }
        assert.ok(idleEnded !== undefined, 'the unused session ended');
        assert.ok(idleEnded - idleSince < 3_000, `idle session ended ${idleEnded - idleSince} ms after its last use`);
        assert.ok(busyEnded !== undefined, 'the busy session ended at its ttl');
        assert.ok(busyEnded - started > 2_500, `the busy session outlived the idle timeout (${busyEnded - started} ms)`);
        assert.ok(busyEnded - started < 5_000, `and ended at its ttl (${busyEnded - started} ms)`);
        await assertNotSignedIn(busy, target('/tick'), busy.jar.header(new URL(target('/'))), w.echo);
      } finally {
        await short.close();
      }
    });
  });

  // ------------------------------------------------------------------------------------------ what the backend receives

  describe('what the backend receives', () => {
    it('the identity headers and a verifiable assertion; never Gatehouse cookies or client-sent X-Gatehouse-*', async () => {
      const { client } = await signedIn(ALICE);
      const a = sessionCookieOf(client, 'a.corp.test');
      const r = await curlTo(url('a.corp.test', '/who?am=i'), [
        '-H', 'accept: application/json',
        '-H', `cookie: theme=dark; ${SESSION_COOKIE_NAME}=${a}; __Host-gatehouse-login-abcdef=leftover; lang=en`,
        '-H', 'x-gatehouse-user: mallory@evil.example',
        '-H', 'X-Gatehouse-Roles: root',
        '-H', 'X-Gatehouse-Jwt-Assertion: forged.token.here',
        '-H', 'X-Gatehouse-Device: 01',
      ]);
      assert.equal(r.status, 200, r.body);
      const seen = w.echo.received.at(-1)!;
      assert.equal(seen.url, '/who?am=i');
      assert.equal(seen.headers['x-gatehouse-user'], ALICE.email);
      assert.equal(seen.headers['x-gatehouse-roles'], 'sre,viewers', 'one role from the IdP group, one from members');
      assert.equal(seen.headers['x-gatehouse-device'], undefined);
      assert.equal(seen.headers.cookie, 'theme=dark; lang=en');
      const names = seen.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
      assert.equal(names.filter((n) => n === 'x-gatehouse-user').length, 1);
      assert.equal(names.filter((n) => n === 'x-gatehouse-jwt-assertion').length, 1);
      const token = String(seen.headers['x-gatehouse-jwt-assertion']);
      assert.notEqual(token, 'forged.token.here');
      const claims = await verifyAssertion(client, gh.port, token, 'a.corp.test');
      assert.equal(claims.email, ALICE.email);
      assert.equal(claims.sub, ALICE.email);
      assert.deepEqual(claims.groups, ['sre-team']);
      assert.deepEqual(claims.roles, ['sre', 'viewers']);
      const other = await verifyAssertion(client, gh.port, token, 'b.corp.test').then(
        () => 'accepted',
        (err: Error) => err.message,
      );
      assert.match(other, /aud/, 'an assertion for route A is not one for route B');
    });

    it('only a cookie-free Cookie header is dropped entirely', async () => {
      const { client } = await signedIn(ALICE);
      const r = await curlTo(url('a.corp.test', '/only-ours'), ['-H', 'accept: application/json', '-H', `cookie: ${SESSION_COOKIE_NAME}=${sessionCookieOf(client, 'a.corp.test')}`]);
      assert.equal(r.status, 200);
      const seen = w.echo.received.at(-1)!;
      assert.equal(seen.url, '/only-ours');
      assert.equal(seen.headers.cookie, undefined);
    });

    it('none of the identity headers with identityHeaders: false, and still none from the client', async () => {
      const { client } = await signedIn(ALICE, url('plain.corp.test', '/'));
      const r = await curlTo(url('plain.corp.test', '/quiet'), [
        '-H', 'accept: application/json',
        '-H', `cookie: ${SESSION_COOKIE_NAME}=${sessionCookieOf(client, 'plain.corp.test')}; keep=1`,
        '-H', 'X-Gatehouse-User: mallory@evil.example',
        '-H', 'X-Gatehouse-Jwt-Assertion: forged',
      ]);
      assert.equal(r.status, 200, r.body);
      const seen = w.echo.received.at(-1)!;
      assert.equal(seen.url, '/quiet');
      assert.deepEqual(Object.keys(seen.headers).filter((h) => h.startsWith('x-gatehouse-')), []);
      assert.equal(seen.headers.cookie, 'keep=1');
    });
  });

  // ------------------------------------------------------------------------------------------ decisions

  describe('who may use which route', () => {
    async function get(client: WebClient, host: string, path = '/'): Promise<WebResponse> {
      return client.request(url(host, path), { headers: { accept: 'application/json' } });
    }

    it('allow.users, allow.domains, and role grants through members and through IdP groups', async () => {
      const alice = (await signedIn(ALICE, url('a.corp.test', '/'))).client;
      const viaUsers = await get(alice, 'a.corp.test');
      assert.equal(viaUsers.status, 200);
      assert.equal(echoed(viaUsers).headers['x-gatehouse-user'], ALICE.email);

      const bob = (await signedIn(BOB, url('b.corp.test', '/'))).client;
      const viaDomain = await get(bob, 'b.corp.test');
      assert.equal(viaDomain.status, 200);
      assert.equal(echoed(viaDomain).headers['x-gatehouse-user'], BOB.email);
      await bob.follow(url('wiki.corp.test', '/'));
      const viaMembers = await get(bob, 'wiki.corp.test');
      assert.equal(viaMembers.status, 200);
      assert.equal(echoed(viaMembers).headers['x-gatehouse-roles'], 'viewers');
      await bob.follow(url('a.corp.test', '/'));
      assert.equal((await get(bob, 'a.corp.test')).code, 'ERR_POLICY_DENIED', 'bob is not on route a');

      const carol = (await signedIn(CAROL, url('ops.corp.test', '/'))).client;
      const viaGroup = await get(carol, 'ops.corp.test');
      assert.equal(viaGroup.status, 200);
      assert.equal(echoed(viaGroup).headers['x-gatehouse-roles'], 'ops');
    });

    it('a signed-in user with no grant gets a 403 page naming the route and the user, not a redirect', async () => {
      const before = w.echo.received.length;
      const { client, last } = await signedIn(DAVE, url('ops.corp.test', '/dashboard'));
      assert.equal(last.url.href, url('ops.corp.test', '/dashboard'), 'the sign-in itself went through');
      for (const r of [last, await client.request(url('ops.corp.test', '/dashboard'))]) {
        assert.equal(r.status, 403);
        assert.equal(r.code, 'ERR_POLICY_DENIED');
        assert.equal(r.location, undefined);
        assert.match(String(r.headers['content-type']), /^text\/html/);
        assert.match(r.body, /Route: <code>ops<\/code>/, 'the page names the route');
        assert.ok(r.body.includes(DAVE.email), 'the page names the user');
      }
      const json = await get(client, 'ops.corp.test', '/dashboard');
      assert.equal(json.status, 403);
      assert.equal((JSON.parse(json.body) as { error: { code: string } }).error.code, 'ERR_POLICY_DENIED');
      assert.equal(w.echo.received.length, before, 'nothing was forwarded');
    });
  });

  // ------------------------------------------------------------------------------------------ refused accounts

  describe('accounts that may not sign in', () => {
    async function refusedSignIn(user: { email: string; password: string }, code: string) {
      const sessions = (await gh.gh!.g.store.list('session')).length;
      const client = w.client();
      const { hops, last } = await signInOverHttp(client, url('b.corp.test', '/'), user);
      assert.equal(last.status, 403, last.body.slice(0, 300));
      assert.equal(last.code, code);
      assert.equal(last.url.origin + last.url.pathname, url(AUTH_HOST, '/.gatehouse/callback'));
      assert.ok(
        hops.every((h) => !h.setCookies.some((c) => c.startsWith(`${SESSION_COOKIE_NAME}=`) && !/Max-Age=0/i.test(c))),
        'no session cookie was set',
      );
      assert.equal(client.jar.get(AUTH_HOST, SESSION_COOKIE_NAME), undefined);
      assert.equal((await gh.gh!.g.store.list('session')).length, sessions, 'no session was stored');
      await assertNotSignedIn(client, url('b.corp.test', '/'), client.jar.header(new URL(url('b.corp.test', '/'))));
    }

    it('another email domain than allowedDomains', async () => {
      await refusedSignIn(MALLORY, 'ERR_DOMAIN_NOT_ALLOWED');
    });

    it('an email address the IdP has not verified', async () => {
      await refusedSignIn(UNVERIFIED, 'ERR_EMAIL_NOT_VERIFIED');
    });
  });

  // ------------------------------------------------------------------------------------------ CLI

  describe('CLI sign-in (/.gatehouse/cli) and its tokens', () => {
    const redirectUri = 'http://127.0.0.1:53682/callback';
    const cliUrl = (params: Record<string, string>) => url(AUTH_HOST, `/.gatehouse/cli?${new URLSearchParams(params).toString()}`);

    async function cliCode(client: WebClient, challenge: string, state = 'st-' + Math.random().toString(36).slice(2)): Promise<string> {
      const r = await client.request(cliUrl({ redirect_uri: redirectUri, code_challenge: challenge, code_challenge_method: 'S256', state }));
      assert.equal(r.status, 302, r.body.slice(0, 300));
      const to = r.location!;
      assert.equal(to.origin + to.pathname, redirectUri);
      assert.equal(to.searchParams.get('state'), state);
      const code = to.searchParams.get('code');
      assert.match(code ?? '', /^[\w-]{40,}$/);
      return code!;
    }

    function redeem(body: Record<string, string>, json = false): Promise<WebResponse> {
      return w.client().request(url(AUTH_HOST, '/.gatehouse/cli/token'), {
        method: 'POST',
        headers: { accept: 'application/json', 'content-type': json ? 'application/json' : 'application/x-www-form-urlencoded' },
        body: json ? JSON.stringify(body) : new URLSearchParams(body).toString(),
      });
    }

    it('sends a signed-in browser to the loopback redirect with a code that PKCE turns into a token once', async () => {
      const { client } = await signedIn(ALICE);
      const { verifier, challenge } = pkcePair();
      const code = await cliCode(client, challenge);
      const wrong = pkcePair();
      const other = await cliCode(client, wrong.challenge);

      const bad = await redeem({ code: other, code_verifier: verifier });
      assert.equal(bad.status, 401);
      assert.equal(bad.code, 'ERR_TOKEN_INVALID');
      assert.equal((JSON.parse(bad.body) as { token?: string }).token, undefined);

      const good = await redeem({ code, code_verifier: verifier });
      assert.equal(good.status, 200, good.body);
      const issued = JSON.parse(good.body) as { token: string; user: string; expires: string };
      assert.match(issued.token, /^gh_[\w-]{40,}$/);
      assert.equal(issued.user, ALICE.email);
      assert.ok(Date.parse(issued.expires) > Date.now());

      const replay = await redeem({ code, code_verifier: verifier });
      assert.equal(replay.status, 401);
      assert.equal(replay.code, 'ERR_TOKEN_INVALID');

      const viaJson = await redeem({ code: await cliCode(client, challenge), code_verifier: verifier }, true);
      assert.equal(viaJson.status, 200, viaJson.body);
    });

    it('refuses a redirect_uri that is not loopback http with a port, and a missing PKCE challenge', async () => {
      const { client } = await signedIn(ALICE);
      const { challenge } = pkcePair();
      for (const uri of [
        'http://evil.example:8080/callback',
        'https://127.0.0.1:53682/callback',
        'http://127.0.0.1/callback',
        'http://127.0.0.1.evil.example:53682/callback',
        'http://10.0.0.1:53682/callback',
        'http://user@127.0.0.1:53682/callback',
        `https://a.corp.test:${gh.port}/`,
        'javascript:alert(1)',
        '',
      ]) {
        const r = await client.request(cliUrl({ redirect_uri: uri, code_challenge: challenge, code_challenge_method: 'S256', state: 's' }));
        assert.equal(r.status, 400, uri);
        assert.equal(r.code, 'ERR_RETURN_URL_INVALID', uri);
        assert.equal(r.location, undefined, uri);
      }
      const withoutPkce: Array<Record<string, string>> = [
        { redirect_uri: redirectUri, state: 's' },
        { redirect_uri: redirectUri, state: 's', code_challenge: challenge, code_challenge_method: 'plain' },
        { redirect_uri: redirectUri, code_challenge: challenge, code_challenge_method: 'S256' },
      ];
      for (const params of withoutPkce) {
        const r = await client.request(cliUrl(params));
        assert.equal(r.status, 400, JSON.stringify(params));
        assert.equal(r.code, 'ERR_BAD_REQUEST');
        assert.equal(r.location, undefined);
      }
    });

    it('the token works as a bearer token (the backend never sees it) until it is revoked; an unknown one is refused', async () => {
      const { client } = await signedIn(CAROL, url('ops.corp.test', '/'));
      const { verifier, challenge } = pkcePair();
      const issued = await redeem({ code: await cliCode(client, challenge), code_verifier: verifier });
      const { token } = JSON.parse(issued.body) as { token: string };
      const bearer = w.client();
      const use = (host: string) => bearer.request(url(host, '/api/thing'), { headers: { accept: 'application/json', authorization: `Bearer ${token}` } });

      const r = await use('ops.corp.test');
      assert.equal(r.status, 200, r.body.slice(0, 300));
      const seen = echoed(r);
      assert.equal(seen.headers['x-gatehouse-user'], CAROL.email);
      assert.equal(seen.headers['x-gatehouse-roles'], 'ops', 'the role carol holds through her IdP group');
      assert.equal(seen.headers.authorization, undefined);
      const claims = await verifyAssertion(bearer, gh.port, String(seen.headers['x-gatehouse-jwt-assertion']), 'ops.corp.test');
      assert.equal(claims.email, CAROL.email);
      assert.equal((await use('b.corp.test')).status, 200);
      assert.equal((await use('secret.corp.test')).code, 'ERR_POLICY_DENIED');

      const unknown = await bearer.request(url('b.corp.test', '/'), { headers: { accept: 'application/json', authorization: `Bearer gh_${'A'.repeat(43)}` } });
      assert.equal(unknown.status, 401);
      assert.equal(unknown.code, 'ERR_TOKEN_INVALID');
      const unknownBrowser = await bearer.request(url('b.corp.test', '/'), { headers: { accept: 'text/html', authorization: `Bearer gh_${'A'.repeat(43)}` } });
      assert.equal(unknownBrowser.code, 'ERR_TOKEN_INVALID', 'a bad token is not silently ignored for browsers either');

      await gh.gh!.g.store.delete('token', createHash('sha256').update(token).digest('base64url'));
      const deadline = Date.now() + 2_000;
      let last = await use('b.corp.test');
      while (last.status === 200 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
        last = await use('b.corp.test');
      }
      assert.equal(last.status, 401, 'a revoked token stops working');
      assert.equal(last.code, 'ERR_TOKEN_INVALID');
    });
  });

  // ------------------------------------------------------------------------------------------ workers

  describe('sign-out across the workers of gatehouse serve', () => {
    it('a session works on both workers, and after sign-out no worker accepts it on the next request', async () => {
      const served = await w.startAnother({ ...SETUP, serve: true, server: { workers: 2 } });
      try {
        const client = w.client();
        const { last } = await signInOverHttp(client, served.url('a.corp.test', '/start'), ALICE);
        assert.equal(last.status, 200, last.body.slice(0, 300));
        await client.follow(served.url('b.corp.test', '/'));
        const cookieA = client.jar.header(new URL(served.url('a.corp.test', '/')))!;
        const probe = async () => {
          const r = await client.request(served.url('a.corp.test', '/probe'), { headers: { accept: 'application/json', cookie: cookieA }, cookies: false });
          return { status: r.status, worker: String(r.headers['x-request-id']).slice(0, 8), at: Date.now() };
        };
        // the kernel spreads new connections over the workers unevenly: probe in rounds until both have answered
        const signedInProbes: Array<{ status: number; worker: string; at: number }> = [];
        for (let round = 0; round < 15 && new Set(signedInProbes.map((p) => p.worker)).size < 2; round++) {
          signedInProbes.push(...(await Promise.all(Array.from({ length: 10 }, probe))));
        }
        assert.deepEqual(new Set(signedInProbes.map((p) => p.status)), new Set([200]));
        assert.equal(new Set(signedInProbes.map((p) => p.worker)).size, 2, 'both workers accepted the session');

        const out = await client.request(served.url('b.corp.test', '/.gatehouse/logout'));
        assert.equal(out.status, 302);
        const signedOutAt = Date.now();
        // new connections, one after another, from the moment the sign-out answered until well past a second
        const after: Array<{ status: number; worker: string; at: number }> = [];
        while (after.length < 20 || Date.now() - signedOutAt < 1_400 || (new Set(after.map((p) => p.worker)).size < 2 && after.length < 300)) {
          after.push(await probe());
          await new Promise((r) => setTimeout(r, 20));
        }
        // each worker catches up with the store before it reads a session, so the very next request is refused
        const accepted = after.filter((p) => p.status !== 401).map((p) => `worker ${p.worker}: ${p.status} at +${p.at - signedOutAt} ms`);
        assert.deepEqual(accepted, [], 'no worker accepts the session after sign-out');
        assert.equal(new Set(after.map((p) => p.worker)).size, 2, 'both workers refused it');
      } finally {
        await served.close();
      }
    });
  });
});
