// ${NAME} expansion: every string value, escapes, positions of missing variables, and no secrets in messages.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { configOf, minimal, problemsOf, yaml } from './helpers.ts';

const env = { ETC: '/etc/gh', HOST: 'gate.example.com', KEY: 'k'.repeat(20), WORKERS: '4', PARTIAL: 'corp', EMPTY: '' };

test('expands variables anywhere in a value, several per value, in lists and flow mappings when quoted', async () => {
  const c = await configOf(
    yaml(
      'server:',
      '  authHost: ${HOST}',
      'identity:',
      '  secretsKey: ${KEY}',
      '  allowedDomains: ["${PARTIAL}.example.com", "x${EMPTY}.example.com"]',
      'store: { sqlite: { path: "${ETC}/${PARTIAL}.db" } }',
    ),
    { env },
  );
  assert.equal(c.server.authHost, 'gate.example.com');
  assert.equal(c.identity.secretsKey?.reveal(), 'k'.repeat(20));
  assert.deepEqual(c.identity.allowedDomains, ['corp.example.com', 'x.example.com']);
  assert.equal(c.store.sqlite?.path, '/etc/gh/corp.db');
});

test('$${NAME} is a literal ${NAME}; a lone $ is kept', async () => {
  const c = await configOf(
    minimal + yaml('roles:', '  - name: r', '    description: costs $5 and $${NOT_EXPANDED} stays'),
    { env },
  );
  assert.equal(c.roles[0]!.description, 'costs $5 and ${NOT_EXPANDED} stays');
});

test('a missing variable is a problem at the value that names it; every one is reported', async () => {
  const text = yaml(
    'server:',
    '  authHost: gate.example.com',
    '  tls:',
    '    cert: ${NOPE}/tls.crt',
    '    key: "${ALSO_NOPE}/tls.key"',
    'identity:',
    '  secretsKey: ${KEY}${THIRD}',
  );
  assert.deepEqual(await problemsOf(text, { env }), [
    '4:11: environment variable NOPE is not set',
    '5:10: environment variable ALSO_NOPE is not set',
    '7:15: environment variable THIRD is not set',
  ]);
});

test('a bad reference is reported, and the value is not complained about again', async () => {
  assert.deepEqual(await problemsOf(yaml('server:', '  authHost: ${not-a-name}', '  http: ${UNCLOSED'), { env }), [
    '2:13: "${not-a-name}" is not a variable reference (names are letters, digits and _)',
    '3:9: "${" without a closing "}" (write $${ for a literal ${)',
  ]);
});

test('problems elsewhere are still reported next to a missing variable', async () => {
  assert.deepEqual(await problemsOf(yaml('server:', '  authHost: ${NOPE}', '  wrokers: 2'), { env }), [
    '2:13: environment variable NOPE is not set',
    '3:3: server.wrokers: unknown key (did you mean "workers"?)',
  ]);
});

test('an unquoted value that becomes a number or boolean is one; a quoted one stays text', async () => {
  const c = await configOf(
    yaml('server:', '  authHost: gate.example.com', '  workers: ${WORKERS}', '  accessLog: ${OFF}', 'roles:', '  - name: r', '    description: "${WORKERS}"'),
    { env: { ...env, OFF: 'false' } },
  );
  assert.equal(c.server.workers, 4);
  assert.equal(c.server.accessLog, false);
  assert.equal(c.roles[0]!.description, '4');
});

test('values from the environment are never quoted back in messages (they may be secrets)', async () => {
  const problems = await problemsOf(
    yaml('server:', '  authHost: gate.example.com', 'identity:', '  secretsKey: ${NUMERIC}', '  oidc:', '    issuer: ${SECRETISH}', '    clientId: x'),
    { env: { NUMERIC: '1234567890123456', SECRETISH: 'hunter2-hunter2' } },
  );
  assert.deepEqual(problems, [
    '4:15: identity.secretsKey: expected a string, got a number from the environment (quote the value, "${NAME}", to keep it text)',
    '6:13: identity.oidc.issuer: a string from the environment is not a URL',
  ]);
  assert.ok(!problems.join('\n').includes('hunter2'));
});

test('keys are not expanded, and the process environment is the default', async () => {
  process.env.GATEHOUSE_TEST_AUTH_HOST = 'from-process.example.com';
  try {
    const { loadConfigText } = await import('../../src/config/index.ts');
    const r = await loadConfigText('server:\n  authHost: ${GATEHOUSE_TEST_AUTH_HOST}\n', '/cfg/g.yaml');
    assert.ok(r.ok);
    assert.equal(r.config.server.authHost, 'from-process.example.com');
  } finally {
    delete process.env.GATEHOUSE_TEST_AUTH_HOST;
  }
  assert.deepEqual(await problemsOf(minimal + '${X}: 1\n', { env: { X: 'routes' } }), ['3:1: ["${X}"]: unknown key (allowed here: server, store, identity, routes, roles, connectors)']);
});
