/**
 * Issuing device and connector certificates: a CSR signed with the subject forced to the user and checked by
 * openssl, a generated key handed back once in a PKCS#12 that openssl and curl open, and the checks on input.
 */
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import * as https from 'node:https';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { TLSSocket } from 'node:tls';
import type { InternalCa } from '../../src/ca/index.ts';
import { Worlds, dbPath, listenLocal, makeTempDir, openssl, opensslRoot, refused, run, type TempDir } from './support.ts';

const DAY = 86_400_000;

function sameKey(a: string, b: string): boolean {
  const jwk = (pem: string): string => JSON.stringify(createPrivateKey(pem).export({ format: 'jwk' }));
  return jwk(a) === jwk(b);
}

describe('issuing certificates', () => {
  let dir: TempDir;
  const worlds = new Worlds();
  let ca: InternalCa;
  let caFile: string;

  /** A CSR made by openssl asking for a subject, SANs and CA:TRUE, none of which it gets. */
  async function opensslCsr(name: string, keyArgs = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256']): Promise<{ csr: string; key: string }> {
    const csr = join(dir.path, `${name}.csr`);
    const key = join(dir.path, `${name}.key`);
    await openssl('req', '-new', ...keyArgs, '-nodes', '-keyout', key, '-out', csr, '-subj', '/O=Evil Corp/CN=root@example.com', '-addext', 'subjectAltName=DNS:evil.example.com,email:root@example.com', '-addext', 'basicConstraints=critical,CA:TRUE');
    return { csr, key };
  }

  before(async () => {
    dir = await makeTempDir();
    ({ ca } = await worlds.open(dbPath(dir.path, 'main'), { deviceSubject: { OU: 'engineering' } }));
    await ca.createRoot({ by: 'cli', organisation: 'Acme' });
    caFile = await dir.write('ca.crt', ca.caBundlePem());
  });
  after(async () => {
    await worlds.closeAll();
    await dir.remove();
  });

  it('signs a CSR for its key only: the subject is forced to the user, the requested names and CA flag are ignored, openssl verifies it', async () => {
    const { csr } = await opensslCsr('ann');
    const issued = await ca.issue({ user: 'Ann@Example.com', device: 'laptop', csrPem: await readFile(csr, 'utf8'), issuedBy: 'root@example.com' });
    assert.equal(issued.keyPem, undefined);
    assert.equal(issued.p12, undefined);
    assert.equal(issued.p12Password, undefined);
    assert.equal(issued.chainPem, '', 'a root CA: nothing to send after the certificate');
    const file = await dir.write('ann.crt', issued.certPem);
    const text = await openssl('x509', '-in', file, '-noout', '-text');
    assert.match(text, /Subject: O = Acme, OU = engineering, CN = ann@example\.com, emailAddress = ann@example\.com\n/);
    assert.match(text, /X509v3 Subject Alternative Name: \n\s+email:ann@example\.com\n/);
    assert.doesNotMatch(text, /evil|root@example\.com/i);
    assert.match(text, /CA:FALSE/);
    assert.match(text, /TLS Web Client Authentication/);
    assert.match(await openssl('verify', '-CAfile', caFile, file), /ann\.crt: OK/);
    // the certificate carries the CSR's key
    const csrKey = await openssl('req', '-in', csr, '-noout', '-pubkey');
    assert.equal(new X509Certificate(issued.certPem).publicKey.export({ type: 'spki', format: 'pem' }), csrKey.replace(/^[\s\S]*?(-----BEGIN PUBLIC KEY)/, '$1'));

    const r = issued.record;
    assert.deepEqual(
      { kind: r.kind, user: r.user, device: r.device, keySource: r.keySource, issuedBy: r.issuedBy, serial: r.serial },
      { kind: 'device', user: 'ann@example.com', device: 'laptop', keySource: 'csr', issuedBy: 'root@example.com', serial: new X509Certificate(issued.certPem).serialNumber },
    );
    assert.equal(r.subject, 'emailAddress=ann@example.com,CN=ann@example.com,OU=engineering,O=Acme');
    assert.ok(Math.abs(r.notAfter - (Date.now() + 365 * DAY)) < 5000, 'valid for 365 days by default');
    assert.equal(r.caSerial, ca.info()!.serial);
    assert.deepEqual(await ca.get(r.serial.toLowerCase().replace(/(..)(?!$)/g, '$1:')), r);
    assert.equal(ca.recordOf(r.serial)?.serial, r.serial);
    assert.equal(ca.userOf(r.serial), 'ann@example.com');
    assert.equal(ca.isRevoked(r.serial), false);
  });

  it('refuses a CSR whose signature does not verify, that is no CSR, or whose key is weak (ERR_BAD_REQUEST), and stores nothing', async () => {
    const before = (await ca.list()).length;
    const { csr } = await opensslCsr('tampered');
    const pem = await readFile(csr, 'utf8');
    const der = Buffer.from(pem.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, ''), 'base64');
    const at = der.indexOf('Evil Corp');
    assert.ok(at > 0);
    der[at] = 'F'.charCodeAt(0); // "Fvil Corp": still a well-formed request, no longer the one signed
    const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64').replace(/(.{64})/g, '$1\n')}\n-----END CERTIFICATE REQUEST-----\n`;
    await assert.rejects(ca.issue({ user: 'ann@example.com', csrPem: tampered, issuedBy: 'cli' }), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'ERR_BAD_REQUEST');
      assert.match(err.message, /signature/);
      return true;
    });
    await refused(ca.issue({ user: 'ann@example.com', csrPem: '-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n', issuedBy: 'cli' }), 'ERR_BAD_REQUEST');
    await refused(ca.issue({ user: 'ann@example.com', csrPem: 'hello', issuedBy: 'cli' }), 'ERR_BAD_REQUEST');
    const weak = await opensslCsr('weak', ['-newkey', 'rsa:1024']);
    await assert.rejects(ca.issue({ user: 'ann@example.com', csrPem: await readFile(weak.csr, 'utf8'), issuedBy: 'cli' }), /1024 bits/);
    assert.equal((await ca.list()).length, before);
  });

  it('without a CSR makes the key and hands it back once, with a PKCS#12 that openssl opens with the one-time password', async () => {
    const issued = await ca.issue({ user: 'bob@example.com', device: 'phone', issuedBy: 'cli' });
    assert.equal(issued.record.keySource, 'generated');
    assert.ok(issued.keyPem && issued.p12 && issued.p12Password);
    assert.ok(issued.p12Password.length >= 20);
    assert.ok(new X509Certificate(issued.certPem).checkPrivateKey(createPrivateKey(issued.keyPem)));
    const p12 = await dir.write('bob.p12', issued.p12);
    // OpenSSL 3 reads it without -legacy: PBES2 / AES-256-CBC and an HMAC-SHA256 MAC
    const out = await openssl('pkcs12', '-in', p12, '-passin', `pass:${issued.p12Password}`, '-nodes', '-info');
    assert.match(out, /MAC: sha256/);
    assert.match(out, /friendlyName: bob@example\.com \(phone\)/);
    const keys = out.match(/-----BEGIN PRIVATE KEY-----[\s\S]+?-----END PRIVATE KEY-----\n/g) ?? [];
    assert.equal(keys.length, 1);
    assert.ok(sameKey(keys[0]!, issued.keyPem));
    const certs = (out.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/g) ?? []).map((p) => new X509Certificate(p).fingerprint256);
    assert.deepEqual(certs, [new X509Certificate(issued.certPem).fingerprint256, new X509Certificate(ca.caCertificatePem()).fingerprint256]);
    const wrong = await run('openssl', ['pkcs12', '-in', p12, '-passin', 'pass:wrong', '-nodes']);
    assert.notEqual(wrong.code, 0);
    // each issue has its own password
    const again = await ca.issue({ user: 'bob@example.com', device: 'tablet', issuedBy: 'cli' });
    assert.notEqual(again.p12Password, issued.p12Password);
  });

  it('curl signs in with that PKCS#12 (and with the PEM pair) to a server using a server certificate of the CA', async () => {
    const issued = await ca.issue({ user: 'carol@example.com', device: 'laptop', issuedBy: 'cli' });
    const server = await ca.serverCertificate(['localhost', '127.0.0.1']);
    const httpsServer = https.createServer({ key: server.keyPem, cert: server.certPem, ca: ca.caBundlePem(), requestCert: true, rejectUnauthorized: true }, (req, res) => {
      const peer = (req.socket as TLSSocket).getPeerX509Certificate()!;
      res.end(`user ${ca.userOf(peer.serialNumber)} revoked ${ca.isRevoked(peer.serialNumber)}`);
    });
    const port = await listenLocal(httpsServer);
    try {
      const p12 = await dir.write('carol.p12', issued.p12!);
      const viaP12 = await run('curl', ['--silent', '--show-error', '--cacert', caFile, '--resolve', `localhost:${port}:127.0.0.1`, '--cert-type', 'P12', '--cert', `${p12}:${issued.p12Password}`, `https://localhost:${port}/`]);
      assert.equal(viaP12.code, 0, viaP12.stderr);
      assert.equal(viaP12.stdout, 'user carol@example.com revoked false');
      const crt = await dir.write('carol.crt', issued.certPem + issued.chainPem);
      const key = await dir.write('carol.key', issued.keyPem!);
      const viaPem = await run('curl', ['--silent', '--show-error', '--cacert', caFile, '--cert', crt, '--key', key, `https://127.0.0.1:${port}/`]);
      assert.equal(viaPem.code, 0, viaPem.stderr);
      assert.equal(viaPem.stdout, 'user carol@example.com revoked false');
    } finally {
      httpsServer.closeAllConnections();
      await new Promise((resolve) => httpsServer.close(resolve));
    }
  });

  it('issues connector certificates: CN = the connector name, OU gatehouse-connector', async () => {
    const { csr } = await opensslCsr('connector');
    const issued = await ca.issue({ connector: 'office-jenkins', csrPem: await readFile(csr, 'utf8'), days: 30, issuedBy: 'cli' });
    const text = await openssl('x509', '-in', await dir.write('connector.crt', issued.certPem), '-noout', '-subject', '-ext', 'subjectAltName');
    assert.match(text, /subject=O = Acme, OU = gatehouse-connector, CN = office-jenkins\n/);
    assert.doesNotMatch(text, /Subject Alternative Name/);
    const r = issued.record;
    assert.deepEqual({ kind: r.kind, connector: r.connector, device: r.device, user: r.user }, { kind: 'connector', connector: 'office-jenkins', device: 'office-jenkins', user: undefined });
    assert.ok(Math.abs(r.notAfter - (Date.now() + 30 * DAY)) < 5000);
    assert.equal(ca.userOf(r.serial), undefined);
    assert.deepEqual((await ca.list({ connector: 'office-jenkins' })).map((c) => c.serial), [r.serial]);
  });

  it('checks what it is given (ERR_BAD_REQUEST)', async () => {
    const bad = [
      { user: 'ann@example.com', connector: 'x', issuedBy: 'cli' },
      { issuedBy: 'cli' },
      { user: 'not an email', issuedBy: 'cli' },
      { connector: 'Office Jenkins', issuedBy: 'cli' },
      { user: 'ann@example.com', days: 0, issuedBy: 'cli' },
      { user: 'ann@example.com', days: 826, issuedBy: 'cli' },
      { user: 'ann@example.com', days: 1.5, issuedBy: 'cli' },
      { user: 'ann@example.com', device: '  ', issuedBy: 'cli' },
      { user: 'ann@example.com', device: 'a\nb', issuedBy: 'cli' },
      { user: 'ann@example.com', issuedBy: '' },
    ];
    for (const request of bad) await refused(ca.issue(request), 'ERR_BAD_REQUEST');
    const longest = await ca.issue({ user: 'ann@example.com', days: 825, issuedBy: 'cli' });
    assert.ok(Math.abs(longest.record.notAfter - (Date.now() + 825 * DAY)) < 5000);
  });

  it('never issues past the CA\'s own end', async () => {
    const root = await opensslRoot(dir, openssl, 'Short Root');
    const { ca: short } = await worlds.open(dbPath(dir.path, 'short'));
    await short.importCa({ certPem: await readFile(root.cert, 'utf8'), keyPem: await readFile(root.key, 'utf8'), by: 'cli' });
    const issued = await short.issue({ user: 'ann@example.com', issuedBy: 'cli' });
    assert.equal(issued.record.notAfter, short.info()!.notAfter);
  });
});
