import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import * as tls from 'node:tls';
import { GatehouseError, type ErrorCode } from '../../src/core/index.ts';
import {
  canonicalSerialFromNode,
  createCa,
  createCrl,
  issueCertificate,
  normaliseSerial,
  parseCrl,
  subjectFromNodePeer,
  type CreatedCa,
  type IssuedCertificate,
} from '../../src/pki/index.ts';
import { listenLocal, makeTempDir, openssl, revokedSerialsInText, type TempDir } from './support.ts';

function hasCode(code: ErrorCode) {
  return (err: unknown): boolean => err instanceof GatehouseError && err.code === code;
}

describe('createCrl and parseCrl', () => {
  let dir: TempDir;
  let ca: CreatedCa;
  let caFile: string;
  let revokedA: IssuedCertificate;
  let revokedB: IssuedCertificate;

  before(async () => {
    dir = await makeTempDir();
    ca = await createCa({ subject: { CN: 'CRL Root', O: 'Gatehouse' } });
    caFile = await dir.write('ca.pem', ca.certPem);
    revokedA = await issueCertificate({ ca, kind: 'client', subject: { CN: 'mallory' } });
    revokedB = await issueCertificate({ ca, kind: 'client', subject: { CN: 'trudy' } });
  });
  after(() => dir.remove());

  it('writes a v2 CRL openssl reads and verifies, listing serials given in any spelling', async () => {
    const revokedAt = new Date('2024-05-06T07:08:09Z');
    const colonLower = revokedB.serial.toLowerCase().replace(/(..)(?!$)/g, '$1:');
    const crl = await createCrl({
      ca,
      revoked: [
        { serial: revokedA.serial, revokedAt },
        { serial: colonLower, revokedAt },
        { serial: `00${revokedA.serial}`, revokedAt: new Date() }, // the same certificate again
      ],
      crlNumber: 42,
    });
    assert.match(crl, /^-----BEGIN X509 CRL-----\n/);
    const file = await dir.write('crl.pem', crl);
    const text = await openssl('crl', '-in', file, '-noout', '-text');
    assert.match(text, /Version 2 \(0x1\)/);
    assert.match(text, /CRL Number: \s+42\n/);
    assert.match(text, /Authority Key Identifier:/);
    assert.match(text, /Revocation Date: May {2}6 07:08:09 2024 GMT/);
    assert.deepEqual(revokedSerialsInText(text).map(normaliseSerial).sort(), [revokedA.serial, revokedB.serial].sort());
    assert.match(await openssl('crl', '-in', file, '-CAfile', caFile, '-noout'), /verify OK/);

    const parsed = parseCrl(crl);
    assert.deepEqual([...parsed.revoked].sort(), [revokedA.serial, revokedB.serial].sort());
    assert.equal(parsed.issuerDn, 'CN=CRL Root,O=Gatehouse');
    assert.equal(parsed.crlNumber, 42n);
    assert.equal(parsed.nextUpdate!.getTime() - parsed.thisUpdate.getTime(), 7 * 86_400_000);
    assert.equal(await parsed.verify(ca.certPem), true);
  });

  it('parses the DER form openssl converts it to, as a Buffer', async () => {
    const crl = await createCrl({ ca, revoked: [{ serial: revokedA.serial, revokedAt: new Date() }] });
    const pemFile = await dir.write('der-src.pem', crl);
    const derFile = `${dir.path}/crl.der`;
    await openssl('crl', '-in', pemFile, '-outform', 'DER', '-out', derFile);
    const der = await readFile(derFile);
    const parsed = parseCrl(der);
    assert.deepEqual([...parsed.revoked], [revokedA.serial]);
    assert.equal(await parsed.verify(ca.certPem), true);
    assert.deepEqual([...parseCrl(Buffer.from(crl)).revoked], [revokedA.serial]); // PEM bytes, as read from a file
    assert.equal(parsed.crlNumber, BigInt(Math.floor(parsed.thisUpdate.getTime() / 1000)));
  });

  it('writes an empty CRL openssl accepts', async () => {
    const crl = await createCrl({ ca, revoked: [] });
    const file = await dir.write('empty.pem', crl);
    assert.match(await openssl('crl', '-in', file, '-noout', '-text'), /No Revoked Certificates/);
    assert.match(await openssl('crl', '-in', file, '-CAfile', caFile, '-noout'), /verify OK/);
    assert.equal(parseCrl(crl).revoked.size, 0);
  });

  it('verify is false for another CA or an altered CRL', async () => {
    const crl = await createCrl({ ca, revoked: [{ serial: revokedA.serial, revokedAt: new Date() }] });
    const other = await createCa({ subject: { CN: 'CRL Root', O: 'Gatehouse' } }); // same name, other key
    assert.equal(await parseCrl(crl).verify(other.certPem), false);
    const stranger = await createCa({ subject: { CN: 'Stranger' } });
    assert.equal(await parseCrl(crl).verify(stranger.certPem), false);

    const der = Buffer.from(crl.replace(/-----[^-]+-----/g, '').replace(/\s/g, ''), 'base64');
    const serialBytes = Buffer.from(revokedA.serial, 'hex');
    der[der.indexOf(serialBytes) + 15]! ^= 0x01;
    const altered = parseCrl(der);
    assert.equal(altered.revoked.has(revokedA.serial), false);
    assert.equal(await altered.verify(ca.certPem), false);
  });

  it('refuses bad input with coded errors', async () => {
    assert.throws(() => parseCrl('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n'), hasCode('ERR_CERT_INVALID'));
    assert.throws(() => parseCrl(Buffer.from([0x30, 0x02, 0x05, 0x00])), hasCode('ERR_CERT_INVALID'));
    await assert.rejects(createCrl({ ca, revoked: [{ serial: 'zz', revokedAt: new Date() }] }), hasCode('ERR_USAGE'));
    await assert.rejects(createCrl({ ca, revoked: [], nextUpdate: new Date(0) }), hasCode('ERR_USAGE'));
    await assert.rejects(createCrl({ ca, revoked: [], crlNumber: -1 }), hasCode('ERR_USAGE'));
    await assert.rejects(createCrl({ ca, revoked: [], nextUpdat: new Date() } as never), hasCode('ERR_USAGE'));
  });

  it('Node TLS with the CRL rejects revoked and expired client certificates and accepts good ones', async () => {
    const server = await issueCertificate({ ca, kind: 'server', subject: { CN: 'localhost' }, dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
    const good = await issueCertificate({ ca, kind: 'client', subject: { CN: 'alice', OU: ['eng', 'ops'] } });
    const expired = await issueCertificate({ ca, kind: 'client', subject: { CN: 'old' }, notAfter: new Date(Date.now() - 3_600_000) });
    const crl = await createCrl({ ca, revoked: [{ serial: revokedA.serial.toLowerCase(), revokedAt: new Date() }] });

    const tlsServer = tls.createServer(
      { key: server.keyPem, cert: server.certPem, ca: ca.certPem, requestCert: true, rejectUnauthorized: false, crl },
      (socket) => {
        const peer = socket.getPeerCertificate();
        socket.end(
          JSON.stringify({
            authorized: socket.authorized,
            error: socket.authorizationError ?? null,
            serial: canonicalSerialFromNode(peer.serialNumber),
            subject: subjectFromNodePeer(peer),
          }),
        );
      },
    );
    const port = await listenLocal(tlsServer);
    const ask = (client: IssuedCertificate): Promise<{ authorized: boolean; error: string | null; serial: string; subject: object }> =>
      new Promise((resolve, reject) => {
        const socket = tls.connect({ host: '127.0.0.1', port, ca: ca.certPem, key: client.keyPem, cert: client.certPem, servername: 'localhost' });
        let body = '';
        socket.setEncoding('utf8');
        socket.on('data', (chunk: string) => (body += chunk));
        socket.on('end', () => resolve(JSON.parse(body)));
        socket.on('error', reject);
      });
    try {
      const revoked = await ask(revokedA);
      assert.equal(revoked.authorized, false);
      assert.equal(revoked.error, 'CERT_REVOKED');
      assert.equal(revoked.serial, revokedA.serial);

      const old = await ask(expired);
      assert.equal(old.authorized, false);
      assert.equal(old.error, 'CERT_HAS_EXPIRED');

      const ok = await ask(good);
      assert.equal(ok.authorized, true);
      assert.equal(ok.error, null);
      assert.equal(ok.serial, good.serial);
      assert.deepEqual(ok.subject, { OU: ['eng', 'ops'], CN: ['alice'] });
    } finally {
      await new Promise((resolve) => tlsServer.close(resolve));
    }
  });
});
