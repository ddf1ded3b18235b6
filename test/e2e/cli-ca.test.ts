/**
 * `gatehouse ca init | issue | revoke | list | crl`, as real child processes through bin/gatehouse.mjs, against a
 * SQLite store that an in-process CA service also follows (as a running Gatehouse would).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { runCli, tempDir } from '../harness/index.ts';
import { openssl, run } from '../pki/support.ts';
import { Keyring } from '../../src/authn/index.ts';
import { InternalCa, type CertificateRecord } from '../../src/ca/index.ts';
import { openSqliteStore, type SqliteStore } from '../../src/store/index.ts';

const SECRETS_KEY = 'a-secrets-key-for-the-ca-cli-test';

/** One line on stderr, `gatehouse: …`, no stack trace, exit 1. */
function assertOneLineError(r: { code: number | null; stdout: string; stderr: string }, pattern: RegExp): void {
  assert.equal(r.code, 1, r.stdout + r.stderr);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0]!, /^gatehouse: /);
  assert.match(lines[0]!, pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
}

describe('gatehouse ca', () => {
  const t = tempDir('gatehouse-cli-ca-');
  const file = (name: string) => join(t.dir, name);
  const config = (name: string, options: { secretsKey?: boolean } = {}) => {
    const path = file(`${name}.yaml`);
    writeFileSync(
      path,
      stringify({
        server: { authHost: 'gate.test' },
        store: { sqlite: { path: `./${name}-data/gatehouse.db` } },
        ...(options.secretsKey === false ? {} : { identity: { secretsKey: SECRETS_KEY } }),
      }),
    );
    return path;
  };
  let main: string;
  let store: SqliteStore;
  let follower: InternalCa;
  const heard: CertificateRecord[] = [];

  before(async () => {
    main = config('main');
  });
  after(async () => {
    follower?.close();
    await store?.close().catch(() => undefined);
    t.cleanup();
  });

  it('has --help on ca and on each ca command', async () => {
    const all = await Promise.all([['ca'], ['ca', 'init'], ['ca', 'issue'], ['ca', 'revoke'], ['ca', 'list'], ['ca', 'crl']].map((cmd) => runCli([...cmd, '--help'])));
    for (const r of all) {
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^Usage: gatehouse ca/);
    }
    for (const cmd of ['init', 'issue', 'revoke', 'list', 'crl']) assert.match(all[0]!.stdout, new RegExp(`\\b${cmd}\\b`));
    assert.match(all[1]!.stdout, /--csr <out>/);
    assert.match(all[1]!.stdout, /--import-cert <crt>/);
    assert.match(all[1]!.stdout, /--import-key <key>/);
    assert.match(all[1]!.stdout, /--force/);
    assert.match(all[1]!.stdout, /ca init -c FILE --import-cert/, 'how to finish an intermediate');
    assert.match(all[2]!.stdout, /--user <email>[\s\S]*--connector <name>[\s\S]*--device <name>[\s\S]*--csr <file>[\s\S]*--days <n>[\s\S]*--out <path>/);
    assert.match(all[4]!.stdout, /--json/);
  });

  it('refuses init without identity.secretsKey in one line, and leaves the store alone', async () => {
    const bare = config('bare', { secretsKey: false });
    const r = await runCli(['ca', 'init', '-c', bare]);
    assertOneLineError(r, /identity\.secretsKey.*--allow-store-key/);
    assert.equal(existsSync(file('bare-data')), false, 'no store was created');
    const allowed = await runCli(['ca', 'init', '-c', bare, '--allow-store-key']);
    assert.equal(allowed.code, 0, allowed.stderr);
    assert.match(allowed.stderr, /warning: its key is sealed with a key kept in the same store/);
  });

  it('init creates a root and prints its certificate; a second init is refused without --force', async () => {
    const r = await runCli(['ca', 'init', '-c', main, '--org', 'Acme']);
    assert.equal(r.code, 0, r.stderr);
    const cert = new X509Certificate(r.stdout);
    assert.equal(cert.subject, 'O=Acme\nCN=Gatehouse internal CA');
    assert.equal(cert.ca, true);
    assert.match(r.stderr, new RegExp(`Created the internal CA CN=Gatehouse internal CA,O=Acme: a root CA, serial ${cert.serialNumber}`));
    writeFileSync(file('ca.crt'), r.stdout);
    assertOneLineError(await runCli(['ca', 'init', '-c', main]), /already exists.*--force/);

    // from here on, an in-process service follows the same store, as a running Gatehouse does
    store = await openSqliteStore(file('main-data/gatehouse.db'), { pollInterval: 20 });
    follower = new InternalCa({ store, keyring: Keyring.fromSecret(Buffer.from(SECRETS_KEY)), secretsKeyConfigured: true });
    await follower.start();
    follower.onRevoked((rec) => heard.push(rec));
    assert.equal(follower.caCertificatePem(), r.stdout);
  });

  it('issue without a CSR writes PATH.crt, PATH.key and PATH.p12 (both 0600) and prints only the p12 password', async () => {
    const out = file('alice');
    const r = await runCli(['ca', 'issue', '-c', main, '--user', 'alice@example.com', '--device', 'laptop', '--out', out]);
    assert.equal(r.code, 0, r.stderr);
    const password = r.stdout.trim();
    assert.match(r.stdout, /^[A-Za-z0-9_-]{20}\n$/);
    assert.match(r.stderr, /Issued certificate [0-9A-F]+ to alice@example\.com \(device laptop\)/);
    for (const ext of ['key', 'p12']) assert.equal(statSync(`${out}.${ext}`).mode & 0o777, 0o600, `${ext} is private`);
    assert.match(await openssl('verify', '-CAfile', file('ca.crt'), `${out}.crt`), /OK/);
    const opened = await openssl('pkcs12', '-in', `${out}.p12`, '-passin', `pass:${password}`, '-nodes');
    assert.match(opened, /BEGIN PRIVATE KEY/);
    assert.match(opened, /subject=O = Acme, CN = alice@example\.com, emailAddress = alice@example\.com/);
    assert.ok(new X509Certificate(readFileSync(`${out}.crt`)).checkPrivateKey(createPrivateKey(readFileSync(`${out}.key`))));
    // the files are never overwritten
    assertOneLineError(await runCli(['ca', 'issue', '-c', main, '--user', 'alice@example.com', '--out', out]), /alice\.crt already exists/);
  });

  it('issue with a CSR writes only PATH.crt, with the subject set by Gatehouse', async () => {
    const csr = file('bob.csr');
    await openssl('req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', file('bob-own.key'), '-out', csr, '-subj', '/CN=admin@example.com/O=Evil');
    const r = await runCli(['ca', 'issue', '-c', main, '--user', 'Bob@Example.com', '--csr', csr, '--days', '30', '--out', file('bob')]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '', 'no password: there is no PKCS#12');
    assert.equal(existsSync(file('bob.key')), false);
    assert.equal(existsSync(file('bob.p12')), false);
    const text = await openssl('x509', '-in', file('bob.crt'), '-noout', '-subject', '-enddate');
    assert.match(text, /subject=O = Acme, CN = bob@example\.com, emailAddress = bob@example\.com/);
    const days = (Date.parse(new X509Certificate(readFileSync(file('bob.crt'))).validTo) - Date.now()) / 86_400_000;
    assert.ok(days > 29.9 && days < 30.1, `${days} days`);
    const connector = await runCli(['ca', 'issue', '-c', main, '--connector', 'office-jenkins', '--csr', csr, '--out', file('jenkins')]);
    assert.equal(connector.code, 0, connector.stderr);
    assert.match(await openssl('x509', '-in', file('jenkins.crt'), '-noout', '-subject'), /OU = gatehouse-connector, CN = office-jenkins/);
  });

  it('issue refuses --user with --connector, neither of them, a bad --days and a missing CSR, in one line each', async () => {
    const results = await Promise.all([
      runCli(['ca', 'issue', '-c', main, '--user', 'a@example.com', '--connector', 'x', '--out', file('x')]),
      runCli(['ca', 'issue', '-c', main, '--out', file('x')]),
      runCli(['ca', 'issue', '-c', main, '--user', 'a@example.com', '--days', 'ten', '--out', file('x')]),
      runCli(['ca', 'issue', '-c', main, '--user', 'a@example.com', '--days', '900', '--out', file('x')]),
      runCli(['ca', 'issue', '-c', main, '--user', 'a@example.com', '--csr', file('missing.csr'), '--out', file('x')]),
    ]);
    assertOneLineError(results[0]!, /--user or --connector, not both/);
    assertOneLineError(results[1]!, /--user EMAIL/);
    assertOneLineError(results[2]!, /--days/);
    assertOneLineError(results[3]!, /days must be a whole number from 1 to 825/);
    assertOneLineError(results[4]!, /cannot read the CSR .*missing\.csr: no such file/);
    assert.equal(existsSync(file('x.crt')), false);
  });

  it('list shows a table, --json and --user', async () => {
    const [table, json, onlyBob] = await Promise.all([
      runCli(['ca', 'list', '-c', main]),
      runCli(['ca', 'list', '-c', main, '--json']),
      runCli(['ca', 'list', '-c', main, '--json', '--user', 'bob@example.com']),
    ]);
    assert.equal(table.code, 0, table.stderr);
    const lines = table.stdout.trim().split('\n');
    assert.match(lines[0]!, /^SERIAL\s+KIND\s+FOR\s+DEVICE\s+ISSUED\s+EXPIRES\s+STATUS$/);
    assert.equal(lines.length, 4);
    assert.match(table.stdout, /device\s+alice@example\.com\s+laptop\s+\S+\s+\S+\s+valid/);
    assert.match(table.stdout, /connector\s+office-jenkins\s+office-jenkins/);
    const rows = JSON.parse(json.stdout) as Array<{ serial: string; user?: string; kind: string; notAfter: string; revoked?: unknown }>;
    assert.deepEqual(rows.map((r) => r.user ?? r.kind), ['alice@example.com', 'bob@example.com', 'connector']);
    assert.match(rows[0]!.notAfter, /^\d{4}-\d\d-\d\dT/);
    assert.deepEqual((JSON.parse(onlyBob.stdout) as Array<{ user: string }>).map((r) => r.user), ['bob@example.com']);
  });

  it('revoke takes the serial in any spelling, a running instance hears of it, and crl lists it; an unknown serial is an error', async () => {
    const serial = new X509Certificate(readFileSync(file('alice.crt'))).serialNumber;
    const spelled = serial.toLowerCase().replace(/(..)(?!$)/g, '$1:');
    const r = await runCli(['ca', 'revoke', '-c', main, spelled, '--reason', 'lost laptop']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`Revoked ${serial} \\(alice@example\\.com, device laptop\\)`));
    const deadline = Date.now() + 1000;
    while (heard.length === 0 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 10));
    assert.deepEqual(heard.map((h) => [h.serial, h.revoked?.reason]), [[serial, 'lost laptop']], 'the change feed told the running instance');
    assert.equal(follower.isRevoked(serial), true);

    const again = await runCli(['ca', 'revoke', '-c', main, serial]);
    assert.equal(again.code, 0);
    assert.match(again.stderr, /was already revoked/);
    const listed = JSON.parse((await runCli(['ca', 'list', '-c', main, '--json', '--user', 'alice@example.com'])).stdout) as Array<{ revoked?: { reason: string } }>;
    assert.equal(listed[0]!.revoked?.reason, 'lost laptop');

    const crl = await runCli(['ca', 'crl', '-c', main]);
    assert.equal(crl.code, 0, crl.stderr);
    assert.match(crl.stdout, /^-----BEGIN X509 CRL-----\n[\s\S]+-----END X509 CRL-----\n$/);
    writeFileSync(file('ca.crl'), crl.stdout);
    const text = await openssl('crl', '-inform', 'PEM', '-in', file('ca.crl'), '-noout', '-text');
    assert.match(text, new RegExp(`Serial Number: ${serial}\\n`));
    assert.match(await openssl('crl', '-in', file('ca.crl'), '-CAfile', file('ca.crt'), '-noout'), /verify OK/);
    // openssl refuses the revoked certificate with that CRL
    const check = await run('openssl', ['verify', '-crl_check', '-CAfile', file('ca.crt'), '-CRLfile', file('ca.crl'), file('alice.crt')]);
    assert.notEqual(check.code, 0);
    assert.match(check.stdout + check.stderr, /certificate revoked/);

    assertOneLineError(await runCli(['ca', 'revoke', '-c', main, 'DEADBEEF']), /no certificate with serial DEADBEEF/);
    assertOneLineError(await runCli(['ca', 'revoke', '-c', main, 'zz-top']), /not a serial number/);
  });

  it('makes an intermediate in two steps (--csr, then --import-cert alone), and imports a CA with --import-cert and --import-key', async () => {
    const root = { key: file('corp-root.key'), cert: file('corp-root.crt') };
    await openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', root.key, '-out', root.cert, '-subj', '/O=Corp/CN=Corp Root', '-days', '800', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
    const inter = config('inter');
    assertOneLineError(await runCli(['ca', 'init', '-c', inter, '--import-cert', root.cert]), /none is pending/);
    const csr = await runCli(['ca', 'init', '-c', inter, '--csr', file('inter.csr')]);
    assert.equal(csr.code, 0, csr.stderr);
    assert.match(csr.stderr, /--import-cert SIGNED\.crt/);
    assertOneLineError(await runCli(['ca', 'issue', '-c', inter, '--user', 'a@example.com', '--out', file('early')]), /waiting for its signed certificate/);
    writeFileSync(file('inter-ext.cnf'), 'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n');
    await openssl('x509', '-req', '-in', file('inter.csr'), '-CA', root.cert, '-CAkey', root.key, '-set_serial', '0x1234', '-days', '700', '-extfile', file('inter-ext.cnf'), '-out', file('inter.crt'));
    writeFileSync(file('inter-bundle.crt'), readFileSync(file('inter.crt'), 'utf8') + readFileSync(root.cert, 'utf8'));
    const done = await runCli(['ca', 'init', '-c', inter, '--import-cert', file('inter-bundle.crt')]);
    assert.equal(done.code, 0, done.stderr);
    assert.match(done.stderr, /Activated the internal CA CN=Gatehouse internal CA,O=Gatehouse: an intermediate CA/);
    const leaf = await runCli(['ca', 'issue', '-c', inter, '--user', 'dan@example.com', '--out', file('dan')]);
    assert.equal(leaf.code, 0, leaf.stderr);
    // dan.crt carries the intermediate after the certificate: the root alone verifies it
    assert.match(await openssl('verify', '-CAfile', root.cert, '-untrusted', file('dan.crt'), file('dan.crt')), /OK/);
    assert.match(await openssl('verify', '-CAfile', root.cert, '-untrusted', file('inter.crt'), file('dan.crt')), /OK/);

    const imported = config('imported');
    const imp = await runCli(['ca', 'init', '-c', imported, '--import-cert', root.cert, '--import-key', root.key]);
    assert.equal(imp.code, 0, imp.stderr);
    assert.match(imp.stderr, /Imported the internal CA CN=Corp Root,O=Corp: an imported CA/);
    assertOneLineError(await runCli(['ca', 'init', '-c', imported, '--import-key', root.key]), /--import-key needs --import-cert/);
    assertOneLineError(await runCli(['ca', 'init', '-c', imported, '--csr', file('x.csr'), '--import-cert', root.cert]), /does not go with/);
  });
});
