// The semantic checks that run after the schema: each one, with the exact position of the offending node.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { configOf, minimal, problemsOf, yaml } from './helpers.ts';

/** `server:` then the given route entries (each an array of lines, the first one after `- `). */
const withRoutes = (...routes: string[][]) =>
  minimal + yaml('routes:', ...routes.flatMap((lines) => lines.map((l, i) => (i === 0 ? `  - ${l}` : `    ${l}`))));

test('a route has exactly one of to and tcp', async () => {
  assert.deepEqual(
    await problemsOf(withRoutes(['name: a', 'host: a.example.com'], ['name: b', 'host: b.example.com', 'to: http://b', 'tcp: b:22'])),
    [
      '4:5: routes[0]: a route needs to (an http(s) upstream or connector:NAME) or tcp (HOST:PORT or connector:NAME)',
      '9:10: routes[1].tcp: a route has either to or tcp, not both',
    ],
  );
});

test('to is http(s)://HOST[:PORT][/path] or connector:NAME of a configured connector', async () => {
  const text = withRoutes(
    ['name: a', 'host: a.example.com', 'to: ftp://a'],
    ['name: b', 'host: b.example.com', 'to: http://b:99999'],
    ['name: c', 'host: c.example.com', 'to: http://user@c/x?y=1'],
    ['name: d', 'host: d.example.com', 'to: connector:offce'],
    ['name: e', 'host: e.example.com', 'to: https://[::1]:8443/base/path'],
    ['name: f', 'host: f.example.com', 'to: connector:office'],
  ) + yaml('connectors:', '  - name: office');
  assert.deepEqual(await problemsOf(text), [
    '6:9: routes[0].to: "ftp://a" must be http(s)://HOST[:PORT][/path] or connector:NAME',
    '9:9: routes[1].to: "http://b:99999": the port must be 1-65535',
    '12:9: routes[2].to: "http://user@c/x?y=1" must be http(s)://HOST[:PORT][/path] or connector:NAME',
    '15:9: routes[3].to: unknown connector "offce" (did you mean "office"?)',
  ]);
  assert.deepEqual(await problemsOf(withRoutes(['name: a', 'host: a.example.com', 'to: connector:x'])), [
    '6:9: routes[0].to: unknown connector "x" (no connectors are configured)',
  ]);
});

test('tcp is HOST:PORT or connector:NAME', async () => {
  const text = withRoutes(
    ['name: a', 'host: a.example.com', 'tcp: 10.0.0.5'],
    ['name: b', 'host: b.example.com', 'tcp: "[fd00::5]:22"'],
    ['name: c', 'host: c.example.com', 'tcp: connector:nope'],
    ['name: d', 'host: d.example.com', 'tcp: db:0'],
  );
  assert.deepEqual(await problemsOf(text), [
    '6:10: routes[0].tcp: "10.0.0.5" must be HOST:PORT or connector:NAME',
    '12:10: routes[2].tcp: unknown connector "nope" (no connectors are configured)',
    '15:10: routes[3].tcp: "db:0": the port must be 1-65535',
  ]);
});

test('every {N} in to, tcp and hostHeader refers to a * in host', async () => {
  const ok = await configOf(
    withRoutes(
      ['name: a', 'host: "*.corp.example.com"', 'to: http://{1}', 'upstream: { hostHeader: "{1}.internal" }'],
      ['name: b', 'host: "*-*.corp.example.com"', 'to: "http://{1}:{2}/{1}"'],
      ['name: c', 'host: "*.ssh.example.com"', 'tcp: "{1}:22"'],
    ),
  );
  assert.equal(ok.routes[1]!.to, 'http://{1}:{2}/{1}');
  const text = withRoutes(
    ['name: a', 'host: "*.corp.example.com"', 'to: http://{2}', 'upstream: { hostHeader: "{0}" }'],
    ['name: b', 'host: b.example.com', 'to: http://{1}'],
    ['name: c', 'host: "*.ssh.example.com"', 'tcp: "{1}:{3}"'],
  );
  assert.deepEqual(await problemsOf(text), [
    '6:9: routes[0].to: {2} refers to a * that host "*.corp.example.com" does not have (it has 1 *)',
    '7:29: routes[0].upstream.hostHeader: {0} refers to a * that host "*.corp.example.com" does not have (it has 1 *)',
    '10:9: routes[1].to: {1} refers to a * that host "b.example.com" does not have (it has no *)',
    '13:10: routes[2].tcp: {3} refers to a * that host "*.ssh.example.com" does not have (it has 1 *)',
  ]);
});

test('route names and hosts are unique; a host is never the auth host; ** is refused', async () => {
  const text = withRoutes(
    ['name: a', 'host: a.example.com', 'to: http://a'],
    ['name: a', 'host: A.example.com', 'to: http://a'],
    ['name: c', 'host: gate.example.com', 'to: http://c'],
    ['name: d', 'host: "**.example.com"', 'to: http://d'],
  );
  assert.deepEqual(await problemsOf(text), [
    '7:11: routes[1].name: duplicate route name "a" (also routes[0])',
    '8:11: routes[1].host: duplicate route host "a.example.com" (also routes[0])',
    '11:11: routes[2].host: "gate.example.com" is the auth host (server.authHost); a route cannot use it',
    '14:11: routes[3].host: "**.example.com": two * next to each other cannot be told apart',
  ]);
});

test('a pattern that matches the auth host is allowed (the exact auth host wins)', async () => {
  const c = await configOf(withRoutes(['name: all', 'host: "*.example.com"', 'to: http://{1}']));
  assert.equal(c.routes[0]!.host, '*.example.com');
});

test('aliases are unique across routes and are neither a route host nor the auth host', async () => {
  const text = withRoutes(
    ['name: a', 'host: a.example.com', 'aliases: [a, a.internal]', 'to: http://a'],
    ['name: b', 'host: b.example.com', 'aliases: [a.internal, b, a.example.com, gate.example.com, b]', 'to: http://b'],
  );
  assert.deepEqual(await problemsOf(text), [
    '10:15: routes[1].aliases[0]: duplicate alias "a.internal" (also routes[0].aliases[1])',
    '10:30: routes[1].aliases[2]: alias "a.example.com" is the host of routes[0]',
    '10:45: routes[1].aliases[3]: alias "gate.example.com" is the auth host (server.authHost)',
    '10:63: routes[1].aliases[4]: duplicate alias "b" (also routes[1].aliases[1])',
  ]);
});

test('certificateSubject keys are subject short names, with a did-you-mean', async () => {
  const text = withRoutes([
    'name: a',
    'host: a.example.com',
    'to: http://a',
    'auth: certificate',
    'allow:',
    '  certificateSubject:',
    '    CN: alice',
    '    cn: bob',
    '    OrganizationalUnit: eng',
    '    emailAddress: [a@example.com, b@example.com]',
  ]);
  assert.deepEqual(await problemsOf(text), [
    '11:9: routes[0].allow.certificateSubject.cn: unknown certificate subject attribute (did you mean "CN"?)',
    '12:9: routes[0].allow.certificateSubject.OrganizationalUnit: unknown certificate subject attribute (use CN, O, OU, C, ST, L, emailAddress, serialNumber, UID, DC)',
  ]);
});

test('login routes without identity.oidc are not a problem (the proxy answers 501)', async () => {
  const c = await configOf(withRoutes(['name: a', 'host: a.example.com', 'to: http://a', 'auth: login+certificate']));
  assert.equal(c.identity.oidc, undefined);
});

test('roles: unique names; grants name an existing route and permission; allow.roles names a role', async () => {
  const text =
    withRoutes(
      ['name: wiki', 'host: wiki.example.com', 'to: http://wiki', 'permissions:', '  - name: read', '    locations: [{ path: / }]'],
      ['name: grafana', 'host: grafana.example.com', 'to: http://grafana', 'allow: { roles: [sre, dev] }'],
    ) + yaml('roles:', '  - name: sre', '    grants: [wiki, "wiki:read", "wiki:write", grafna, "grafana:x"]', '  - name: sre');
  assert.deepEqual(await problemsOf(text), [
    '13:27: routes[1].allow.roles[1]: unknown role "dev"',
    '16:33: roles[0].grants[2]: route "wiki" has no permission "write" (it has read)',
    '16:47: roles[0].grants[3]: unknown route "grafna" (did you mean "grafana"?)',
    '16:55: roles[0].grants[4]: route "grafana" has no permission "x" (it has no permissions)',
    '17:11: roles[1].name: duplicate role name "sre" (also roles[0])',
  ]);
});

test('permission names are unique within a route; connector names are unique', async () => {
  const text =
    withRoutes([
      'name: wiki',
      'host: wiki.example.com',
      'to: http://wiki',
      'permissions:',
      '  - { name: read, locations: [{ path: /a }] }',
      '  - { name: read, locations: [{ path: /b }] }',
    ]) + yaml('connectors:', '  - name: office', '  - name: office');
  assert.deepEqual(await problemsOf(text), [
    '9:17: routes[0].permissions[1].name: duplicate permission "read" (also permissions[0])',
    '12:11: connectors[1].name: duplicate connector name "office" (also connectors[0])',
  ]);
});

test('upstream.tls on an http:// upstream is a problem', async () => {
  const text = withRoutes(
    ['name: a', 'host: a.example.com', 'to: http://a', 'upstream:', '  tls: { serverName: a.internal }'],
    ['name: b', 'host: b.example.com', 'to: https://b', 'upstream:', '  tls: { serverName: b.internal }'],
  );
  assert.deepEqual(await problemsOf(text), ['8:12: routes[0].upstream.tls: upstream TLS settings need an https:// upstream (to is "http://a")']);
});

test('trustedProxies are IP addresses or CIDRs', async () => {
  const text = yaml(
    'server:',
    '  authHost: gate.example.com',
    '  trustedProxies: [10.0.0.0/8, 192.168.1.1, "fd00::/8", "::1", 10.0.0.0/33, 10.0.0/8, lb.example.com]',
  );
  assert.deepEqual(await problemsOf(text), [
    '3:64: server.trustedProxies[4]: "10.0.0.0/33" is not an IP address or a CIDR such as 10.0.0.0/8',
    '3:77: server.trustedProxies[5]: "10.0.0/8" is not an IP address or a CIDR such as 10.0.0.0/8',
    '3:87: server.trustedProxies[6]: "lb.example.com" is not an IP address or a CIDR such as 10.0.0.0/8',
  ]);
});

test('files read at start-up must exist; relative paths resolve against the config directory', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-config-'));
  mkdirSync(join(dir, 'pki'));
  const text = yaml(
    'server:',
    '  authHost: gate.example.com',
    '  tls: { cert: pki/tls.crt, key: /nonexistent/tls.key }',
    'identity:',
    '  certificates:',
    '    trust: [internal, internl, pki]',
    '    crl: [pki/partner.crl, "https://pki.example.com/crl", "ldap://pki.example.com/crl"]',
    'routes:',
    '  - name: a',
    '    host: a.example.com',
    '    to: https://a',
    '    upstream: { tls: { ca: ../elsewhere/ca.pem } }',
  );
  const options = { baseDir: dir };
  assert.deepEqual(await problemsOf(text, options), [
    `3:16: server.tls.cert: file not found: ${join(dir, 'pki/tls.crt')}`,
    '3:34: server.tls.key: file not found: /nonexistent/tls.key',
    `6:23: identity.certificates.trust[1]: file not found: ${join(dir, 'internl')} (did you mean "internal"?)`,
    `6:32: identity.certificates.trust[2]: not a file: ${join(dir, 'pki')}`,
    `7:11: identity.certificates.crl[0]: file not found: ${join(dir, 'pki/partner.crl')}`,
    '7:59: identity.certificates.crl[2]: "ldap://pki.example.com/crl": CRLs are files or http(s) URLs',
    `12:28: routes[0].upstream.tls.ca: file not found: ${join(dir, '../elsewhere/ca.pem')}`,
  ]);
});
