// Loading a good file: defaults from SPEC.md, deep freeze, relative paths, and the example config.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig, loadConfigText } from '../../src/config/index.ts';
import { Secret } from '../../src/core/index.ts';
import { configOf, minimal, yaml } from './helpers.ts';

test('defaults from SPEC.md are applied to a route that leaves them out', async () => {
  const c = await configOf(minimal + yaml('routes:', '  - name: app', '    host: App.Example.com', '    to: http://10.0.0.3:3000'));
  const route = c.routes[0]!;
  assert.equal(route.host, 'app.example.com');
  assert.equal(route.auth, 'login');
  assert.equal(route.upstream.hostHeader, undefined); // the upstream URL's host
  assert.deepEqual(route.upstream.timeouts, { connect: 2000, send: 60_000, read: 180_000 });
  assert.equal(route.upstream.maxBodySize, 10_485_760);
  assert.equal(route.upstream.rewriteRedirects, true);
  assert.equal(route.upstream.allowLoopback, false);
  assert.equal(route.identityHeaders, true);
  assert.deepEqual(route.aliases, []);
  assert.deepEqual(route.permissions, []);
  assert.deepEqual(c.server.https, { host: '0.0.0.0', port: 443 });
  assert.equal(c.server.workers, 'auto');
  assert.deepEqual(c.store, { sqlite: { path: '/cfg/data/gatehouse.db' } });
  assert.deepEqual(c.identity.certificates, { trust: [], crl: [], crlRefresh: 300_000 });
  assert.deepEqual(c.roles, []);
  assert.deepEqual(c.connectors, []);
});

test('the config is deep-frozen, and defaults are not shared between loads', async () => {
  const a = await configOf(minimal + yaml('routes:', '  - name: app', '    host: app.example.com', '    to: http://app'));
  assert.ok(Object.isFrozen(a));
  assert.ok(Object.isFrozen(a.server.https));
  assert.ok(Object.isFrozen(a.routes));
  assert.ok(Object.isFrozen(a.routes[0]!.upstream.timeouts));
  assert.ok(Object.isFrozen(a.store.sqlite));
  assert.throws(() => {
    (a.routes as unknown as unknown[]).push({});
  }, TypeError);
  // A second load elsewhere resolves its own default store path: the first load's frozen objects are not reused.
  const b = await loadConfigText(minimal, '/other/gatehouse.yaml', { env: {} });
  assert.ok(b.ok);
  assert.equal(b.config.store.sqlite?.path, '/other/data/gatehouse.db');
  assert.equal(a.store.sqlite?.path, '/cfg/data/gatehouse.db');
});

test('secrets stay Secret: printed as [redacted]', async () => {
  const c = await configOf(
    minimal + yaml('identity:', '  secretsKey: 0123456789abcdef', '  oidc: { issuer: "https://idp.example.com", clientId: gh, clientSecret: s3cret }'),
  );
  assert.ok(c.identity.secretsKey instanceof Secret);
  assert.equal(c.identity.oidc?.clientSecret?.reveal(), 's3cret');
  assert.ok(!JSON.stringify(c).includes('s3cret'));
});

test('relative paths resolve against the config file directory; absolute paths and URLs are kept', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-config-'));
  for (const f of ['tls.crt', 'tls.key', 'partner.pem', 'partner.crl', 'ca.pem']) writeFileSync(join(dir, f), 'x');
  const file = join(dir, 'gatehouse.yaml');
  writeFileSync(
    file,
    yaml(
      'server:',
      '  authHost: gate.example.com',
      '  tls: { cert: tls.crt, key: ./tls.key }',
      'store: { sqlite: { path: state/g.db } }',
      'identity:',
      '  certificates:',
      `    trust: [internal, partner.pem, ${join(dir, 'ca.pem')}]`,
      '    crl: [partner.crl, "https://pki.example.com/crl"]',
      'routes:',
      '  - name: a',
      '    host: a.example.com',
      '    to: https://a',
      '    upstream: { tls: { ca: ca.pem } }',
    ),
  );
  const r = await loadConfig(file);
  if (!r.ok) assert.fail(JSON.stringify(r.problems));
  assert.equal(r.file, file);
  assert.equal(r.baseDir, dir);
  const c = r.config;
  assert.deepEqual(c.server.tls, { cert: join(dir, 'tls.crt'), key: join(dir, 'tls.key'), minVersion: 'TLSv1.2' });
  assert.equal(c.store.sqlite?.path, join(dir, 'state/g.db'));
  assert.deepEqual(c.identity.certificates.trust, ['internal', join(dir, 'partner.pem'), join(dir, 'ca.pem')]);
  assert.deepEqual(c.identity.certificates.crl, [join(dir, 'partner.crl'), 'https://pki.example.com/crl']);
  assert.equal(c.routes[0]!.upstream.tls.ca, join(dir, 'ca.pem'));
});

test('examples/gatehouse.yaml loads once the files it names exist', async () => {
  const example = fileURLToPath(new URL('../../examples/gatehouse.yaml', import.meta.url));
  const etc = mkdtempSync(join(tmpdir(), 'gatehouse-etc-'));
  const env = { GATEHOUSE_ETC: etc, GATEHOUSE_OIDC_SECRET: 'oidc-client-secret', GATEHOUSE_KEY: 'a-secrets-key-of-32-characters!!' };

  const before = await loadConfig(example, { env });
  assert.equal(before.ok, false);
  if (!before.ok) {
    assert.deepEqual(
      before.problems.map((p) => p.message.replace(etc, 'ETC')),
      [
        'server.tls.cert: file not found: ETC/tls.crt',
        'server.tls.key: file not found: ETC/tls.key',
        'identity.certificates.trust[1]: file not found: ETC/partner-ca.pem',
        'identity.certificates.crl[0]: file not found: ETC/partner.crl',
        'routes[3].upstream.tls.ca: file not found: ETC/wiki-ca.pem',
      ],
    );
  }

  for (const f of ['tls.crt', 'tls.key', 'partner-ca.pem', 'partner.crl', 'wiki-ca.pem']) writeFileSync(join(etc, f), 'dummy');
  const r = await loadConfig(example, { env });
  if (!r.ok) assert.fail(JSON.stringify(r.problems, null, 2));
  const c = r.config;
  assert.equal(c.server.authHost, 'gate.corp.example.com');
  assert.deepEqual(
    c.routes.map((x) => [x.name, x.host, x.to ?? x.tcp, x.auth]),
    [
      ['corp-hosts', '*.corp.example.com', 'http://{1}', 'certificate'],
      ['corp-ports', '*-*.corp.example.com', 'http://{1}:{2}', 'certificate'],
      ['grafana', 'grafana.example.com', 'http://10.0.0.3:3000', 'login'],
      ['wiki', 'wiki.example.com', 'https://wiki.internal:8443', 'login+certificate'],
      ['jenkins', 'jenkins.example.com', 'connector:office-jenkins', 'login'],
      ['bastion', 'bastion.example.com', '10.0.0.5:22', 'login'],
      ['status', 'status.example.com', 'http://10.0.0.9:8080', 'public'],
    ],
  );
  assert.equal(c.routes[3]!.upstream.tls.ca, join(etc, 'wiki-ca.pem'));
  assert.deepEqual(c.routes[2]!.aliases, ['grafana', 'grafana.internal']);
  assert.equal(c.identity.oidc?.clientSecret?.reveal(), 'oidc-client-secret');
  assert.equal(c.store.sqlite?.path, join(example, '..', 'data/gatehouse.db'));
});
