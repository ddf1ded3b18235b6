import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { GatehouseError, type ErrorCode } from '../../src/core/index.ts';
import {
  createCa,
  issueCertificate,
  parseCertificate,
  subjectFromNodePeer,
  type CreatedCa,
} from '../../src/pki/index.ts';
import { makeTempDir, openssl, run, type TempDir } from './support.ts';

function hasCode(code: ErrorCode) {
  return (err: unknown): boolean => err instanceof GatehouseError && err.code === code;
}

describe('createCa and issueCertificate, checked by openssl', () => {
  let dir: TempDir;
  let ca: CreatedCa;
  let caFile: string;

  before(async () => {
    dir = await makeTempDir();
    ca = await createCa({ subject: { CN: 'Gatehouse Test Root', O: 'Gatehouse', C: 'US' }, pathLength: 1 });
    caFile = await dir.write('ca.pem', ca.certPem);
  });
  after(() => dir.remove());

  it('makes a self-signed root: CA critical with pathlen, keyCertSign + cRLSign, SKI, PKCS#8 P-256 key', async () => {
    const text = await openssl('x509', '-in', caFile, '-noout', '-text');
    assert.match(text, /Basic Constraints: critical\s+CA:TRUE, pathlen:1/);
    assert.match(text, /Key Usage: critical\s+Certificate Sign, CRL Sign/);
    assert.match(text, /Subject Key Identifier:/);
    assert.match(text, /ASN1 OID: prime256v1/);
    assert.match(ca.keyPem, /^-----BEGIN PRIVATE KEY-----\n/);
    assert.match(await openssl('verify', '-CAfile', caFile, caFile), /: OK/);
    const info = parseCertificate(ca.certPem);
    assert.equal(info.subjectDn, 'CN=Gatehouse Test Root,O=Gatehouse,C=US');
    assert.equal(info.issuerDn, info.subjectDn);
    assert.equal(Math.round((info.notAfter.getTime() - Date.now()) / 86_400_000), 3650);
  });

  it('issues a server certificate with serverAuth and DNS (wildcard) and IP SANs', async () => {
    const server = await issueCertificate({
      ca,
      kind: 'server',
      subject: { CN: 'localhost' },
      dnsNames: ['localhost', '*.localhost', '*.gh.localhost'],
      ipAddresses: ['127.0.0.1', '::1'],
    });
    const file = await dir.write('server.pem', server.certPem);
    assert.match(await openssl('verify', '-CAfile', caFile, file), /server\.pem: OK/);
    // OpenSSL and Node match a wildcard only with two labels after it: *.gh.localhost covers app.gh.localhost,
    // while *.localhost is written as asked but matches nothing.
    assert.match(await openssl('verify', '-CAfile', caFile, '-purpose', 'sslserver', '-verify_hostname', 'app.gh.localhost', file), /: OK/);
    assert.match(await openssl('verify', '-CAfile', caFile, '-purpose', 'sslserver', '-verify_ip', '127.0.0.1', file), /: OK/);
    const text = await openssl('x509', '-in', file, '-noout', '-text');
    assert.match(text, /Extended Key Usage: \s+TLS Web Server Authentication\n/);
    assert.match(text, /DNS:localhost, DNS:\*\.localhost, DNS:\*\.gh\.localhost, IP Address:127\.0\.0\.1, IP Address:0:0:0:0:0:0:0:1\n/);
    assert.match(text, /Basic Constraints: critical\s+CA:FALSE/);
    assert.match(text, /Authority Key Identifier:/);
    const x = new X509Certificate(server.certPem);
    assert.equal(x.checkHost('a.gh.localhost'), '*.gh.localhost');
    assert.equal(x.checkIP('127.0.0.1'), '127.0.0.1');
  });

  it('issues a client certificate with clientAuth, repeated OU and an e-mail SAN', async () => {
    const client = await issueCertificate({
      ca,
      kind: 'client',
      subject: { CN: 'alice', OU: ['eng', 'ops'], O: 'Acme', emailAddress: 'alice@example.com' },
    });
    const file = await dir.write('client.pem', client.certPem);
    assert.match(await openssl('verify', '-CAfile', caFile, '-purpose', 'sslclient', file), /client\.pem: OK/);
    const text = await openssl('x509', '-in', file, '-noout', '-text');
    assert.match(text, /Extended Key Usage: \s+TLS Web Client Authentication\n/);
    assert.match(text, /Subject: O = Acme, OU = eng, OU = ops, CN = alice, emailAddress = alice@example.com/);
    assert.match(text, /Subject Alternative Name: \s+email:alice@example.com/);
    assert.match(text, /Key Usage: critical\s+Digital Signature\n/);

    const info = parseCertificate(client.certPem);
    assert.deepEqual({ ...info.subject }, { O: ['Acme'], OU: ['eng', 'ops'], CN: ['alice'], emailAddress: ['alice@example.com'] });
    const rfc2253 = await openssl('x509', '-in', file, '-noout', '-subject', '-nameopt', 'RFC2253');
    assert.equal(`subject=${info.subjectDn}`, rfc2253.trim());
    assert.equal(info.issuerDn, 'CN=Gatehouse Test Root,O=Gatehouse,C=US');
    assert.equal(info.serial, client.serial);
    const x = new X509Certificate(client.certPem);
    assert.equal(info.fingerprint256, x.fingerprint256);
    assert.equal(info.notBefore.getTime(), new Date(x.validFrom).getTime());
    assert.equal(info.notAfter.getTime(), new Date(x.validTo).getTime());
  });

  it('issues RSA 2048 keys on request, with keyEncipherment', async () => {
    const rsa = await issueCertificate({ ca, kind: 'server', subject: { CN: 'rsa' }, dnsNames: ['rsa.test'], keyAlgorithm: 'rsa-2048' });
    const file = await dir.write('rsa.pem', rsa.certPem);
    assert.match(await openssl('verify', '-CAfile', caFile, file), /: OK/);
    const text = await openssl('x509', '-in', file, '-noout', '-text');
    assert.match(text, /Public-Key: \(2048 bit\)/);
    assert.match(text, /Digital Signature, Key Encipherment/);
    assert.match(rsa.keyPem, /^-----BEGIN PRIVATE KEY-----\n/);
  });

  it('an RSA CA signs with sha256WithRSAEncryption', async () => {
    const rsaCa = await createCa({ subject: { CN: 'RSA Root' }, keyAlgorithm: 'rsa-2048', validityDays: 30 });
    const leaf = await issueCertificate({ ca: rsaCa, kind: 'client', subject: { CN: 'bob' } });
    const rsaCaFile = await dir.write('rsa-ca.pem', rsaCa.certPem);
    const leafFile = await dir.write('rsa-leaf.pem', leaf.certPem);
    assert.match(await openssl('verify', '-CAfile', rsaCaFile, leafFile), /: OK/);
    assert.match(await openssl('x509', '-in', leafFile, '-noout', '-text'), /Signature Algorithm: sha256WithRSAEncryption/);
  });

  it('issues already-expired certificates for tests', async () => {
    const notAfter = new Date(Date.now() - 86_400_000);
    const expired = await issueCertificate({ ca, kind: 'client', subject: { CN: 'old' }, notAfter, validityDays: 10 });
    const info = parseCertificate(expired.certPem);
    assert.equal(info.notAfter.getTime(), Math.floor(notAfter.getTime() / 1000) * 1000);
    assert.equal(notAfter.getTime() - info.notBefore.getTime() < 10 * 86_400_000 + 1000, true);
    const file = await dir.write('expired.pem', expired.certPem);
    const r = await run('openssl', ['verify', '-CAfile', caFile, file]);
    assert.notEqual(r.code, 0);
    assert.match(r.stdout + r.stderr, /certificate has expired/);

    const window = await issueCertificate({
      ca,
      kind: 'client',
      subject: { CN: 'window' },
      notBefore: new Date('2001-02-03T04:05:06Z'),
      notAfter: new Date('2051-02-03T04:05:06Z'), // GeneralizedTime from 2050
    });
    const w = parseCertificate(window.certPem);
    assert.equal(w.notBefore.toISOString(), '2001-02-03T04:05:06.000Z');
    assert.equal(w.notAfter.toISOString(), '2051-02-03T04:05:06.000Z');
    assert.match(await openssl('x509', '-in', await dir.write('w.pem', window.certPem), '-noout', '-enddate'), /Feb {2}3 04:05:06 2051 GMT/);
  });

  it('parseCertificate and subjectFromNodePeer give the same subject, other attributes by dotted OID', async () => {
    const cert = await issueCertificate({
      ca,
      kind: 'client',
      subject: {
        CN: 'carol',
        OU: ['a', 'b'],
        L: 'Paris',
        ST: 'IDF',
        C: 'FR',
        '0.9.2342.19200300.100.1.25': ['example', 'com'], // DC, which Node calls "DC"
        '2.5.4.5': '1234', // serialNumber
        '1.3.6.1.4.1.99999.1': 'custom', // unknown to OpenSSL
      },
    });
    const parsed = parseCertificate(cert.certPem).subject;
    assert.deepEqual(parsed.DC, undefined);
    assert.deepEqual(parsed['0.9.2342.19200300.100.1.25'], ['example', 'com']);
    assert.deepEqual(parsed['1.3.6.1.4.1.99999.1'], ['custom']);
    const legacy = new X509Certificate(cert.certPem).toLegacyObject();
    assert.deepEqual(subjectFromNodePeer(legacy), parsed);
    assert.equal(Object.getPrototypeOf(parsed), null);
    assert.deepEqual({ ...subjectFromNodePeer({ subject: { CN: 'x', OU: ['y', 'z'] } }) }, { CN: ['x'], OU: ['y', 'z'] });
    assert.deepEqual({ ...subjectFromNodePeer({}) }, {});
  });

  it('escapes DN values the way openssl -nameopt RFC2253 does', async () => {
    const cert = await issueCertificate({ ca, kind: 'client', subject: { CN: 'Smith, John+Jr "JJ" <x>;', O: '#hash ' } });
    const file = await dir.write('escape.pem', cert.certPem);
    const rfc2253 = await openssl('x509', '-in', file, '-noout', '-subject', '-nameopt', 'RFC2253');
    assert.equal(`subject=${parseCertificate(cert.certPem).subjectDn}\n`, rfc2253);
  });

  it('refuses bad input with coded errors and hints', async () => {
    await assert.rejects(issueCertificate({ ca, kind: 'server', subject: { CN: 'x' } }), hasCode('ERR_USAGE'));
    await assert.rejects(
      issueCertificate({ ca, kind: 'client', subject: { commonName: 'x' } }),
      (err: unknown) => hasCode('ERR_USAGE')(err) && /did you mean CN\?/.test((err as Error).message),
    );
    await assert.rejects(
      issueCertificate({ ca, kind: 'client', subject: { CN: 'x' }, days: 3 } as never),
      (err: unknown) => hasCode('ERR_USAGE')(err) && /did you mean validityDays\?/.test((err as Error).message),
    );
    await assert.rejects(issueCertificate({ ca, kind: 'ca' as never, subject: { CN: 'x' } }), hasCode('ERR_USAGE'));
    await assert.rejects(issueCertificate({ ca, kind: 'server', subject: { CN: 'x' }, dnsNames: ['bad name'] }), hasCode('ERR_USAGE'));
    await assert.rejects(issueCertificate({ ca, kind: 'server', subject: { CN: 'x' }, ipAddresses: ['300.1.1.1'] }), hasCode('ERR_USAGE'));
    await assert.rejects(issueCertificate({ ca, kind: 'client', subject: { CN: 'x', C: 'USA' } }), hasCode('ERR_USAGE'));
    await assert.rejects(issueCertificate({ ca, kind: 'client', subject: {} }), hasCode('ERR_USAGE'));
    await assert.rejects(
      issueCertificate({ ca, kind: 'client', subject: { CN: 'x' }, notBefore: new Date(), notAfter: new Date(Date.now() - 1000) }),
      hasCode('ERR_USAGE'),
    );
    const other = await createCa({ subject: { CN: 'Other' } });
    await assert.rejects(issueCertificate({ ca: { certPem: ca.certPem, keyPem: other.keyPem }, kind: 'client', subject: { CN: 'x' } }), hasCode('ERR_USAGE'));
    const leaf = await issueCertificate({ ca, kind: 'client', subject: { CN: 'leaf' } });
    await assert.rejects(issueCertificate({ ca: leaf, kind: 'client', subject: { CN: 'x' } }), hasCode('ERR_USAGE'));
    assert.throws(() => parseCertificate('not a certificate'), hasCode('ERR_CERT_INVALID'));
    assert.throws(() => parseCertificate(Buffer.from([0x30, 0x03, 0x02, 0x01, 0x00])), hasCode('ERR_CERT_INVALID'));
  });
});
