import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { TestCa, runCli, tempDir, type CertFiles } from '../harness/index.ts';

describe('gatehouse command line', () => {
  const t = tempDir();
  let ca: TestCa;
  let server: CertFiles;
  const write = (name: string, text: string) => {
    const file = join(t.dir, name);
    writeFileSync(file, text);
    return file;
  };
  const valid = () => ({
    server: { https: '127.0.0.1:0', authHost: 'gate.test', tls: { cert: server.cert, key: server.key } },
    identity: { certificates: { trust: [ca.cert] } },
    routes: [
      { name: 'app', host: 'app.corp.test', aliases: ['app'], to: 'http://10.0.0.3:3000', auth: 'public' },
      { name: 'all', host: '*.corp.test', to: 'http://{1}', auth: 'certificate', allow: { certificateSubject: { OU: 'sre' } } },
    ],
  });

  before(() => {
    ca = new TestCa(t.dir);
    server = ca.server(['*.corp.test', 'gate.test']);
  });
  after(() => t.cleanup());

  it('has --help on the program and on every command', async () => {
    const top = await runCli(['--help']);
    assert.equal(top.code, 0);
    for (const cmd of ['serve', 'check', 'pac', 'demo']) {
      assert.match(top.stdout, new RegExp(`\\b${cmd}\\b`));
      const r = await runCli([cmd, '--help']);
      assert.equal(r.code, 0, `${cmd} --help`);
      assert.match(r.stdout, new RegExp(`Usage: gatehouse ${cmd}`));
    }
  });

  it('check exits 0 for a valid file', async () => {
    const r = await runCli(['check', '-c', write('ok.yaml', stringify(valid()))]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stderr, /ok \(2 routes\)/);
  });

  it('check prints every problem as FILE:LINE:COL: message and exits 1', async () => {
    const file = write(
      'bad.yaml',
      `server:
  https: 127.0.0.1:0
  authHost: gate.test
  tls: { cert: ${server.cert}, key: ${server.key} }
routes:
  - name: app
    host: app.corp.test
    to: http://10.0.0.3:3000
    upsteam: { maxBodySize: 1m }
  - name: b
    host: b.corp.test
    to: http://10.0.0.4
    upstream: { timeouts: { read: 5x } }
`,
    );
    const r = await runCli(['check', '-c', file]);
    assert.equal(r.code, 1);
    const lines = r.stdout.trim().split('\n');
    assert.equal(lines.length, 2, r.stdout);
    assert.match(lines[0]!, new RegExp(`^${file.replace(/[.]/g, '\\.')}:9:5: routes\\[0\\]\\.upsteam: unknown key \\(did you mean "upstream"\\?\\)`));
    assert.match(lines[1]!, new RegExp(`^${file.replace(/[.]/g, '\\.')}:13:35: routes\\[1\\]\\.upstream\\.timeouts\\.read: `));
  });

  it('check runs the serve path: a key that does not match its certificate is a problem at its line', async () => {
    const other = ca.server(['other.test']);
    const cfg = valid();
    cfg.server.tls.key = other.key;
    const file = write('mismatch.yaml', stringify(cfg));
    const r = await runCli(['check', '-c', file]);
    assert.equal(r.code, 1);
    assert.match(r.stdout, new RegExp(`^${file.replace(/[.]/g, '\\.')}:\\d+:\\d+: server\\.tls: the certificate and key do not form a usable pair`));
  });

  it('check reports a missing file in one line', async () => {
    const r = await runCli(['check', '-c', join(t.dir, 'missing.yaml')]);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /missing\.yaml:1:1: cannot read the configuration file: no such file/);
  });

  it('errors are one line on stderr without a stack trace', async () => {
    const r = await runCli(['serve', '-c', join(t.dir, 'missing.yaml')]);
    assert.notEqual(r.code, 0);
    const lines = r.stderr.trim().split('\n');
    assert.match(lines[0]!, /^gatehouse: /);
    assert.doesNotMatch(r.stderr, /\n\s+at /);
    const unknown = await runCli(['frobnicate']);
    assert.notEqual(unknown.code, 0);
    assert.match(unknown.stderr, /unknown command/);
  });

  it('pac prints the proxy auto-config', async () => {
    const r = await runCli(['pac', '-c', write('pac.yaml', stringify(valid()))]);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /function FindProxyForURL/);
    assert.match(r.stdout, /"app": true/);
    assert.match(r.stdout, /HTTPS gate\.test:0|HTTPS gate\.test:\d+/);
  });
});
