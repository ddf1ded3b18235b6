// How problems are reported: exact positions, dotted paths, hints for misspelt and renamed keys, all at once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatProblems, loadConfig, type Problem } from '../../src/config/index.ts';
import { minimal, problemsOf, yaml } from './helpers.ts';

const routeYaml = (...lines: string[]) => minimal + yaml('routes:', '  - name: app', '    host: app.example.com', ...lines.map((l) => `    ${l}`));

test('an unknown key points at the key, with a did-you-mean from the keys allowed there', async () => {
  assert.deepEqual(await problemsOf(routeYaml('to: http://app', 'upsteam:', '  maxBodySize: 1m')), [
    '7:5: routes[0].upsteam: unknown key (did you mean "upstream"?)',
  ]);
  assert.deepEqual(await problemsOf(routeYaml('to: http://app', 'upstream:', '  max_body_size: 1m', '  timeouts: { conect: 1s }')), [
    '8:7: routes[0].upstream.max_body_size: unknown key (did you mean "maxBodySize"?)',
    '9:19: routes[0].upstream.timeouts.conect: unknown key (did you mean "connect"?)',
  ]);
});

test('an unknown key with nothing close lists what is allowed', async () => {
  assert.deepEqual(await problemsOf(yaml('server:', '  authHost: gate.example.com', '  tls: { cert: a, key: b, ciphers: x }')), [
    '3:27: server.tls.ciphers: unknown key (allowed here: cert, key, minVersion)',
  ]);
});

test('renamed keys say what to use now', async () => {
  const text = yaml(
    'server:',
    '  authHost: gate.example.com',
    '  listen: 0.0.0.0:443',
    'identity:',
    '  oidc: { issuerUrl: "https://idp.example.com", issuer: "https://idp.example.com", clientId: gh }',
    'routes:',
    '  - name: a',
    '    hostname: a.example.com',
    '    target: http://a',
    '  - name: b',
    '    host: b.example.com',
    '    to: http://b',
    '    upstream: { url: http://b }',
  );
  assert.deepEqual(await problemsOf(text), [
    '3:3: server.listen: unknown key (renamed: use server.https)',
    '5:11: identity.oidc.issuerUrl: unknown key (renamed: use identity.oidc.issuer)',
    '7:5: routes[0].host: required key is missing',
    '8:5: routes[0].hostname: unknown key (renamed: use routes[0].host)',
    '9:5: routes[0].target: unknown key (renamed: use routes[0].to)',
    '13:17: routes[1].upstream.url: unknown key (renamed: use routes[1].to)',
  ]);
});

test('an upstream written as a URL string says where the URL goes now', async () => {
  assert.deepEqual(await problemsOf(routeYaml('upstream: http://10.0.0.3:3000')), [
    '6:15: routes[0].upstream: expected a mapping, got "http://10.0.0.3:3000" (the upstream URL moved to routes[0].to; upstream holds its options)',
  ]);
});

test('a missing required key points at the mapping that lacks it; an empty one at its key', async () => {
  assert.deepEqual(await problemsOf(yaml('server:', '  https: 0.0.0.0:443', 'routes:', '  - host: a.example.com', '    to: http://a')), [
    '2:3: server.authHost: required key is missing',
    '4:5: routes[0].name: required key is missing',
  ]);
  assert.deepEqual(await problemsOf(yaml('routes: []')), ['1:1: server: required key is missing']);
  assert.deepEqual(await problemsOf(yaml('server:', '  authHost:', '  http: 0.0.0.0:80')), ['2:3: server.authHost: required, but has no value']);
});

test('an empty section counts as absent, so its defaults apply', async () => {
  const { configOf } = await import('./helpers.ts');
  const c = await configOf(minimal + yaml('identity:', '  # oidc: commented out', 'routes:'));
  assert.deepEqual(c.identity.session, { ttl: 43_200_000, idle: 7_200_000 });
  assert.deepEqual(c.routes, []);
});

test('wrong types and values say what was expected and what was found', async () => {
  assert.deepEqual(
    await problemsOf(
      routeYaml('to: http://app', 'auth: logn', 'aliases: app', 'identityHeaders: "yes"', 'permissions:', '  - name: Read', '    locations: []'),
    ),
    [
      '7:11: routes[0].auth: "logn" is not one of login, certificate, login+certificate, public (did you mean "login"?)',
      '8:14: routes[0].aliases: expected a list, got "app"',
      '9:22: routes[0].identityHeaders: expected true or false, got "yes"',
      '11:15: routes[0].permissions[0].name: "Read" must be lower-case letters, digits and hyphens',
      '12:20: routes[0].permissions[0].locations: must not be empty',
    ],
  );
});

test('several problems in one file are all reported, in file order', async () => {
  const text = yaml(
    'server:',
    '  authHost: Not A Host',
    '  wokers: 2',
    'store: {}',
    'identity:',
    '  secretsKey: short',
    '  admins: [root]',
    'routes:',
    '  - name: a',
    '    host: a.example.com',
    '    to: http://a',
    '    upstream:',
    '      timeouts:',
    '        read: 5x',
    'roles: nope',
  );
  assert.deepEqual(await problemsOf(text), [
    '2:13: server.authHost: "Not A Host" must be a host name (letters, digits, hyphens and dots)',
    '3:3: server.wokers: unknown key (did you mean "workers"?)',
    '4:8: store: choose exactly one store: sqlite or etcd',
    '6:15: identity.secretsKey: must be at least 16 characters',
    '7:12: identity.admins[0]: "root" must be an email address',
    '14:15: routes[0].upstream.timeouts.read: "5x" is not a duration (use e.g. 90s, 2m, 12h, 1h30m, 250ms)',
    '15:8: roles: expected a list, got "nope"',
  ]);
});

test('YAML syntax errors are reported at their position, and nothing else is checked', async () => {
  assert.deepEqual(await problemsOf(yaml('server:', '  authHost: gate.example.com', 'routes: [a, b', 'roles: []')), [
    '4:1: Flow sequence in block collection must be sufficiently indented and end with a ]',
  ]);
  assert.deepEqual(await problemsOf(yaml('server:', '  authHost: "unterminated', 'routes: []')), [
    '4:1: Missing closing "quote',
  ]);
});

test('duplicate keys are problems at the second key', async () => {
  assert.deepEqual(await problemsOf(yaml('server:', '  authHost: a.example.com', '  authHost: b.example.com', 'server: {}')), [
    '3:3: duplicate key "authHost"',
    '4:1: duplicate key "server"',
  ]);
});

test('an empty file, a comment-only file and a non-mapping top level are problems at 1:1', async () => {
  assert.deepEqual(await problemsOf(''), ['1:1: the configuration is empty (expected server:, routes: and so on)']);
  assert.deepEqual(await problemsOf('# nothing yet\n\n'), ['1:1: the configuration is empty (expected server:, routes: and so on)']);
  assert.deepEqual(await problemsOf('- server\n- routes\n'), ['1:1: the configuration must be a mapping (server:, routes: and so on)']);
  assert.deepEqual(await problemsOf('just text'), ['1:1: the configuration must be a mapping (server:, routes: and so on)']);
  assert.deepEqual(await problemsOf('a: 1\n---\nb: 2\n'), ['2:1: Source contains multiple documents; please use YAML.parseAllDocuments()']);
});

test('problems inside a merged anchor point at the anchor, where the text is', async () => {
  const text = yaml(
    'server:',
    '  authHost: gate.example.com',
    'routes:',
    '  - &base',
    '    name: a',
    '    host: a.example.com',
    '    to: http://a',
    '    auth: nobody',
    '  - <<: *base',
    '    name: b',
    '    host: b.example.com',
  );
  assert.deepEqual(await problemsOf(text), [
    '8:11: routes[0].auth: "nobody" is not one of login, certificate, login+certificate, public',
    '8:11: routes[1].auth: "nobody" is not one of login, certificate, login+certificate, public',
  ]);
});

test('a file that cannot be read is one problem at 1:1', async () => {
  const r = await loadConfig('/nonexistent/gatehouse.yaml');
  assert.equal(r.ok, false);
  if (!r.ok) assert.deepEqual(r.problems, [{ file: '/nonexistent/gatehouse.yaml', line: 1, col: 1, message: 'cannot read the configuration file: no such file' }]);
});

test('formatProblems prints FILE:LINE:COL: message, one per line, sorted by position', () => {
  const problems: Problem[] = [
    { file: 'g.yaml', line: 10, col: 3, message: 'c' },
    { file: 'g.yaml', line: 2, col: 9, message: 'b' },
    { file: 'g.yaml', line: 2, col: 1, message: 'a' },
  ];
  assert.equal(formatProblems(problems), 'g.yaml:2:1: a\ng.yaml:2:9: b\ng.yaml:10:3: c');
  assert.equal(formatProblems([]), '');
});

test('secret settings are never quoted back, even when written in the file', async () => {
  const problems = await problemsOf(minimal + yaml('identity:', '  oidc: { issuer: "https://idp.example.com", clientId: gh, clientSecret: 8675309 }'));
  assert.deepEqual(problems, ['4:74: identity.oidc.clientSecret: expected a string, got a number']);
});

test('a value that may be one of several shapes is reported against the shape it has', async () => {
  const text = minimal + yaml('routes:', '  - name: a', '    host: a.example.com', '    to: http://a', '    auth: certificate', '    allow:', '      certificateSubject: { CN: 3, OU: [eng, 4] }');
  assert.deepEqual(await problemsOf(text), [
    '9:33: routes[0].allow.certificateSubject.CN: expected a string or a list, got 3',
    '9:46: routes[0].allow.certificateSubject.OU[1]: expected a string, got 4',
  ]);
});
