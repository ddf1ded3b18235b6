/**
 * The JSON API at https://AUTHHOST/api/v1 end to end, without any UI: a real OpenID provider, an in-process
 * Gatehouse, people signed in over HTTP (session cookies) or calling with bearer tokens. Every change made through
 * the API is checked where it matters — on the next request to a route — and in the audit log.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpsRequest } from 'node:https';
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { AUTH_HOST, SESSION_COOKIE_NAME, signInOverHttp, startSignInWorld, waitFor, type SignInWorld, type WebClient, type WebResponse } from '../harness/index.ts';
import { API_ROUTES } from '../../src/admin/api.ts';
import type { Directory } from '../../src/directory/index.ts';
import type { SessionBook } from '../../src/authn/index.ts';

const password = (email: string) => `${email.split('@')[0]}-password`;
const person = (email: string) => ({ email, password: password(email) });
const ROOT = person('root@example.com');
const ALICE = person('alice@example.com'); // admin of viewers (config)
const DANA = person('dana@example.com'); // admin of ops (config)
const BOB = person('bob@example.com'); // member of readers (config)
const GRACE = person('grace@example.com');
const HEIDI = person('heidi@example.com');
const IVAN = person('ivan@example.com');
const JUDY = person('judy@example.com');
const FRANK = person('frank@example.com');
const KIM = person('kim@example.com');

// ---------------------------------------------------------------------------------------------- answer shapes

interface ErrorJson {
  error: { code: string; message: string; requestId: string };
}
interface RouteAccessJson {
  name: string;
  host: string;
  url: string | null;
  auth: string;
  access: 'full' | 'partial';
  rule?: string;
  permissions: string[];
}
interface MeJson {
  email: string;
  groups: string[];
  roles: string[];
  admin: { root: boolean; roles: string[] };
  routes: RouteAccessJson[];
}
interface MembershipJson {
  role: string;
  user: string;
  expires: string | null;
  addedBy: string;
  added: string;
  source: 'config' | 'store';
  request: string | null;
}
interface RoleJson {
  name: string;
  description: string;
  grants: string[];
  groups: string[];
  admins: Array<{ role: string; user: string; source: string }>;
  held: boolean;
  manage: boolean;
}
interface RequestJson {
  id: string;
  user: string;
  role: string;
  reason: string;
  duration: string | null;
  status: string;
  created: string;
  decidedBy: string | null;
  decidedAt: string | null;
  expires: string | null;
}
interface UserJson {
  email: string;
  firstSeen: string | null;
  lastSeen: string | null;
  disabled: boolean;
  disabledBy: string | null;
  disabledAt: string | null;
  roles: string[];
}
interface SessionJson {
  id: string;
  user: string;
  created: string;
  expires: string;
  lastSeen: string;
  current: boolean;
}
interface TokenJson {
  id: string;
  user: string;
  name: string;
  kind: string;
  created: string;
  expires: string;
}
interface AuditJson {
  id: string;
  time: string;
  actor: string;
  action: string;
  target: string;
  from: string | null;
  before: Record<string, unknown> | null;
  after: Record<string, unknown> | null;
}
interface ExplainJson {
  allow: boolean;
  code?: string;
  reason?: string;
  rule?: string;
  route: string | null;
  method: string;
  path: string;
  considered: Array<{ rule: string; matched: boolean }>;
}

/** Someone calling the API: with the session cookies in `client`'s jar, or with a bearer token. */
interface Caller {
  readonly email: string;
  readonly client: WebClient;
  readonly token?: string;
}

interface CallOptions {
  body?: unknown;
  /** sent as is instead of `body` */
  raw?: string;
  headers?: Record<string, string>;
  /** session callers send `Sec-Fetch-Site: same-origin` on changes unless this is false */
  sameOrigin?: boolean;
}

type Answer = WebResponse & { readonly json: unknown };

describe('the JSON API', () => {
  let w: SignInWorld;
  let directory: Directory;
  let sessions: SessionBook;
  let root: Caller;
  let alice: Caller;
  let dana: Caller;
  let bob: Caller;
  const api = (path: string) => w.main.url(AUTH_HOST, `/api/v1${path}`);
  const routeUrl = (name: string, path = '/') => w.main.url(`${name}.corp.test`, path);

  before(async () => {
    w = await startSignInWorld({
      users: [ROOT, ALICE, DANA, BOB, GRACE, HEIDI, IVAN, JUDY, FRANK, KIM],
      identity: { admins: ['root@example.com'] },
      routes: [
        { name: 'app', host: 'app.corp.test' },
        { name: 'ops', host: 'ops.corp.test' },
        { name: 'wiki', host: 'wiki.corp.test', permissions: [{ name: 'read', locations: [{ methods: ['GET'], path: '/docs/' }] }] },
        { name: 'pub', host: 'pub.corp.test', auth: 'public' },
        { name: 'dev', host: '*.dev.corp.test', allow: { domains: ['example.com'] } },
      ],
      roles: [
        { name: 'viewers', description: 'Can see the app', grants: ['app'], admins: ['alice@example.com'] },
        { name: 'ops', grants: ['ops'], admins: ['dana@example.com'] },
        { name: 'readers', grants: ['wiki:read'], members: ['bob@example.com'] },
      ],
    });
    directory = w.main.gh!.g.services.directory;
    sessions = w.main.gh!.g.services.sessions;
    root = await signIn(ROOT);
    alice = await signIn(ALICE);
    dana = await signIn(DANA);
    bob = await signIn(BOB);
  });
  after(async () => {
    await w?.close();
  });

  /** A new browser-like client signed in as `user` (through the app route: the auth host's cookie is set on the way). */
  async function signIn(user: { email: string; password: string }): Promise<Caller> {
    const client = w.client();
    await signInOverHttp(client, routeUrl('app'), user);
    assert.ok(client.jar.get(AUTH_HOST, SESSION_COOKIE_NAME), `${user.email} has a session on the auth host`);
    return { email: user.email, client };
  }

  async function withToken(email: string, ttlMs = 3600_000): Promise<Caller> {
    const { token } = await sessions.issueToken(email, 'test', ttlMs, 'api');
    return { email, client: w.client(), token };
  }

  async function call(who: Caller | undefined, method: string, path: string, o: CallOptions = {}): Promise<Answer> {
    const body = o.raw ?? (o.body === undefined ? undefined : JSON.stringify(o.body));
    const headers: Record<string, string> = { accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (who?.token) headers.authorization = `Bearer ${who.token}`;
    else if (method !== 'GET' && o.sameOrigin !== false) headers['sec-fetch-site'] = 'same-origin';
    const client = who?.client ?? w.client();
    const r = await client.request(api(path), {
      method,
      headers: { ...headers, ...o.headers },
      ...(body !== undefined ? { body } : {}),
      cookies: who !== undefined && who.token === undefined,
    });
    const type = String(r.headers['content-type'] ?? '');
    return { ...r, json: type.startsWith('application/json') && r.body ? (JSON.parse(r.body) as unknown) : undefined };
  }

  function expectError(r: Answer, status: number, code: string): ErrorJson {
    assert.equal(r.status, status, `${r.method} ${r.url.pathname}: ${r.body.slice(0, 300)}`);
    assert.equal(r.code, code);
    const e = r.json as ErrorJson;
    assert.equal(e.error.code, code);
    assert.equal(e.error.requestId, r.headers['x-request-id']);
    assert.equal(typeof e.error.message, 'string');
    return e;
  }

  function expectOk<T>(r: Answer, status = 200): T {
    assert.equal(r.status, status, `${r.method} ${r.url.pathname}: ${r.body.slice(0, 300)}`);
    assert.equal(r.code, undefined);
    return r.json as T;
  }

  /** The route as `who` sees it on the next request (with the route host's cookie, or the token). */
  function visit(who: Caller, name: string, path = '/'): Promise<WebResponse> {
    return who.client.request(routeUrl(name, path), {
      headers: { accept: 'application/json', ...(who.token ? { authorization: `Bearer ${who.token}` } : {}) },
      cookies: who.token === undefined,
    });
  }

  async function members(role: string): Promise<string[]> {
    return (await directory.members(role)).map((m) => m.user);
  }

  // ------------------------------------------------------------------------------------------ who is calling

  describe('GET /me and authentication', () => {
    it('shows a plain user their roles and the routes they can reach, wholly or in part', async () => {
      const r = await call(bob, 'GET', '/me');
      const me = expectOk<MeJson>(r);
      assert.equal(r.headers['content-type'], 'application/json; charset=utf-8');
      assert.equal(r.headers['cache-control'], 'no-store');
      assert.equal(r.headers['x-content-type-options'], 'nosniff');
      assert.ok(r.headers['x-request-id']);
      assert.equal(me.email, BOB.email);
      assert.deepEqual(me.roles, ['readers']);
      assert.deepEqual(me.admin, { root: false, roles: [] });
      const byName = new Map(me.routes.map((x) => [x.name, x]));
      assert.deepEqual([...byName.keys()].sort(), ['dev', 'pub', 'wiki'], 'app and ops are not reachable');
      assert.deepEqual(byName.get('wiki'), {
        name: 'wiki',
        host: 'wiki.corp.test',
        url: `https://wiki.corp.test:${w.main.port}/`,
        auth: 'login',
        access: 'partial',
        permissions: ['read'],
      });
      assert.equal(byName.get('pub')?.access, 'full');
      assert.equal(byName.get('pub')?.rule, 'auth: public');
      assert.equal(byName.get('dev')?.url, null, 'a host pattern has no URL to open');
      assert.equal(byName.get('dev')?.rule, 'allow.domains example.com');
    });

    it('shows a role admin the roles they manage, and root every role and route', async () => {
      const a = expectOk<MeJson>(await call(alice, 'GET', '/me'));
      assert.deepEqual(a.admin, { root: false, roles: ['viewers'] });
      const r = expectOk<MeJson>(await call(root, 'GET', '/me'));
      assert.deepEqual(r.admin, { root: true, roles: ['viewers', 'ops', 'readers'] });
      const app = r.routes.find((x) => x.name === 'app');
      assert.equal(app?.access, 'full');
      assert.equal(app?.rule, 'root admin');
      assert.equal(app?.url, `https://app.corp.test:${w.main.port}/`);
      assert.equal(r.routes.length, 5);
    });

    it('accepts a bearer token, and refuses an unknown token and a caller who is not signed in', async () => {
      const byToken = await withToken(BOB.email);
      assert.equal(expectOk<MeJson>(await call(byToken, 'GET', '/me')).email, BOB.email);

      const unknown = await call({ email: '?', client: w.client(), token: 'gh_not-a-token' }, 'GET', '/me');
      expectError(unknown, 401, 'ERR_TOKEN_INVALID');
      assert.match(String(unknown.headers['www-authenticate']), /^Bearer realm="gatehouse"/);

      const anonymous = await call(undefined, 'GET', '/me');
      expectError(anonymous, 401, 'ERR_NOT_SIGNED_IN');
      assert.equal(anonymous.headers['www-authenticate'], 'Bearer realm="gatehouse"');
      assert.equal(anonymous.headers['content-type'], 'application/json; charset=utf-8');
      expectError(await call(undefined, 'PUT', `/roles/viewers/members/${KIM.email}`), 401, 'ERR_NOT_SIGNED_IN');
      assert.deepEqual(await members('viewers'), [], 'nothing changed');
    });

    it('refuses a disabled user, whatever credential they still hold', async () => {
      await directory.recordSignIn(FRANK.email);
      expectOk(await call(root, 'POST', `/users/${FRANK.email}/disable`));
      // a token made after the revocation (as by another worker) still carries a disabled user
      const late = await withToken(FRANK.email);
      expectError(await call(late, 'GET', '/me'), 403, 'ERR_USER_DISABLED');
      expectError(await call(late, 'POST', '/access-requests', { body: { role: 'viewers', reason: 'let me in' } }), 403, 'ERR_USER_DISABLED');
      expectOk(await call(root, 'POST', `/users/${FRANK.email}/enable`));
      assert.equal(expectOk<MeJson>(await call(late, 'GET', '/me')).email, FRANK.email);
    });
  });

  // ------------------------------------------------------------------------------------------ CSRF

  describe('CSRF', () => {
    const path = `/roles/viewers/members/${GRACE.email}`;

    it('refuses a cookie-authenticated change without Sec-Fetch-Site: same-origin or the auth host’s Origin', async () => {
      expectError(await call(alice, 'PUT', path, { sameOrigin: false }), 403, 'ERR_CSRF');
      expectError(await call(alice, 'PUT', path, { sameOrigin: false, headers: { origin: 'https://evil.example' } }), 403, 'ERR_CSRF');
      expectError(await call(alice, 'PUT', path, { sameOrigin: false, headers: { origin: routeUrl('app', '').replace(/\/$/, '') } }), 403, 'ERR_CSRF');
      expectError(await call(alice, 'PUT', path, { sameOrigin: false, headers: { 'sec-fetch-site': 'cross-site' } }), 403, 'ERR_CSRF');
      expectError(await call(alice, 'PUT', path, { sameOrigin: false, headers: { 'sec-fetch-site': 'same-site' } }), 403, 'ERR_CSRF');
      expectError(await call(alice, 'POST', '/access-requests', { sameOrigin: false, body: { role: 'ops', reason: 'x' } }), 403, 'ERR_CSRF');
      assert.deepEqual(await members('viewers'), [], 'nothing changed');
      assert.equal((await directory.requestsOf(ALICE.email)).length, 0, 'no request was made');
    });

    it('lets the dashboard’s own requests and bearer-token requests through', async () => {
      expectOk(await call(alice, 'PUT', path, { sameOrigin: false, headers: { 'sec-fetch-site': 'same-origin' } }));
      assert.deepEqual(await members('viewers'), [GRACE.email]);
      const r = await call(alice, 'DELETE', path, { sameOrigin: false, headers: { origin: w.main.authOrigin } });
      assert.equal(r.status, 204, r.body);
      assert.deepEqual(await members('viewers'), []);
      const byToken = await withToken(ALICE.email);
      expectOk(await call(byToken, 'PUT', path));
      assert.deepEqual(await members('viewers'), [GRACE.email]);
      assert.equal((await call(byToken, 'DELETE', path)).status, 204);
      assert.equal(expectOk<MeJson>(await call(alice, 'GET', '/me', { sameOrigin: false })).email, ALICE.email, 'reading needs neither');
    });
  });

  // ------------------------------------------------------------------------------------------ roles

  describe('roles and members', () => {
    it('lists roles with their grants and admins, what I hold and what I manage', async () => {
      const { roles } = expectOk<{ roles: RoleJson[] }>(await call(alice, 'GET', '/roles'));
      assert.deepEqual(
        roles.map((r) => r.name),
        ['viewers', 'ops', 'readers'],
      );
      const viewers = roles[0]!;
      assert.deepEqual(viewers, {
        name: 'viewers',
        description: 'Can see the app',
        grants: ['app'],
        groups: [],
        admins: [{ role: 'viewers', user: ALICE.email, source: 'config' }],
        held: false,
        manage: true,
      });
      assert.equal(roles[1]!.manage, false);
      const mine = expectOk<{ roles: RoleJson[] }>(await call(bob, 'GET', '/roles')).roles;
      assert.deepEqual(
        mine.map((r) => [r.name, r.held, r.manage]),
        [
          ['viewers', false, false],
          ['ops', false, false],
          ['readers', true, false],
        ],
      );
      const { role, members: list } = expectOk<{ role: string; members: MembershipJson[] }>(await call(bob, 'GET', '/roles/readers/members'));
      assert.equal(role, 'readers');
      assert.deepEqual(
        list.map((m) => [m.user, m.source, m.expires, m.addedBy]),
        [[BOB.email, 'config', null, 'config']],
      );
      expectError(await call(bob, 'GET', '/roles/nope/members'), 404, 'ERR_NOT_FOUND');
    });

    it('a role admin adds a member, who reaches the route on the next request; removing refuses the next one', async () => {
      const heidi = await signIn(HEIDI);
      assert.equal((await visit(heidi, 'app')).status, 403, 'no role grants the route yet');

      const added = expectOk<{ membership: MembershipJson }>(await call(alice, 'PUT', `/roles/viewers/members/${HEIDI.email}`)).membership;
      assert.deepEqual([added.role, added.user, added.expires, added.addedBy, added.source, added.request], ['viewers', HEIDI.email, null, ALICE.email, 'store', null]);
      assert.ok(Math.abs(Date.parse(added.added) - Date.now()) < 60_000);
      const allowed = await visit(heidi, 'app');
      assert.equal(allowed.status, 200, allowed.body.slice(0, 200));
      assert.ok(expectOk<MeJson>(await call(heidi, 'GET', '/me')).roles.includes('viewers'));

      assert.equal((await call(alice, 'DELETE', `/roles/viewers/members/${HEIDI.email}`)).status, 204);
      const refused = await visit(heidi, 'app');
      assert.equal(refused.status, 403);
      assert.equal(refused.code, 'ERR_POLICY_DENIED');
      expectError(await call(alice, 'DELETE', `/roles/viewers/members/${HEIDI.email}`), 404, 'ERR_NOT_FOUND');

      // until a time
      const until = new Date(Date.now() + 3600_000).toISOString();
      const timed = expectOk<{ membership: MembershipJson }>(await call(alice, 'PUT', `/roles/viewers/members/${HEIDI.email}`, { body: { expires: until } })).membership;
      assert.equal(timed.expires, until);
      assert.equal((await visit(heidi, 'app')).status, 200);
      const listed = expectOk<{ members: MembershipJson[] }>(await call(heidi, 'GET', '/roles/viewers/members')).members;
      assert.deepEqual(
        listed.map((m) => [m.user, m.expires]),
        [[HEIDI.email, until]],
      );
      // for a while
      const forAWhile = expectOk<{ membership: MembershipJson }>(await call(alice, 'PUT', `/roles/viewers/members/${HEIDI.email}`, { body: { duration: '2h' } })).membership;
      assert.ok(Math.abs(Date.parse(forAWhile.expires!) - (Date.now() + 2 * 3600_000)) < 60_000);

      expectError(await call(alice, 'PUT', `/roles/viewers/members/${HEIDI.email}`, { body: { expires: '2001-01-01T00:00:00Z' } }), 400, 'ERR_BAD_REQUEST');
      expectError(await call(alice, 'PUT', `/roles/viewers/members/${HEIDI.email}`, { body: { expires: until, duration: '1h' } }), 400, 'ERR_BAD_REQUEST');
      expectError(await call(alice, 'PUT', `/roles/viewers/members/${HEIDI.email}`, { body: { duration: 'a week' } }), 400, 'ERR_BAD_REQUEST');
      expectError(await call(alice, 'PUT', `/roles/viewers/members/${HEIDI.email}`, { body: { expires: 'tomorrow' } }), 400, 'ERR_BAD_REQUEST');
      assert.equal((await call(alice, 'DELETE', `/roles/viewers/members/${HEIDI.email}`)).status, 204);
      assert.equal((await visit(heidi, 'app')).status, 403);
    });

    it('a role admin cannot touch another role, role admins, users, the audit log or anyone’s sessions', async () => {
      expectError(await call(alice, 'PUT', `/roles/ops/members/${HEIDI.email}`), 403, 'ERR_FORBIDDEN');
      assert.deepEqual(await members('ops'), [], 'nothing changed');
      expectError(await call(alice, 'DELETE', `/roles/readers/members/${BOB.email}`), 403, 'ERR_FORBIDDEN');
      assert.deepEqual(await members('readers'), [BOB.email]);
      expectError(await call(alice, 'PUT', `/roles/viewers/admins/${HEIDI.email}`), 403, 'ERR_FORBIDDEN');
      assert.equal(directory.isRoleAdmin('viewers', HEIDI.email), false);
      expectError(await call(alice, 'POST', `/users/${HEIDI.email}/disable`), 403, 'ERR_FORBIDDEN');
      assert.equal(directory.isDisabled(HEIDI.email), false);
      expectError(await call(alice, 'GET', '/users'), 403, 'ERR_FORBIDDEN');
      expectError(await call(alice, 'GET', '/audit'), 403, 'ERR_FORBIDDEN');
      expectError(await call(alice, 'GET', '/sessions?all=true'), 403, 'ERR_FORBIDDEN');
      expectError(await call(alice, 'GET', '/tokens?all=true'), 403, 'ERR_FORBIDDEN');
      expectError(await call(alice, 'GET', '/service-accounts'), 403, 'ERR_FORBIDDEN');
    });

    it('root makes and removes role admins; a configured admin stays; nobody can make anyone root', async () => {
      const admin = expectOk<{ admin: { role: string; user: string; source: string } }>(await call(root, 'PUT', `/roles/ops/admins/${ALICE.email}`)).admin;
      assert.deepEqual(admin, { role: 'ops', user: ALICE.email, source: 'store' });
      expectOk(await call(alice, 'PUT', `/roles/ops/members/${KIM.email}`));
      assert.deepEqual(await members('ops'), [KIM.email]);
      assert.equal((await call(alice, 'DELETE', `/roles/ops/members/${KIM.email}`)).status, 204);
      assert.equal((await call(root, 'DELETE', `/roles/ops/admins/${ALICE.email}`)).status, 204);
      expectError(await call(alice, 'PUT', `/roles/ops/members/${KIM.email}`), 403, 'ERR_FORBIDDEN');
      expectError(await call(root, 'DELETE', `/roles/ops/admins/${ALICE.email}`), 404, 'ERR_NOT_FOUND');
      expectError(await call(root, 'DELETE', `/roles/viewers/admins/${ALICE.email}`), 409, 'ERR_CONFLICT');
      expectError(await call(root, 'DELETE', `/roles/readers/members/${BOB.email}`), 409, 'ERR_CONFLICT');

      for (const [method, path] of [
        ['PUT', `/users/${KIM.email}/root`],
        ['POST', `/users/${KIM.email}/root`],
        ['PUT', `/admins/${KIM.email}`],
        ['PUT', `/roles/root/members/${KIM.email}`],
        ['PUT', `/users/${KIM.email}`],
      ] as const) {
        const r = await call(root, method, path);
        assert.ok([404, 405].includes(r.status), `${method} ${path}: ${r.status}`);
      }
      assert.deepEqual(w.main.gh!.g.state.config.identity.admins, [ROOT.email]);
      assert.equal(directory.isRoot(KIM.email), false);
    });
  });

  // ------------------------------------------------------------------------------------------ access requests

  describe('access requests', () => {
    it('asked by a user, seen and approved by that role’s admin only, for a while, then refused again', async () => {
      const ivan = await signIn(IVAN);
      const asked = expectOk<{ request: RequestJson }>(await call(ivan, 'POST', '/access-requests', { body: { role: 'viewers', reason: 'on call', duration: '1h' } }), 201).request;
      assert.deepEqual([asked.user, asked.role, asked.reason, asked.duration, asked.status, asked.decidedBy, asked.expires], [IVAN.email, 'viewers', 'on call', '1h', 'pending', null, null]);
      const again = expectOk<{ request: RequestJson }>(await call(ivan, 'POST', '/access-requests', { body: { role: 'viewers', reason: 'still on call' } }), 201).request;
      assert.equal(again.id, asked.id, 'asking again returns the pending one');

      const forAlice = expectOk<{ mine: RequestJson[]; toDecide: RequestJson[] }>(await call(alice, 'GET', '/access-requests'));
      assert.deepEqual(
        forAlice.toDecide.map((r) => r.id),
        [asked.id],
      );
      const forDana = expectOk<{ toDecide: RequestJson[] }>(await call(dana, 'GET', '/access-requests'));
      assert.deepEqual(forDana.toDecide, [], 'another role’s admin does not see it');
      expectError(await call(dana, 'POST', `/access-requests/${asked.id}/approve`), 403, 'ERR_FORBIDDEN');
      expectError(await call(ivan, 'POST', `/access-requests/${asked.id}/approve`), 403, 'ERR_FORBIDDEN');
      assert.equal((await directory.accessRequest(asked.id))?.status, 'pending', 'still pending');
      assert.equal((await visit(ivan, 'app')).status, 403);

      const t0 = Date.now();
      const approved = expectOk<{ request: RequestJson }>(await call(alice, 'POST', `/access-requests/${asked.id}/approve`, { body: { duration: '2s' } })).request;
      assert.equal(approved.status, 'approved');
      assert.equal(approved.decidedBy, ALICE.email);
      const expires = Date.parse(approved.expires!);
      assert.ok(expires >= t0 + 2000 && expires <= Date.now() + 2000, approved.expires!);
      assert.equal((await visit(ivan, 'app')).status, 200, 'granted on the next request');
      const granted = expectOk<{ members: MembershipJson[] }>(await call(ivan, 'GET', '/roles/viewers/members')).members.find((m) => m.user === IVAN.email);
      assert.deepEqual([granted?.request, granted?.expires, granted?.addedBy], [asked.id, approved.expires, ALICE.email]);
      const mine = expectOk<{ mine: RequestJson[] }>(await call(ivan, 'GET', '/access-requests')).mine;
      assert.deepEqual(
        mine.map((r) => [r.id, r.status]),
        [[asked.id, 'approved']],
      );
      expectError(await call(alice, 'POST', `/access-requests/${asked.id}/approve`), 409, 'ERR_CONFLICT');
      expectError(await call(alice, 'POST', `/access-requests/${asked.id}/decline`), 409, 'ERR_CONFLICT');

      await new Promise((r) => setTimeout(r, Math.max(0, expires - Date.now()) + 100));
      const expired = await visit(ivan, 'app');
      assert.equal(expired.status, 403, 'the membership ended by itself');
      assert.equal(expired.code, 'ERR_POLICY_DENIED');
    });

    it('declined requests grant nothing; unknown ones are not found', async () => {
      const kim = await withToken(KIM.email);
      const asked = expectOk<{ request: RequestJson }>(await call(kim, 'POST', '/access-requests', { body: { role: 'ops', reason: 'curious' } }), 201).request;
      assert.equal(asked.duration, null);
      const declined = expectOk<{ request: RequestJson }>(await call(dana, 'POST', `/access-requests/${asked.id}/decline`)).request;
      assert.deepEqual([declined.status, declined.decidedBy, declined.expires], ['declined', DANA.email, null]);
      assert.ok(declined.decidedAt);
      assert.equal((await visit(kim, 'ops')).status, 403);
      assert.deepEqual(await members('ops'), []);
      expectError(await call(dana, 'POST', `/access-requests/${asked.id}/approve`), 409, 'ERR_CONFLICT');
      expectError(await call(dana, 'POST', '/access-requests/01NOPE/approve'), 404, 'ERR_NOT_FOUND');
      expectError(await call(kim, 'POST', '/access-requests', { body: { role: 'nope', reason: 'x' } }), 404, 'ERR_NOT_FOUND');
      expectError(await call(kim, 'POST', '/access-requests', { body: { role: 'ops', reason: '   ' } }), 400, 'ERR_BAD_REQUEST');
    });
  });

  // ------------------------------------------------------------------------------------------ users

  describe('users', () => {
    it('root disables a user: their open session is refused on the next request; enabling lets them sign in again', async () => {
      expectOk(await call(root, 'PUT', `/roles/viewers/members/${JUDY.email}`));
      const judy = await signIn(JUDY);
      assert.equal((await visit(judy, 'app')).status, 200);

      const disabled = expectOk<{ user: UserJson; revoked: { sessions: number; tokens: number } }>(await call(root, 'POST', `/users/${JUDY.email}/disable`));
      assert.equal(disabled.user.email, JUDY.email);
      assert.equal(disabled.user.disabled, true);
      assert.equal(disabled.user.disabledBy, ROOT.email);
      assert.ok(Math.abs(Date.parse(disabled.user.disabledAt!) - Date.now()) < 60_000);
      assert.ok(disabled.revoked.sessions >= 1, JSON.stringify(disabled.revoked));
      const next = await visit(judy, 'app');
      assert.ok(next.status === 401 || next.status === 403, `refused: ${next.status}`);
      expectError(await call(judy, 'GET', '/me'), 401, 'ERR_NOT_SIGNED_IN');

      const { users } = expectOk<{ users: UserJson[] }>(await call(root, 'GET', '/users'));
      const listed = users.find((u) => u.email === JUDY.email);
      assert.equal(listed?.disabled, true);
      assert.deepEqual(listed?.roles, ['viewers']);
      assert.ok(users.some((u) => u.email === BOB.email && u.firstSeen !== null));

      const enabled = expectOk<{ user: UserJson }>(await call(root, 'POST', `/users/${JUDY.email}/enable`)).user;
      assert.deepEqual([enabled.disabled, enabled.disabledBy, enabled.disabledAt], [false, null, null]);
      const again = await signIn(JUDY);
      assert.equal((await visit(again, 'app')).status, 200);
      expectError(await call(root, 'POST', `/users/${ROOT.email}/disable`), 409, 'ERR_CONFLICT');
      expectError(await call(root, 'POST', '/users/nobody-at-all/disable'), 400, 'ERR_BAD_REQUEST');
      expectError(await call(root, 'POST', '/users/never-seen@example.com/enable'), 404, 'ERR_NOT_FOUND');
    });
  });

  // ------------------------------------------------------------------------------------------ sessions and tokens

  describe('sessions and tokens', () => {
    it('everyone lists and revokes their own sessions; someone else’s is not found, except for root', async () => {
      const second = await signIn(BOB);
      const { sessions: listed } = expectOk<{ sessions: SessionJson[] }>(await call(bob, 'GET', '/sessions'));
      assert.ok(listed.length >= 2);
      assert.ok(listed.every((s) => s.user === BOB.email));
      assert.equal(listed.filter((s) => s.current).length, 1, 'exactly one is the caller’s');
      const secondId = expectOk<{ sessions: SessionJson[] }>(await call(second, 'GET', '/sessions')).sessions.find((s) => s.current)!.id;
      assert.ok(listed.some((s) => s.id === secondId && !s.current));
      expectError(await call(bob, 'GET', '/sessions?all=true'), 403, 'ERR_FORBIDDEN');

      assert.equal((await call(bob, 'DELETE', `/sessions/${secondId}`)).status, 204);
      expectError(await call(second, 'GET', '/me'), 401, 'ERR_NOT_SIGNED_IN');
      expectOk(await call(bob, 'GET', '/me'));
      expectError(await call(bob, 'DELETE', `/sessions/${secondId}`), 404, 'ERR_NOT_FOUND');

      const otherAlice = await signIn(ALICE);
      const aliceId = expectOk<{ sessions: SessionJson[] }>(await call(otherAlice, 'GET', '/sessions')).sessions.find((s) => s.current)!.id;
      expectError(await call(bob, 'DELETE', `/sessions/${aliceId}`), 404, 'ERR_NOT_FOUND');
      expectOk(await call(otherAlice, 'GET', '/me'));
      const everyone = expectOk<{ sessions: SessionJson[] }>(await call(root, 'GET', '/sessions?all=true')).sessions;
      assert.ok(everyone.some((s) => s.id === aliceId && s.user === ALICE.email));
      assert.equal((await call(root, 'DELETE', `/sessions/${aliceId}`)).status, 204);
      expectError(await call(otherAlice, 'GET', '/me'), 401, 'ERR_NOT_SIGNED_IN');
      expectOk(await call(alice, 'GET', '/me'), 200);
    });

    it('a personal token: the secret is shown once, it works, it is listed without it, and revoking ends it', async () => {
      const r = await call(bob, 'POST', '/tokens', { body: { name: 'laptop', ttl: '1h' } });
      const issued = expectOk<{ token: string; record: TokenJson }>(r, 201);
      assert.match(issued.token, /^gh_/);
      assert.deepEqual([issued.record.user, issued.record.name, issued.record.kind], [BOB.email, 'laptop', 'api']);
      assert.ok(Math.abs(Date.parse(issued.record.expires) - (Date.now() + 3600_000)) < 60_000);

      const listed = await call(bob, 'GET', '/tokens');
      const { tokens } = expectOk<{ tokens: TokenJson[] }>(listed);
      assert.ok(tokens.some((t) => t.id === issued.record.id));
      assert.ok(!listed.body.includes(issued.token), 'never the secret again');
      assert.ok(!listed.body.includes('gh_'));

      const byToken: Caller = { email: BOB.email, client: w.client(), token: issued.token };
      assert.equal(expectOk<MeJson>(await call(byToken, 'GET', '/me')).email, BOB.email);
      assert.equal((await visit(byToken, 'wiki', '/docs/a')).status, 200, 'the token carries bob’s roles');
      assert.equal((await call(byToken, 'DELETE', `/tokens/${issued.record.id}`)).status, 204);
      expectError(await call(byToken, 'GET', '/me'), 401, 'ERR_TOKEN_INVALID');
      expectError(await call(bob, 'DELETE', `/tokens/${issued.record.id}`), 404, 'ERR_NOT_FOUND');

      expectError(await call(bob, 'POST', '/tokens', { body: { name: 'forever', ttl: '400d' } }), 400, 'ERR_BAD_REQUEST');
      expectError(await call(bob, 'POST', '/tokens', { body: { name: 'x', ttl: '1h', account: 'deployer' } }), 403, 'ERR_FORBIDDEN');
    });

    it('someone else’s token is not found, except for root, who sees and revokes everyone’s', async () => {
      const issued = expectOk<{ token: string; record: TokenJson }>(await call(alice, 'POST', '/tokens', { body: { name: 'script', ttl: '30m' } }), 201);
      expectError(await call(bob, 'DELETE', `/tokens/${issued.record.id}`), 404, 'ERR_NOT_FOUND');
      const all = expectOk<{ tokens: TokenJson[] }>(await call(root, 'GET', '/tokens?all=true')).tokens;
      assert.ok(all.some((t) => t.id === issued.record.id && t.user === ALICE.email));
      assert.ok(!expectOk<{ tokens: TokenJson[] }>(await call(root, 'GET', '/tokens')).tokens.some((t) => t.id === issued.record.id), 'without all: root’s own');
      assert.equal((await call(root, 'DELETE', `/tokens/${issued.record.id}`)).status, 204);
      expectError(await call({ email: ALICE.email, client: w.client(), token: issued.token }, 'GET', '/me'), 401, 'ERR_TOKEN_INVALID');
    });

    it('service accounts: root creates one, issues its token, and deleting it ends the token; nobody else may', async () => {
      expectError(await call(bob, 'POST', '/service-accounts', { body: { name: 'deployer' } }), 403, 'ERR_FORBIDDEN');
      const created = expectOk<{ serviceAccount: { name: string; identity: string; description: string; createdBy: string } }>(
        await call(root, 'POST', '/service-accounts', { body: { name: 'deployer', description: 'CI' } }),
        201,
      ).serviceAccount;
      assert.deepEqual([created.name, created.identity, created.description, created.createdBy], ['deployer', 'deployer@service.gatehouse', 'CI', ROOT.email]);
      expectError(await call(root, 'POST', '/service-accounts', { body: { name: 'deployer' } }), 409, 'ERR_CONFLICT');
      expectError(await call(root, 'POST', '/service-accounts', { body: { name: 'Not Valid' } }), 400, 'ERR_BAD_REQUEST');
      const listed = expectOk<{ serviceAccounts: Array<{ name: string }> }>(await call(root, 'GET', '/service-accounts')).serviceAccounts;
      assert.deepEqual(
        listed.map((a) => a.name),
        ['deployer'],
      );

      const issued = expectOk<{ token: string; record: TokenJson }>(await call(root, 'POST', '/tokens', { body: { name: 'ci', ttl: '1h', account: 'deployer' } }), 201);
      assert.equal(issued.record.user, 'deployer@service.gatehouse');
      expectError(await call(alice, 'POST', '/tokens', { body: { name: 'ci', ttl: '1h', account: 'deployer' } }), 403, 'ERR_FORBIDDEN');
      const deployer: Caller = { email: 'deployer@service.gatehouse', client: w.client(), token: issued.token };
      assert.equal((await visit(deployer, 'app')).status, 403);
      expectOk(await call(alice, 'PUT', '/roles/viewers/members/deployer@service.gatehouse'));
      assert.equal((await visit(deployer, 'app')).status, 200);
      expectError(await call(deployer, 'POST', '/tokens', { body: { name: 'more', ttl: '1h' } }), 403, 'ERR_FORBIDDEN');

      expectError(await call(bob, 'DELETE', '/service-accounts/deployer'), 403, 'ERR_FORBIDDEN');
      assert.equal((await call(root, 'DELETE', '/service-accounts/deployer')).status, 204);
      assert.equal((await visit(deployer, 'app')).status, 401, 'its token is gone');
      expectError(await call(root, 'DELETE', '/service-accounts/deployer'), 404, 'ERR_NOT_FOUND');
      assert.ok(!(await members('viewers')).includes('deployer@service.gatehouse'));
    });
  });

  // ------------------------------------------------------------------------------------------ audit

  describe('audit', () => {
    async function audit(query: string): Promise<{ records: AuditJson[]; next: string | null }> {
      return expectOk(await call(root, 'GET', `/audit${query}`));
    }

    it('records the changes above with who, from where, before and after; filters by actor, action and target', async () => {
      const { records } = await audit(`?actor=${encodeURIComponent(ALICE.email)}&action=membership.&limit=500`);
      assert.ok(records.length >= 4, String(records.length));
      assert.ok(records.every((r) => r.actor === ALICE.email && r.action.startsWith('membership.')));
      const added = records.find((r) => r.action === 'membership.add' && r.target === `membership:viewers/${HEIDI.email}` && r.after?.expires === undefined)!;
      assert.ok(added, 'heidi’s first membership');
      assert.equal(added.from, '127.0.0.1');
      assert.equal(added.after?.addedBy, ALICE.email);
      assert.ok(!Number.isNaN(Date.parse(added.time)));
      const removed = records.find((r) => r.action === 'membership.remove' && r.target === `membership:viewers/${HEIDI.email}`)!;
      assert.equal(removed.after, null);
      assert.equal(removed.before?.user, HEIDI.email);

      const judy = (await audit(`?target=${encodeURIComponent(`user:${JUDY.email}`)}`)).records;
      assert.deepEqual(
        judy.filter((r) => r.action !== 'user.create').map((r) => [r.action, r.actor, r.before?.disabled, r.after?.disabled]),
        [
          ['user.enable', ROOT.email, true, false],
          ['user.disable', ROOT.email, false, true],
        ],
      );

      const decided = (await audit('?action=access-request.')).records.map((r) => r.action);
      for (const a of ['access-request.create', 'access-request.approve', 'access-request.decline']) assert.ok(decided.includes(a), a);
      const roleAdmins = (await audit('?action=role-admin.')).records.map((r) => [r.action, r.actor, r.target]);
      assert.deepEqual(roleAdmins, [
        ['role-admin.remove', ROOT.email, `role-admin:ops/${ALICE.email}`],
        ['role-admin.add', ROOT.email, `role-admin:ops/${ALICE.email}`],
      ]);
      assert.deepEqual((await audit('?action=nothing.')).records, []);
    });

    it('records session revocations and personal tokens issued and revoked, never a secret', async () => {
      const full = await call(root, 'GET', '/audit?limit=500');
      assert.ok(!full.body.includes('gh_'), 'no token secret in the audit log');
      const { records } = full.json as { records: AuditJson[] };
      const revokes = records.filter((r) => r.action === 'session.revoke');
      assert.deepEqual(
        revokes.map((r) => [r.actor, r.before?.user]),
        [
          [ROOT.email, ALICE.email],
          [BOB.email, BOB.email],
        ],
      );
      assert.equal(revokes[0]!.before?.idToken, undefined);
      const tokens = records.filter((r) => r.action.startsWith('token.') && (r.after?.user ?? r.before?.user) === BOB.email);
      assert.deepEqual(
        tokens.map((r) => [r.action, r.actor, (r.after ?? r.before)?.name]),
        [
          ['token.revoke', BOB.email, 'laptop'],
          ['token.issue', BOB.email, 'laptop'],
        ],
      );
      const service = records.find((r) => r.action === 'token.issue' && r.after?.user === 'deployer@service.gatehouse');
      assert.equal(service?.actor, ROOT.email);
    });

    it('pages newest first with limit and before; since and bad parameters', async () => {
      const first = await audit('?limit=2');
      assert.equal(first.records.length, 2);
      assert.equal(first.next, first.records[1]!.id);
      assert.ok(first.records[0]!.id > first.records[1]!.id, 'newest first');
      const second = await audit(`?limit=2&before=${first.next}`);
      assert.equal(second.records.length, 2);
      assert.ok(second.records[0]!.id < first.records[1]!.id);
      const all = await audit('?limit=500');
      assert.deepEqual(
        [...first.records, ...second.records].map((r) => r.id),
        all.records.slice(0, 4).map((r) => r.id),
      );
      assert.equal(all.next, null, 'fewer than 500: the last page');
      // a page that ends exactly at the oldest record is the last one too
      const exact = await audit(`?limit=${all.records.length}`);
      assert.equal(exact.records.length, all.records.length);
      assert.equal(exact.next, null, 'a page ending at the last record has no next page');
      const short = await audit(`?limit=${all.records.length - 1}`);
      assert.equal(short.next, short.records.at(-1)!.id);
      assert.deepEqual(await audit(`?since=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}`), { records: [], next: null });
      const recent = await audit(`?since=${encodeURIComponent(all.records[2]!.time)}&limit=500`);
      assert.ok(recent.records.length >= 3 && recent.records.every((r) => r.time >= all.records[2]!.time));
      expectError(await call(root, 'GET', '/audit?limit=0'), 400, 'ERR_BAD_REQUEST');
      expectError(await call(root, 'GET', '/audit?limit=501'), 400, 'ERR_BAD_REQUEST');
      expectError(await call(root, 'GET', '/audit?since=yesterday'), 400, 'ERR_BAD_REQUEST');
      const unknown = expectError(await call(root, 'GET', '/audit?colour=red'), 400, 'ERR_BAD_REQUEST');
      assert.match(unknown.error.message, /colour/);
    });

    it('streams every matching record as JSON lines, newest first, across store pages and at the reader’s pace', async () => {
      // enough records for several store pages and more than the socket buffers hold
      for (let i = 0; i < 1200; i++) {
        await directory.appendAudit({ email: ROOT.email, from: '192.0.2.9' }, { action: 'test.fill', kind: 'test', id: String(i), after: { i, pad: 'x'.repeat(200) } });
      }
      const paged: string[] = [];
      let before = '';
      for (;;) {
        const page = await audit(`?limit=500${before ? `&before=${before}` : ''}`);
        paged.push(...page.records.map((r) => r.id));
        if (!page.next) break;
        before = page.next;
      }
      assert.ok(paged.length > 1200);

      const { status, headers, lines } = await slowNdjson('/audit');
      assert.equal(status, 200);
      assert.equal(headers['content-type'], 'application/x-ndjson');
      assert.equal(headers['cache-control'], 'no-store');
      const records = lines.map((l) => JSON.parse(l) as AuditJson);
      assert.deepEqual(
        records.map((r) => r.id),
        paged,
        'every record, newest first',
      );
      const fill = records.filter((r) => r.action === 'test.fill');
      assert.equal(fill.length, 1200);
      assert.deepEqual(fill[0]!.after, { i: 1199, pad: 'x'.repeat(200) });
      assert.equal(fill[0]!.time, new Date(Date.parse(fill[0]!.time)).toISOString());

      const filtered = await slowNdjson(`/audit?action=user.&actor=${encodeURIComponent(ROOT.email)}`);
      const users = filtered.lines.map((l) => JSON.parse(l) as AuditJson);
      assert.ok(users.length >= 2 && users.every((r) => r.action.startsWith('user.') && r.actor === ROOT.email));
    });

    /** GET with Accept: application/x-ndjson, reading slowly at first (so that the server has to wait for drain). */
    function slowNdjson(path: string): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; lines: string[] }> {
      return new Promise((resolve, reject) => {
        const cookie = root.client.jar.header(new URL(api(path)));
        const req = httpsRequest(
          {
            host: '127.0.0.1',
            port: w.main.port,
            servername: AUTH_HOST,
            ca: w.ca.certPem,
            path: `/api/v1${path}`,
            headers: { host: `${AUTH_HOST}:${w.main.port}`, accept: 'application/x-ndjson', cookie: cookie ?? '' },
            agent: false,
          },
          (res) => {
            res.pause();
            const chunks: Buffer[] = [];
            setTimeout(() => {
              res.on('data', (c: Buffer) => chunks.push(c));
              res.resume();
            }, 300);
            res.on('error', reject);
            res.on('end', () => {
              const text = Buffer.concat(chunks).toString('utf8');
              assert.ok(text === '' || text.endsWith('\n'), 'every line ends');
              resolve({ status: res.statusCode ?? 0, headers: res.headers, lines: text.split('\n').filter((l) => l !== '') });
            });
          },
        );
        req.on('error', reject);
        req.end();
      });
    }
  });

  // ------------------------------------------------------------------------------------------ explain

  describe('explain', () => {
    it('root explains someone else’s refusal, naming the missing grant', async () => {
      const denied = expectOk<ExplainJson>(await call(root, 'POST', '/explain', { body: { user: BOB.email, url: routeUrl('ops', '/x?y=1') } }));
      assert.equal(denied.allow, false);
      assert.equal(denied.code, 'ERR_POLICY_DENIED');
      assert.match(denied.reason!, /no rule or role grants route ops to bob@example\.com/);
      assert.deepEqual([denied.route, denied.method, denied.path], ['ops', 'GET', '/x']);
      assert.deepEqual(denied.considered.find((c) => c.rule === 'root admin'), { rule: 'root admin', matched: false });

      const partial = expectOk<ExplainJson>(await call(root, 'POST', '/explain', { body: { user: BOB.email, method: 'post', url: routeUrl('wiki', '/docs/a') } }));
      assert.equal(partial.code, 'ERR_PERMISSION_DENIED');
      assert.match(partial.reason!, /wiki:read \(GET \/docs\/\) through role readers, which does not cover POST \/docs\/a/);
      assert.equal(partial.method, 'POST');

      const granted = expectOk<ExplainJson>(await call(root, 'POST', '/explain', { body: { user: BOB.email, url: routeUrl('wiki', '/docs//a') } }));
      assert.deepEqual([granted.allow, granted.rule, granted.path], [true, 'role readers grants wiki:read (GET /docs/)', '/docs/a']);
      assert.equal(granted.code, undefined);
    });

    it('anyone explains their own requests, and nobody else’s', async () => {
      const own = expectOk<ExplainJson>(await call(bob, 'POST', '/explain', { body: { url: routeUrl('app') } }));
      assert.deepEqual([own.allow, own.code, own.route], [false, 'ERR_POLICY_DENIED', 'app']);
      const named = expectOk<ExplainJson>(await call(bob, 'POST', '/explain', { body: { user: 'BOB@example.com', url: routeUrl('wiki', '/docs/') } }));
      assert.equal(named.allow, true);
      expectError(await call(bob, 'POST', '/explain', { body: { user: ALICE.email, url: routeUrl('app') } }), 403, 'ERR_FORBIDDEN');

      const nowhere = expectOk<ExplainJson>(await call(bob, 'POST', '/explain', { body: { url: 'https://nowhere.example/' } }));
      assert.deepEqual([nowhere.allow, nowhere.code, nowhere.route], [false, 'ERR_ROUTE_NOT_FOUND', null]);
      expectError(await call(bob, 'POST', '/explain', { body: { url: 'not a url' } }), 400, 'ERR_BAD_REQUEST');
      expectError(await call(bob, 'POST', '/explain', { body: { url: routeUrl('app'), method: 'GET /' } }), 400, 'ERR_BAD_REQUEST');
    });
  });

  // ------------------------------------------------------------------------------------------ bad input

  describe('bad input', () => {
    it('refuses an unknown field by name, a missing one, non-JSON and non-objects', async () => {
      const unknown = expectError(await call(bob, 'POST', '/access-requests', { body: { role: 'ops', reason: 'x', colour: 'red' } }), 400, 'ERR_BAD_REQUEST');
      assert.match(unknown.error.message, /unknown field "colour"/);
      const missing = expectError(await call(bob, 'POST', '/tokens', { body: { name: 'x' } }), 400, 'ERR_BAD_REQUEST');
      assert.match(missing.error.message, /"ttl" is required/);
      const wrongType = expectError(await call(bob, 'POST', '/tokens', { body: { name: 'x', ttl: 3600 } }), 400, 'ERR_BAD_REQUEST');
      assert.match(wrongType.error.message, /"ttl"/);
      expectError(await call(bob, 'POST', '/access-requests', { raw: 'role=ops&reason=x' }), 400, 'ERR_BAD_REQUEST');
      expectError(await call(bob, 'POST', '/access-requests', { raw: '[1,2]' }), 400, 'ERR_BAD_REQUEST');
      expectError(await call(bob, 'POST', '/access-requests', { raw: 'null' }), 400, 'ERR_BAD_REQUEST');
      const notJson = await call(bob, 'POST', '/access-requests', { raw: JSON.stringify({ role: 'ops', reason: 'x' }), headers: { 'content-type': 'text/plain' } });
      expectError(notJson, 400, 'ERR_BAD_REQUEST');
      expectError(await call(bob, 'POST', `/users/${BOB.email}/disable`, { body: { now: true } }), 400, 'ERR_BAD_REQUEST');
      assert.equal((await directory.requestsOf(BOB.email)).length, 0, 'nothing was asked');
    });

    it('refuses a body over 16 KiB, declared or streamed, with 413', async () => {
      const big = { role: 'ops', reason: 'x'.repeat(17 * 1024) };
      const declared = await call(bob, 'POST', '/access-requests', { body: big });
      expectError(declared, 413, 'ERR_BODY_TOO_LARGE');
      const streamed = await chunkedPost('/access-requests', JSON.stringify(big));
      assert.equal(streamed.status, 413);
      assert.equal(streamed.code, 'ERR_BODY_TOO_LARGE');
      assert.equal((await directory.requestsOf(BOB.email)).length, 0, 'nothing was asked');
      const atLimit = await call(bob, 'POST', '/access-requests', { raw: JSON.stringify({ role: 'ops', reason: 'y' }).padEnd(16 * 1024, ' ') });
      assert.equal(atLimit.status, 201, 'exactly 16 KiB is fine');
    });

    it('answers an unknown path with 404, a wrong method with 405 and Allow, and a bad email with 400', async () => {
      expectError(await call(bob, 'GET', '/nope'), 404, 'ERR_NOT_FOUND');
      expectError(await call(bob, 'GET', ''), 404, 'ERR_NOT_FOUND');
      expectError(await call(bob, 'GET', '/me/'), 404, 'ERR_NOT_FOUND');
      const wrong = expectError(await call(bob, 'DELETE', '/me'), 405, 'ERR_METHOD_NOT_ALLOWED');
      assert.ok(wrong);
      assert.equal((await call(bob, 'DELETE', '/me')).headers.allow, 'GET, HEAD');
      const member = await call(alice, 'POST', `/roles/viewers/members/${KIM.email}`);
      expectError(member, 405, 'ERR_METHOD_NOT_ALLOWED');
      assert.equal(member.headers.allow, 'PUT, DELETE');
      expectError(await call(alice, 'PUT', '/roles/viewers/members/not-an-email'), 400, 'ERR_BAD_REQUEST');
      expectError(await call(alice, 'PUT', '/roles/viewers/members/a%2Fb@example.com'), 400, 'ERR_BAD_REQUEST');
      const encoded = expectOk<{ membership: MembershipJson }>(await call(alice, 'PUT', `/roles/viewers/members/${encodeURIComponent('Kim@Example.com')}`));
      assert.equal(encoded.membership.user, KIM.email, 'decoded once, lower-cased by the directory');
      assert.equal((await call(alice, 'DELETE', `/roles/viewers/members/${KIM.email}`)).status, 204);
      const head = await call(bob, 'HEAD', '/me');
      assert.equal(head.status, 200);
      assert.equal(head.body, '');
    });

    it('answers an unexpected failure with 500 ERR_INTERNAL, logging the stack and showing none of it', async () => {
      const users = directory.users.bind(directory);
      directory.users = () => Promise.reject(new Error('the disk caught fire at /var/secret/place'));
      try {
        const r = await call(root, 'GET', '/users');
        const e = expectError(r, 500, 'ERR_INTERNAL');
        assert.ok(!r.body.includes('fire') && !r.body.includes('/var/secret'), r.body);
        assert.ok(!e.error.message.includes('at '));
        const logged = () => w.main.gh!.lines.find((l) => l.event === 'api_failed' && l.id === e.error.requestId);
        await waitFor(() => logged() !== undefined, 'the api_failed log line with the request id', 2000);
        assert.match(String(logged()?.error), /the disk caught fire[\s\S]*at /, 'with the stack');
      } finally {
        directory.users = users;
      }
      expectOk(await call(root, 'GET', '/users'));
    });

    function chunkedPost(path: string, body: string): Promise<{ status: number; code: string | undefined }> {
      return new Promise((resolve, reject) => {
        let answered = false;
        const req = httpsRequest(
          {
            method: 'POST',
            host: '127.0.0.1',
            port: w.main.port,
            servername: AUTH_HOST,
            ca: w.ca.certPem,
            path: `/api/v1${path}`,
            headers: {
              host: `${AUTH_HOST}:${w.main.port}`,
              accept: 'application/json',
              'content-type': 'application/json',
              'sec-fetch-site': 'same-origin',
              cookie: bob.client.jar.header(new URL(api(path))) ?? '',
            },
            agent: false,
          },
          (res) => {
            answered = true;
            res.resume();
            resolve({ status: res.statusCode ?? 0, code: res.headers['x-gatehouse-error'] as string | undefined });
          },
        );
        req.on('error', (err) => {
          if (!answered) reject(err);
        });
        for (let i = 0; i < body.length; i += 1024) req.write(body.slice(i, i + 1024));
        req.end();
      });
    }
  });

  // ------------------------------------------------------------------------------------------ the routing table

  it('every operation of the routing table is in docs/openapi.yaml, and every documented one is routed', () => {
    const doc = parseYaml(readFileSync(new URL('../../docs/openapi.yaml', import.meta.url), 'utf8')) as { paths: Record<string, Record<string, unknown>> };
    const documented = Object.entries(doc.paths)
      .flatMap(([path, ops]) => Object.keys(ops).filter((k) => ['get', 'put', 'post', 'delete', 'patch'].includes(k)).map((m) => `${m.toUpperCase()} ${path}`))
      .sort();
    const routed = API_ROUTES.map((r) => `${r.method} ${r.path}`).sort();
    assert.deepEqual(routed, documented);
    assert.equal(new Set(routed).size, routed.length, 'no operation twice');
  });
});
