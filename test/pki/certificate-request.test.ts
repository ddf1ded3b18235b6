import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { GatehouseError, type ErrorCode } from '../../src/core/index.ts';
import { createCa, createCsr, issueCertificate, parseCertificate, signCsr, type CreatedCa } from '../../src/pki/index.ts';
import { makeTempDir, openssl, type TempDir } from './support.ts';

function hasCode(code: ErrorCode) {
  return (err: unknown): boolean => err instanceof GatehouseError && err.code === code;
}

describe('createCsr and signCsr, checked by openssl', () => {
  let dir: TempDir;
  let root: CreatedCa;
  let rootFile: string;

  before(async () => {
    dir = await makeTempDir();
    root = await createCa({ subject: { CN: 'CSR Root', O: 'Gatehouse' } });
    rootFile = await dir.write('root.pem', root.certPem);
  });
  after(() => dir.remove());

  it('writes a CSR openssl verifies, with a generated P-256 key', async () => {
    const { csrPem, keyPem } = await createCsr({ subject: { CN: 'device-17', O: 'Acme', OU: 'laptops' } });
    const file = await dir.write('device.csr', csrPem);
    assert.match(csrPem, /^-----BEGIN CERTIFICATE REQUEST-----\n/);
    assert.match(keyPem, /^-----BEGIN PRIVATE KEY-----\n/);
    const out = await openssl('req', '-in', file, '-verify', '-noout', '-subject');
    assert.match(out, /verify OK/);
    assert.match(out, /subject=O = Acme, OU = laptops, CN = device-17/);
  });

  it('signs a CSR with a key given in PKCS#1 RSA form and keeps that key', async () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    const pkcs1 = rsa.export({ type: 'pkcs1', format: 'pem' }).toString();
    const { csrPem, keyPem } = await createCsr({ subject: { CN: 'rsa-device' }, keyPem: pkcs1 });
    assert.equal(keyPem, rsa.export({ type: 'pkcs8', format: 'pem' }).toString());
    assert.match(await openssl('req', '-in', await dir.write('rsa.csr', csrPem), '-verify', '-noout'), /verify OK/);
    const { certPem, serial } = await signCsr({ ca: root, csrPem, kind: 'client' });
    const certFile = await dir.write('rsa-device.pem', certPem);
    assert.match(await openssl('verify', '-CAfile', rootFile, '-purpose', 'sslclient', certFile), /: OK/);
    assert.equal(parseCertificate(certPem).serial, serial);
    assert.equal(parseCertificate(certPem).subjectDn, 'CN=rsa-device');
  });

  it('signs a CSR written by openssl req, as a server, with subjectOverride and SANs', async () => {
    const keyFile = `${dir.path}/ossl.key`;
    const csrFile = `${dir.path}/ossl.csr`;
    await openssl('req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', keyFile, '-out', csrFile, '-subj', '/CN=asked-for');
    const csrPem = await readFile(csrFile, 'utf8');
    const { certPem } = await signCsr({
      ca: root,
      csrPem,
      kind: 'server',
      subjectOverride: { CN: 'granted', O: 'Gatehouse' },
      dnsNames: ['app.test'],
      ipAddresses: ['10.0.0.1'],
      validityDays: 30,
    });
    const certFile = await dir.write('ossl.pem', certPem);
    assert.match(await openssl('verify', '-CAfile', rootFile, '-purpose', 'sslserver', certFile), /: OK/);
    const text = await openssl('x509', '-in', certFile, '-noout', '-text');
    assert.match(text, /Subject: O = Gatehouse, CN = granted/);
    assert.match(text, /DNS:app\.test, IP Address:10\.0\.0\.1/);
    assert.match(text, /TLS Web Server Authentication/);
    // the certificate is for the CSR's key
    assert.equal(await openssl('x509', '-in', certFile, '-noout', '-pubkey'), await openssl('pkey', '-in', keyFile, '-pubout'));
    const info = parseCertificate(certPem);
    assert.equal(Math.round((info.notAfter.getTime() - info.notBefore.getTime()) / 86_400_000), 30);
  });

  it('makes an intermediate CA whose leaves verify through it', async () => {
    const csr = await createCsr({ subject: { CN: 'Issuing CA', O: 'Gatehouse' } });
    const { certPem } = await signCsr({ ca: root, csrPem: csr.csrPem, kind: 'ca', pathLength: 0 });
    const interFile = await dir.write('inter.pem', certPem);
    const text = await openssl('x509', '-in', interFile, '-noout', '-text');
    assert.match(text, /Basic Constraints: critical\s+CA:TRUE, pathlen:0/);
    assert.match(text, /Key Usage: critical\s+Certificate Sign, CRL Sign/);
    const intermediate = { certPem, keyPem: csr.keyPem };
    const leaf = await issueCertificate({ ca: intermediate, kind: 'client', subject: { CN: 'deep' } });
    const leafFile = await dir.write('deep.pem', leaf.certPem);
    assert.match(await openssl('verify', '-CAfile', rootFile, '-untrusted', interFile, leafFile), /deep\.pem: OK/);
    assert.equal(parseCertificate(leaf.certPem).issuerDn, 'CN=Issuing CA,O=Gatehouse');
  });

  it('refuses altered CSRs and wrong options', async () => {
    const { csrPem } = await createCsr({ subject: { CN: 'honest' } });
    const der = Buffer.from(csrPem.replace(/-----[^-]+-----/g, '').replace(/\s/g, ''), 'base64');
    const at = der.indexOf(Buffer.from('honest'));
    der.write('hacked', at, 'latin1');
    const altered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
    await assert.rejects(signCsr({ ca: root, csrPem: altered, kind: 'client' }), hasCode('ERR_CERT_INVALID'));
    await assert.rejects(signCsr({ ca: root, csrPem: 'nothing here', kind: 'client' }), hasCode('ERR_CERT_INVALID'));
    await assert.rejects(signCsr({ ca: root, csrPem, kind: 'client', pathLength: 1 }), hasCode('ERR_USAGE'));
    await assert.rejects(signCsr({ ca: root, csrPem, kind: 'server' }), hasCode('ERR_USAGE'));
    await assert.rejects(signCsr({ ca: root, csrPem, kind: 'admin' as never }), hasCode('ERR_USAGE'));
    await assert.rejects(createCsr({ subject: { CN: 'x' }, keyPem: 'not a key' }), hasCode('ERR_USAGE'));
  });
});
