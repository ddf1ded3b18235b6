import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { GatehouseError, statusOf, type ErrorCode } from '../../../src/core/index.ts';
import {
  compilePolicy,
  evaluate,
  explain,
  type CertificateFacts,
  type Decision,
  type Facts,
  type PolicyRole,
  type PolicyRoute,
  type RouteRules,
  type UserFacts,
} from '../../../src/policy/index.ts';
import { normalizePath } from '../../../src/proxy/index.ts';

const none = { roles: [], users: [], domains: [] };

const routes: PolicyRoute[] = [
  { name: 'open', auth: 'public', permissions: [] },
  { name: 'grafana', auth: 'login', permissions: [] },
  {
    name: 'wiki',
    auth: 'login',
    permissions: [
      { name: 'read', locations: [{ methods: ['GET', 'HEAD'], path: '/api/' }] },
      { name: 'edit', locations: [{ methods: ['post', 'Put'], path: '/api/pages' }] },
      { name: 'anyone', locations: [{ path: '/public' }] },
    ],
  },
  {
    name: 'members',
    auth: 'login',
    allow: { roles: ['ops'], users: ['alice@example.com'], domains: ['example.org'] },
    permissions: [],
  },
  {
    name: 'mtls',
    auth: 'certificate',
    allow: { roles: ['ops'], users: ['carol@example.com'], domains: ['partner.example'], certificateSubject: { OU: 'engineering' } },
    permissions: [],
  },
  { name: 'mtls-plain', auth: 'certificate', permissions: [{ name: 'read', locations: [{ methods: ['GET'], path: '/' }] }] },
  {
    name: 'both',
    auth: 'login+certificate',
    allow: { ...none, users: ['alice@example.com'], certificateSubject: { O: 'Example', OU: ['eng', 'ops'] } },
    permissions: [],
  },
];

const roles: PolicyRole[] = [
  { name: 'sre', grants: ['grafana', 'wiki:read'], groups: ['sre-team'], members: ['bob@example.com'] },
  { name: 'editors', grants: ['wiki:edit'], groups: [], members: ['erin@example.com'] },
  { name: 'ops', grants: [], groups: ['ops'], members: ['olga@example.com'] },
  { name: 'readers', grants: ['wiki:anyone', 'mtls-plain:read'], groups: ['everyone'], members: ['pat@example.com'] },
  { name: 'cert-ops', grants: ['mtls-plain'], groups: [], members: ['carl@example.com'] },
];

const policy = compilePolicy(routes, roles);
const admins: ReadonlySet<string> = new Set(['root@example.com']);

const noCert: CertificateFacts = { status: 'missing' };
const validCert = (extra: Partial<CertificateFacts> = {}): CertificateFacts => ({ status: 'valid', ...extra });

function user(email: string, groups: readonly string[] = [], extra: Partial<UserFacts> = {}): UserFacts {
  return { email, groups, roles: policy.rolesFor(email, groups), ...extra };
}

function facts(route: string, f: Partial<Facts> = {}): Facts {
  return {
    route: policy.route(route)!,
    method: 'GET',
    path: '/',
    certificate: noCert,
    loginAvailable: true,
    admins,
    ...f,
  };
}

function allowed(d: Decision, rule: string): void {
  assert.equal(d.allow, true, `expected allow by ${rule}, got ${JSON.stringify(d)}`);
  if (d.allow) assert.equal(d.rule, rule);
}

function denied(d: Decision, code: ErrorCode): string {
  assert.equal(d.allow, false, `expected ${code}, got ${JSON.stringify(d)}`);
  if (d.allow) return '';
  assert.equal(d.code, code, d.reason);
  assert.ok(d.reason.length > 0, 'every denial names its reason');
  return d.reason;
}

describe('compilePolicy', () => {
  it('finds roles through members (any case) and through IdP groups, in configuration order', () => {
    assert.deepEqual(policy.rolesFor('bob@example.com', []), ['sre']);
    assert.deepEqual(policy.rolesFor('Bob@Example.COM', []), ['sre']);
    assert.deepEqual(policy.rolesFor('zed@example.com', ['sre-team']), ['sre']);
    assert.deepEqual(policy.rolesFor('zed@example.com', ['everyone', 'ops', 'sre-team']), ['sre', 'ops', 'readers']);
    assert.deepEqual(policy.rolesFor('bob@example.com', ['sre-team', 'ops']), ['sre', 'ops']);
    assert.deepEqual(policy.rolesFor('zed@example.com', ['SRE-TEAM', 'unknown']), [], 'group names are exact');
    assert.deepEqual(policy.rolesFor('zed@example.com', []), []);
  });

  it('adds roles from outside (the store), only when they name a configured role', () => {
    assert.deepEqual(policy.rolesFor('zed@example.com', [], ['cert-ops', 'no-such-role', 'sre']), ['sre', 'cert-ops']);
    assert.deepEqual(policy.rolesFor('bob@example.com', ['ops'], new Set(['sre'])), ['sre', 'ops']);
    assert.deepEqual(policy.rolesFor('zed@example.com', [], []), []);
  });

  it('precomputes allow lists as sets and grants per role and per route', () => {
    const m = policy.route('members')!;
    assert.deepEqual([...m.allowUsers.keys()], ['alice@example.com']);
    assert.deepEqual([...m.allowDomains.keys()], ['example.org']);
    assert.deepEqual([...m.allowRoles.keys()], ['ops']);
    const wiki = policy.route('wiki')!;
    assert.deepEqual([...wiki.grants.keys()], ['sre', 'editors', 'readers']);
    assert.equal(wiki.grants.get('sre')!.whole, undefined);
    assert.equal(policy.route('grafana')!.grants.get('sre')!.whole!.decision.rule, 'role sre grants grafana');
    const edit = wiki.grants.get('editors')!.permissions[0]!;
    assert.deepEqual([...edit.locations[0]!.methods!], ['POST', 'PUT'], 'methods are upper-cased');
    assert.equal(wiki.grants.get('readers')!.permissions[0]!.locations[0]!.methods, undefined, 'absent methods = any');
    assert.deepEqual(
      policy.roles.get('sre')!.grants.map((g) => (g.kind === 'route' ? g.route : `${g.route}:${g.permission}`)),
      ['grafana', 'wiki:read'],
    );
    assert.equal(policy.route('nope'), undefined);
  });

  it('refuses grants of unknown routes or permissions, and repeated names', () => {
    const bad = (rs: PolicyRoute[], ro: PolicyRole[]) =>
      assert.throws(() => compilePolicy(rs, ro), (e: unknown) => e instanceof GatehouseError && e.code === 'ERR_CONFIG_INVALID');
    const role = (grants: string[], name = 'r'): PolicyRole => ({ name, grants, groups: [], members: [] });
    bad(routes, [role(['nope'])]);
    bad(routes, [role(['wiki:write'])]);
    bad(routes, [role(['grafana:read'])]);
    bad(routes, [role([]), role([])]);
    bad([...routes, routes[0]!], []);
  });
});

describe('evaluate: auth public', () => {
  it('allows everyone, signed in or not', () => {
    allowed(evaluate(facts('open')), 'auth: public');
    allowed(evaluate(facts('open', { loginAvailable: false, method: 'DELETE', path: '/x' })), 'auth: public');
    allowed(evaluate(facts('open', { user: user('x@y.z') })), 'auth: public');
  });
});

describe('evaluate: auth login', () => {
  it('needs sign-in to be configured (501)', () => {
    const reason = denied(evaluate(facts('grafana', { loginAvailable: false, user: user('bob@example.com') })), 'ERR_LOGIN_NOT_CONFIGURED');
    assert.equal(statusOf('ERR_LOGIN_NOT_CONFIGURED'), 501);
    assert.match(reason, /grafana/);
  });

  it('refuses a request that is not signed in (401)', () => {
    denied(evaluate(facts('grafana')), 'ERR_NOT_SIGNED_IN');
    denied(evaluate(facts('members')), 'ERR_NOT_SIGNED_IN');
    assert.equal(statusOf('ERR_NOT_SIGNED_IN'), 401);
  });

  it('refuses a disabled user (403), root admins included', () => {
    denied(evaluate(facts('grafana', { user: user('bob@example.com', [], { disabled: true }) })), 'ERR_USER_DISABLED');
    denied(evaluate(facts('members', { user: user('alice@example.com', [], { disabled: true }) })), 'ERR_USER_DISABLED');
    denied(evaluate(facts('grafana', { user: user('root@example.com', [], { disabled: true }) })), 'ERR_USER_DISABLED');
    assert.equal(statusOf('ERR_USER_DISABLED'), 403);
  });

  it('allows root admins everywhere, whatever the case of their email', () => {
    for (const r of ['grafana', 'wiki', 'members']) {
      allowed(evaluate(facts(r, { user: user('root@example.com'), method: 'DELETE', path: '/anything' })), 'root admin');
      allowed(evaluate(facts(r, { user: user('Root@Example.com') })), 'root admin');
    }
    denied(evaluate(facts('grafana', { user: user('root@example.com'), admins: new Set() })), 'ERR_POLICY_DENIED');
    denied(evaluate(facts('grafana', { user: user('root@example.com'), admins: undefined })), 'ERR_POLICY_DENIED');
  });

  it('allows by allow.users, allow.domains and allow.roles', () => {
    allowed(evaluate(facts('members', { user: user('alice@example.com') })), 'allow.users alice@example.com');
    allowed(evaluate(facts('members', { user: user('ALICE@example.com') })), 'allow.users alice@example.com');
    allowed(evaluate(facts('members', { user: user('dan@example.org') })), 'allow.domains example.org');
    allowed(evaluate(facts('members', { user: user('dan@Example.ORG') })), 'allow.domains example.org');
    allowed(evaluate(facts('members', { user: user('olga@example.com') })), 'allow.roles ops');
    allowed(evaluate(facts('members', { user: user('zed@example.com', ['ops']) })), 'allow.roles ops');
    // a domain is matched exactly: neither sub-domains nor look-alikes
    denied(evaluate(facts('members', { user: user('dan@eng.example.org') })), 'ERR_POLICY_DENIED');
    denied(evaluate(facts('members', { user: user('dan@example.org.evil') })), 'ERR_POLICY_DENIED');
    denied(evaluate(facts('members', { user: user('dan@notexample.org') })), 'ERR_POLICY_DENIED');
    const reason = denied(evaluate(facts('members', { user: user('bob@example.com') })), 'ERR_POLICY_DENIED');
    assert.match(reason, /members/);
    assert.match(reason, /bob@example\.com/);
  });

  it('allows by a whole-route grant, held through members or through groups', () => {
    allowed(evaluate(facts('grafana', { user: user('bob@example.com'), method: 'POST', path: '/x/y' })), 'role sre grants grafana');
    allowed(evaluate(facts('grafana', { user: user('zed@example.com', ['sre-team']) })), 'role sre grants grafana');
    allowed(
      evaluate(facts('grafana', { user: { email: 'zed@example.com', groups: [], roles: policy.rolesFor('zed@example.com', [], ['sre']) } })),
      'role sre grants grafana',
    );
    denied(evaluate(facts('grafana', { user: user('zed@example.com', ['sre']) })), 'ERR_POLICY_DENIED');
    denied(evaluate(facts('grafana', { user: user('erin@example.com') })), 'ERR_POLICY_DENIED');
  });

  it('denies by default: no roles, no rules', () => {
    const reason = denied(evaluate(facts('grafana', { user: user('nobody@example.com') })), 'ERR_POLICY_DENIED');
    assert.match(reason, /grafana/);
    assert.match(reason, /nobody@example\.com/);
    assert.equal(statusOf('ERR_POLICY_DENIED'), 403);
  });

  it('trusts the roles it is given, not the groups (roles are computed before the decision)', () => {
    denied(evaluate(facts('grafana', { user: { email: 'zed@example.com', groups: ['sre-team'], roles: [] } })), 'ERR_POLICY_DENIED');
  });
});

describe('evaluate: route:permission grants', () => {
  const bob = user('bob@example.com'); // sre: wiki:read = GET|HEAD /api/
  const erin = user('erin@example.com'); // editors: wiki:edit = POST|PUT /api/pages
  const pat = user('pat@example.com'); // readers: wiki:anyone = any method /public
  const on = (u: UserFacts, method: string, path: string) => evaluate(facts('wiki', { user: u, method, path }));

  it('covers only the listed methods, compared upper-case', () => {
    const rule = 'role sre grants wiki:read (GET|HEAD /api/)';
    allowed(on(bob, 'GET', '/api/x'), rule);
    allowed(on(bob, 'HEAD', '/api/x'), rule);
    allowed(on(bob, 'get', '/api/x'), rule);
    allowed(on(bob, 'Head', '/api/x'), rule);
    for (const m of ['POST', 'post', 'PUT', 'DELETE', 'OPTIONS', 'GETX', 'GE']) {
      const reason = denied(on(bob, m, '/api/x'), 'ERR_PERMISSION_DENIED');
      assert.match(reason, /wiki:read/);
      assert.ok(reason.includes(`${m.toUpperCase()} /api/x`), reason);
    }
    const editRule = 'role editors grants wiki:edit (POST|PUT /api/pages)';
    allowed(on(erin, 'post', '/api/pages'), editRule);
    allowed(on(erin, 'PUT', '/api/pages/1'), editRule);
    denied(on(erin, 'GET', '/api/pages'), 'ERR_PERMISSION_DENIED');
    assert.equal(statusOf('ERR_PERMISSION_DENIED'), 403);
  });

  it('covers any method when the location lists none', () => {
    for (const m of ['GET', 'POST', 'DELETE', 'PATCH', 'propfind']) {
      allowed(on(pat, m, '/public'), 'role readers grants wiki:anyone (any method /public)');
      allowed(on(pat, m, '/public/a/b'), 'role readers grants wiki:anyone (any method /public)');
    }
    denied(on(pat, 'GET', '/publicity'), 'ERR_PERMISSION_DENIED');
    denied(on(pat, 'GET', '/api/x'), 'ERR_PERMISSION_DENIED');
  });

  it('matches a path prefix ending in "/" as a directory', () => {
    allowed(on(bob, 'GET', '/api/'), 'role sre grants wiki:read (GET|HEAD /api/)');
    allowed(on(bob, 'GET', '/api/v1/pages/x'), 'role sre grants wiki:read (GET|HEAD /api/)');
    for (const p of ['/api', '/apix', '/apix/y', '/API/x', '/', '/x/api/', '/%2Fapi/x']) {
      denied(on(bob, 'GET', p), 'ERR_PERMISSION_DENIED');
    }
  });

  it('matches a path prefix without "/" as itself or a directory, never a longer name', () => {
    allowed(on(erin, 'POST', '/api/pages'), 'role editors grants wiki:edit (POST|PUT /api/pages)');
    allowed(on(erin, 'POST', '/api/pages/'), 'role editors grants wiki:edit (POST|PUT /api/pages)');
    allowed(on(erin, 'POST', '/api/pages/1/history'), 'role editors grants wiki:edit (POST|PUT /api/pages)');
    for (const p of ['/api/pagesx', '/api/pages.json', '/api/page', '/api/', '/api/Pages']) {
      denied(on(erin, 'POST', p), 'ERR_PERMISSION_DENIED');
    }
  });

  it('is not bypassed by dot segments, repeated slashes or escapes once the path is normalised', () => {
    // evaluate expects the normalised path; the proxy normalises once and forwards what was checked
    denied(on(bob, 'GET', '/admin'), 'ERR_PERMISSION_DENIED'); // "/api/../admin" as the proxy hands it over
    for (const raw of ['/api/../admin', '/api/./../admin', '/api/%2e%2e/admin', '/api/%2E%2E/admin', '/api//..//admin', '/api/v1/../../admin']) {
      const path = normalizePath(raw);
      assert.equal(path, '/admin', raw);
      const reason = denied(on(bob, 'GET', path!), 'ERR_PERMISSION_DENIED');
      assert.match(reason, /GET \/admin/);
    }
    // dot segments behind encoded slashes are refused before any decision (the proxy answers 400)
    assert.equal(normalizePath('/api%2f..%2fadmin'), undefined);
    // an encoded slash stays inside one segment: "/api%2Fadmin" is not under /api/
    const encoded = normalizePath('/api%2fadmin')!;
    assert.equal(encoded, '/api%2Fadmin');
    denied(on(bob, 'GET', encoded), 'ERR_PERMISSION_DENIED');
    // and an escaped prefix still matches once decoded
    allowed(on(bob, 'GET', normalizePath('/%61pi//x')!), 'role sre grants wiki:read (GET|HEAD /api/)');
  });

  it('names every permission held when none covers the request', () => {
    const both = { email: 'x@example.com', groups: [], roles: policy.rolesFor('x@example.com', [], ['sre', 'editors']) };
    const reason = denied(on(both, 'DELETE', '/api/pages/1'), 'ERR_PERMISSION_DENIED');
    assert.match(reason, /wiki:read/);
    assert.match(reason, /wiki:edit/);
    assert.match(reason, /DELETE \/api\/pages\/1/);
    allowed(on(both, 'PUT', '/api/pages/1'), 'role editors grants wiki:edit (POST|PUT /api/pages)');
    allowed(on(both, 'GET', '/api/pages/1'), 'role sre grants wiki:read (GET|HEAD /api/)');
  });

  it('gives ERR_POLICY_DENIED, not ERR_PERMISSION_DENIED, to users with grants on other routes only', () => {
    denied(evaluate(facts('wiki', { user: user('olga@example.com') })), 'ERR_POLICY_DENIED');
    denied(evaluate(facts('members', { user: bob })), 'ERR_POLICY_DENIED');
  });

  it('a whole-route grant beats a permission', () => {
    const r = compilePolicy(routes, [{ name: 'a', grants: ['wiki:read', 'wiki'], groups: [], members: ['a@x.io'] }]);
    const d = evaluate({ ...facts('wiki'), route: r.route('wiki')!, user: { email: 'a@x.io', groups: [], roles: r.rolesFor('a@x.io', []) }, method: 'DELETE', path: '/z' });
    allowed(d, 'role a grants wiki');
  });
});

describe('evaluate: auth login+certificate', () => {
  const alice = user('alice@example.com');
  it('needs sign-in to be configured', () => {
    denied(evaluate(facts('both', { loginAvailable: false, user: alice, certificate: validCert() })), 'ERR_LOGIN_NOT_CONFIGURED');
  });

  it('gives the certificate codes for a missing or bad certificate, signed in or not', () => {
    const cases: [CertificateFacts['status'], ErrorCode][] = [
      ['missing', 'ERR_CERT_MISSING'],
      ['untrusted', 'ERR_CERT_UNTRUSTED'],
      ['expired', 'ERR_CERT_EXPIRED'],
      ['not-yet-valid', 'ERR_CERT_NOT_YET_VALID'],
      ['revoked', 'ERR_CERT_REVOKED'],
      ['invalid', 'ERR_CERT_INVALID'],
    ];
    for (const [status, code] of cases) {
      denied(evaluate(facts('both', { user: alice, certificate: { status, user: 'alice@example.com' } })), code);
      denied(evaluate(facts('both', { certificate: { status } })), code);
      denied(evaluate(facts('both', { user: user('root@example.com'), certificate: { status } })), code);
    }
  });

  it('needs a signed-in, enabled user besides the certificate', () => {
    denied(evaluate(facts('both', { certificate: validCert({ user: 'alice@example.com' }) })), 'ERR_NOT_SIGNED_IN');
    denied(
      evaluate(facts('both', { user: user('alice@example.com', [], { disabled: true }), certificate: validCert({ user: 'alice@example.com' }) })),
      'ERR_USER_DISABLED',
    );
  });

  it('allows when the certificate was issued to the signed-in user (any case) or to no user', () => {
    allowed(evaluate(facts('both', { user: alice, certificate: validCert({ user: 'alice@example.com' }) })), 'allow.users alice@example.com');
    allowed(evaluate(facts('both', { user: alice, certificate: validCert({ user: 'Alice@Example.com' }) })), 'allow.users alice@example.com');
    allowed(evaluate(facts('both', { user: alice, certificate: validCert() })), 'allow.users alice@example.com');
  });

  it('refuses a certificate issued to somebody else, even to a root admin', () => {
    const reason = denied(evaluate(facts('both', { user: alice, certificate: validCert({ user: 'mallory@example.com' }) })), 'ERR_CERT_WRONG_USER');
    assert.match(reason, /mallory@example\.com/);
    assert.match(reason, /alice@example\.com/);
    denied(evaluate(facts('both', { user: user('root@example.com'), certificate: validCert({ user: 'alice@example.com' }) })), 'ERR_CERT_WRONG_USER');
    assert.equal(statusOf('ERR_CERT_WRONG_USER'), 403);
  });

  it('applies the person rules once both are met', () => {
    allowed(evaluate(facts('both', { user: user('root@example.com'), certificate: validCert({ user: 'root@example.com' }) })), 'root admin');
    denied(evaluate(facts('both', { user: user('bob@example.com'), certificate: validCert({ user: 'bob@example.com' }) })), 'ERR_POLICY_DENIED');
    // allow.certificateSubject is one more allow entry, checked on the (already verified) certificate
    const subject = { O: ['Example'], OU: ['ops'] };
    allowed(
      evaluate(facts('both', { user: user('bob@example.com'), certificate: validCert({ user: 'bob@example.com', subject }) })),
      'allow.certificateSubject O=Example, OU=eng|ops',
    );
    denied(
      evaluate(facts('both', { user: user('bob@example.com'), certificate: validCert({ user: 'bob@example.com', subject: { O: ['Example'], OU: ['sales'] } }) })),
      'ERR_POLICY_DENIED',
    );
  });

  it('does not consult allow.certificateSubject on plain login routes', () => {
    const p = compilePolicy([{ name: 'l', auth: 'login', allow: { ...none, certificateSubject: { OU: 'eng' } }, permissions: [] }], []);
    const d = evaluate({ ...facts('grafana'), route: p.route('l')!, user: user('bob@example.com'), certificate: validCert({ subject: { OU: ['eng'] } }) });
    denied(d, 'ERR_POLICY_DENIED');
  });
});

describe('evaluate: auth certificate (unchanged behaviour)', () => {
  const cert = (subject: Record<string, string[]>, extra: Partial<CertificateFacts> = {}): CertificateFacts =>
    validCert({ subject, subjectDn: Object.entries(subject).map(([k, v]) => `${k}=${v.join('+')}`).join(', '), ...extra });

  it('gives a code for each kind of bad certificate, with the TLS detail', () => {
    const cases: [CertificateFacts['status'], ErrorCode][] = [
      ['missing', 'ERR_CERT_MISSING'],
      ['untrusted', 'ERR_CERT_UNTRUSTED'],
      ['expired', 'ERR_CERT_EXPIRED'],
      ['not-yet-valid', 'ERR_CERT_NOT_YET_VALID'],
      ['revoked', 'ERR_CERT_REVOKED'],
      ['invalid', 'ERR_CERT_INVALID'],
    ];
    for (const [status, code] of cases) {
      denied(evaluate(facts('mtls', { certificate: { status, subject: { OU: ['engineering'] }, user: 'carol@example.com' } })), code);
      assert.equal(statusOf(code), 403);
    }
    const reason = denied(evaluate(facts('mtls', { certificate: { status: 'untrusted', detail: 'UNABLE_TO_GET_ISSUER_CERT' } })), 'ERR_CERT_UNTRUSTED');
    assert.match(reason, /UNABLE_TO_GET_ISSUER_CERT/);
  });

  it('needs no sign-in and ignores a signed-in user', () => {
    allowed(evaluate(facts('mtls', { loginAvailable: false, certificate: cert({ OU: ['engineering'] }) })), 'allow.certificateSubject OU=engineering');
    denied(evaluate(facts('mtls', { user: user('carol@example.com'), certificate: noCert })), 'ERR_CERT_MISSING');
    denied(evaluate(facts('mtls', { user: user('root@example.com'), certificate: cert({ OU: ['sales'] }) })), 'ERR_CERT_SUBJECT_MISMATCH');
  });

  it('allows by subject, then by the user the certificate was issued to', () => {
    allowed(evaluate(facts('mtls', { certificate: cert({ OU: ['sales', 'engineering'] }) })), 'allow.certificateSubject OU=engineering');
    allowed(evaluate(facts('mtls', { certificate: cert({ OU: ['sales'] }, { user: 'carol@example.com' }) })), 'allow.users carol@example.com');
    allowed(evaluate(facts('mtls', { certificate: cert({ OU: ['sales'] }, { user: 'dave@partner.example' }) })), 'allow.domains partner.example');
  });

  it('refuses a subject that does not match with ERR_CERT_SUBJECT_MISMATCH', () => {
    const reason = denied(evaluate(facts('mtls', { certificate: cert({ OU: ['sales'] }) })), 'ERR_CERT_SUBJECT_MISMATCH');
    assert.match(reason, /OU=sales/);
    assert.match(reason, /OU=engineering/);
    denied(evaluate(facts('mtls', { certificate: validCert() })), 'ERR_CERT_SUBJECT_MISMATCH');
    denied(evaluate(facts('mtls', { certificate: cert({ OU: ['sales'] }, { user: 'eve@example.com' }) })), 'ERR_CERT_SUBJECT_MISMATCH');
  });

  it('refuses a valid certificate on a route that allows nothing with ERR_POLICY_DENIED', () => {
    denied(evaluate(facts('mtls-plain', { certificate: cert({ CN: ['x'] }) })), 'ERR_POLICY_DENIED');
    denied(evaluate(facts('mtls-plain', { certificate: cert({ CN: ['x'] }, { user: 'eve@example.com' }) })), 'ERR_POLICY_DENIED');
  });

  it('works on the route configuration as before (no compilePolicy)', () => {
    const route: RouteRules = { name: 'gate', auth: 'certificate', allow: { ...none, users: ['carol@example.com'], certificateSubject: { OU: ['a', 'b'] } } };
    const f = (certificate: CertificateFacts): Facts => ({ route, method: 'GET', path: '/', certificate, loginAvailable: false });
    allowed(evaluate(f(cert({ OU: ['b'] }))), 'allow.certificateSubject OU=a|b');
    allowed(evaluate(f(cert({ OU: ['c'] }, { user: 'carol@example.com' }))), 'allow.users carol@example.com');
    denied(evaluate(f(cert({ OU: ['c'] }))), 'ERR_CERT_SUBJECT_MISMATCH');
    denied(evaluate(f({ status: 'revoked' })), 'ERR_CERT_REVOKED');
    allowed(evaluate({ ...f(validCert()), route: { name: 'p', auth: 'public' } }), 'auth: public');
    denied(evaluate({ ...f(validCert()), route: { name: 'l', auth: 'login' } }), 'ERR_LOGIN_NOT_CONFIGURED');
    // a configured route carries no role grants: fail closed
    denied(
      evaluate({ route: routes[1]!, method: 'GET', path: '/', certificate: noCert, loginAvailable: true, user: user('bob@example.com') }),
      'ERR_POLICY_DENIED',
    );
    allowed(
      evaluate({ route: routes[3]!, method: 'GET', path: '/', certificate: noCert, loginAvailable: true, user: user('alice@example.com') }),
      'allow.users alice@example.com',
    );
  });

  it("uses the roles and grants of the certificate's user when known", () => {
    const known = (email: string) => ({ roles: policy.rolesFor(email, []) });
    allowed(
      evaluate(facts('mtls', { certificate: cert({ OU: ['sales'] }, { user: 'olga@example.com' }), certificateUser: known('olga@example.com') })),
      'allow.roles ops',
    );
    allowed(evaluate(facts('mtls-plain', { certificate: cert({}, { user: 'carl@example.com' }), certificateUser: known('carl@example.com') })), 'role cert-ops grants mtls-plain');
    allowed(
      evaluate(facts('mtls-plain', { certificate: cert({}, { user: 'pat@example.com' }), certificateUser: known('pat@example.com') })),
      'role readers grants mtls-plain:read (GET /)',
    );
    denied(
      evaluate(facts('mtls-plain', { method: 'POST', certificate: cert({}, { user: 'pat@example.com' }), certificateUser: known('pat@example.com') })),
      'ERR_PERMISSION_DENIED',
    );
    allowed(evaluate(facts('mtls-plain', { certificate: cert({}, { user: 'root@example.com' }) })), 'root admin');
    // without the facts about the user, roles are unknown: deny
    denied(evaluate(facts('mtls-plain', { certificate: cert({}, { user: 'carl@example.com' }) })), 'ERR_POLICY_DENIED');
    // a certificate with no user cannot hold roles
    denied(evaluate(facts('mtls-plain', { certificate: cert({}), certificateUser: known('carl@example.com') })), 'ERR_POLICY_DENIED');
    denied(
      evaluate(facts('mtls', { certificate: cert({ OU: ['engineering'] }, { user: 'carol@example.com' }), certificateUser: { roles: [], disabled: true } })),
      'ERR_USER_DISABLED',
    );
  });
});

describe('evaluate: deny by default and cheap allows', () => {
  it('denies an unknown auth mode', () => {
    const route = { name: 'odd', auth: 'magic' } as unknown as RouteRules;
    denied(evaluate({ route, method: 'GET', path: '/', certificate: validCert(), loginAvailable: true, user: user('root@example.com'), admins }), 'ERR_POLICY_DENIED');
  });

  it('returns the same precomputed allow decision for the same rule', () => {
    const f = facts('wiki', { user: user('bob@example.com'), path: '/api/x' });
    assert.equal(evaluate(f), evaluate(f));
    assert.equal(evaluate(facts('open')), evaluate(facts('open')));
  });
});

describe('explain', () => {
  it('returns the decision of evaluate and the rules considered, in order', () => {
    const f = facts('wiki', { user: user('bob@example.com'), method: 'GET', path: '/api/x' });
    const e = explain(f);
    assert.deepEqual(e.decision, evaluate(f));
    assert.deepEqual(e.considered, [
      { rule: 'sign-in configured', matched: true },
      { rule: 'signed in', matched: true },
      { rule: 'user bob@example.com enabled', matched: true },
      { rule: 'root admin', matched: false },
      { rule: 'role sre grants wiki', matched: false },
      { rule: 'role sre grants wiki:read (GET|HEAD /api/)', matched: true },
    ]);
  });

  it('lists what was tried before a denial', () => {
    const e = explain(facts('members', { user: user('bob@example.com') }));
    assert.equal(e.decision.allow, false);
    assert.deepEqual(
      e.considered.map((c) => c.rule),
      ['sign-in configured', 'signed in', 'user bob@example.com enabled', 'root admin', 'allow.users alice@example.com', 'allow.domains example.org', 'allow.roles ops'],
    );
    assert.ok(e.considered.slice(3).every((c) => !c.matched));
    const c = explain(facts('mtls', { certificate: { status: 'revoked' } }));
    assert.deepEqual(c.considered, [{ rule: 'certificate revoked', matched: false }]);
  });
});
