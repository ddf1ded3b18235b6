import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { TestCa, runCli, tempDir, type CertFiles } from '../harness/index.ts';

describe('gatehouse explain', () => {
  const t = tempDir();
  let file: string;
  let ca: TestCa;
  let eng: CertFiles;
  let sales: CertFiles;
  let revoked: CertFiles;

  before(() => {
    ca = new TestCa(t.dir);
    const server = ca.server(['*.corp.test', 'gate.test']);
    eng = ca.client('/CN=alice/OU=engineering');
    sales = ca.client('/CN=sam/OU=sales');
    revoked = ca.client('/CN=old/OU=engineering');
    ca.revoke(revoked);
    file = join(t.dir, 'g.yaml');
    writeFileSync(
      file,
      stringify({
        server: { https: '127.0.0.1:0', authHost: 'gate.test', tls: { cert: server.cert, key: server.key } },
        identity: {
          oidc: { issuer: 'https://idp.example.com', clientId: 'gh' },
          admins: ['root@example.com'],
          certificates: { trust: [ca.cert], crl: [ca.crl()] },
        },
        routes: [
          { name: 'grafana', host: 'grafana.corp.test', to: 'http://10.0.0.3:3000', auth: 'login', allow: { domains: ['example.com'] } },
          {
            name: 'wiki',
            host: 'wiki.corp.test',
            to: 'http://10.0.0.4',
            auth: 'login',
            permissions: [{ name: 'read', locations: [{ methods: ['GET', 'HEAD'], path: '/api/' }] }],
          },
          { name: 'ops', host: 'ops.corp.test', to: 'http://10.0.0.5', auth: 'certificate', allow: { certificateSubject: { OU: 'engineering' } } },
        ],
        roles: [{ name: 'readers', grants: ['wiki:read'], members: ['bob@partner.test'] }],
      }),
    );
  });
  after(() => t.cleanup());

  const explain = async (...args: string[]) => {
    const r = await runCli(['explain', '-c', file, ...args]);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout.trim().split('\n')[0]!;
  };

  it('names the rule that allows', async () => {
    assert.equal(await explain('--user', 'alice@example.com', 'https://grafana.corp.test/'), 'allow: allow.domains example.com');
    assert.equal(await explain('--user', 'root@example.com', 'https://wiki.corp.test/admin'), 'allow: root admin');
    assert.match(await explain('--user', 'bob@partner.test', 'https://wiki.corp.test/api/pages'), /^allow: role readers grants wiki:read/);
    assert.match(await explain('--cert', eng.cert, 'https://ops.corp.test/'), /^allow: allow.certificateSubject OU=engineering/);
  });

  it('names the reason that denies', async () => {
    assert.match(await explain('https://grafana.corp.test/'), /^deny: .*\(ERR_NOT_SIGNED_IN\)$/);
    assert.match(await explain('--user', 'eve@other.test', 'https://grafana.corp.test/'), /^deny: .*\(ERR_POLICY_DENIED\)$/);
    assert.match(await explain('--user', 'bob@partner.test', '--method', 'delete', 'https://wiki.corp.test/api/pages'), /^deny: .*DELETE \/api\/pages.*\(ERR_PERMISSION_DENIED\)$/);
    assert.match(await explain('--user', 'bob@partner.test', 'https://wiki.corp.test/api/../admin'), /^deny: .*\/admin.*\(ERR_PERMISSION_DENIED\)$/);
    assert.match(await explain('https://ops.corp.test/'), /\(ERR_CERT_MISSING\)$/);
    assert.match(await explain('--cert', sales.cert, 'https://ops.corp.test/'), /\(ERR_CERT_SUBJECT_MISMATCH\)$/);
    assert.match(await explain('--cert', revoked.cert, 'https://ops.corp.test/'), /\(ERR_CERT_REVOKED\)$/);
    assert.match(await explain('https://nope.corp.test/'), /^deny: no route is published at nope\.corp\.test \(ERR_ROUTE_NOT_FOUND\)$/);
  });

  it('lists the rules it considered with --verbose', async () => {
    const r = await runCli(['explain', '-c', file, '--verbose', '--user', 'bob@partner.test', 'https://wiki.corp.test/api/x']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /route: wiki \(auth: login\), GET \/api\/x/);
    assert.match(r.stdout, /✓ .*readers/);
  });
});
