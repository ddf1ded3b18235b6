import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { GatehouseError } from '../../src/core/index.ts';
import { canonicalSerialFromNode, createCa, issueCertificate, normaliseSerial, parseCertificate } from '../../src/pki/index.ts';
import { makeTempDir, openssl, type TempDir } from './support.ts';

describe('normaliseSerial', () => {
  it('gives one form for every spelling: upper-case hex, whole bytes, no leading zero bytes', () => {
    for (const spelling of ['0a:80', '0A80', 'a80', '0x0A80', '00:0a:80', '  0a 80 ', '000A80']) {
      assert.equal(normaliseSerial(spelling), '0A80', spelling);
    }
    assert.equal(normaliseSerial('80ff'), '80FF');
    assert.equal(normaliseSerial('00:80:ff'), '80FF');
    assert.equal(normaliseSerial('0'), '00');
    assert.equal(normaliseSerial('00:00'), '00');
  });

  it('rejects what is not hex with ERR_USAGE', () => {
    for (const bad of ['', 'xyz', '12-34', ':::', '0x']) {
      assert.throws(() => normaliseSerial(bad), (err: unknown) => err instanceof GatehouseError && err.code === 'ERR_USAGE', bad);
    }
  });
});

describe('serials agree with OpenSSL and Node', () => {
  let dir: TempDir;
  before(async () => {
    dir = await makeTempDir();
  });
  after(() => dir.remove());

  it('issued serials are random, canonical and what openssl and Node print', async () => {
    const ca = await createCa({ subject: { CN: 'Serial Root' } });
    const serials = new Set<string>();
    for (let i = 0; i < 3; i++) {
      const { certPem, serial } = await issueCertificate({ ca, kind: 'client', subject: { CN: `user${i}` } });
      assert.match(serial, /^[4-7][0-9A-F]{31}$/);
      assert.equal(parseCertificate(certPem).serial, serial);
      assert.equal(new X509Certificate(certPem).serialNumber, serial);
      assert.equal(canonicalSerialFromNode(new X509Certificate(certPem).serialNumber), serial);
      const file = await dir.write(`c${i}.pem`, certPem);
      assert.equal((await openssl('x509', '-in', file, '-noout', '-serial')).trim(), `serial=${serial}`);
      serials.add(serial);
    }
    assert.equal(serials.size, 3);
  });

  it('reads serials needing a sign byte or starting below 0x10 the way openssl does', async () => {
    const key = await dir.write('k.pem', (await createCa({ subject: { CN: 'k' } })).keyPem);
    for (const [set, expected] of [
      ['0x0A80', '0A80'],
      ['0x80FF', '80FF'],
      ['0x01', '01'],
    ] as const) {
      const file = `${dir.path}/s-${expected}.pem`;
      await openssl('req', '-x509', '-key', key, '-out', file, '-subj', '/CN=s', '-set_serial', set, '-days', '1');
      const pem = await readFile(file, 'utf8');
      assert.equal(parseCertificate(pem).serial, expected);
      assert.equal((await openssl('x509', '-in', file, '-noout', '-serial')).trim(), `serial=${expected}`);
      assert.equal(new X509Certificate(pem).serialNumber, expected);
      assert.equal(canonicalSerialFromNode(new X509Certificate(pem).serialNumber), expected);
    }
  });

  it('canonicalSerialFromNode passes canonical input through and normalises the rest', () => {
    assert.equal(canonicalSerialFromNode('4F1A'), '4F1A');
    assert.equal(canonicalSerialFromNode('4f:1a'), '4F1A');
    assert.equal(canonicalSerialFromNode('004F1A'), '4F1A');
    assert.equal(canonicalSerialFromNode('F1A'), '0F1A');
    assert.throws(() => canonicalSerialFromNode(undefined as unknown as string), (err: unknown) => err instanceof GatehouseError && err.code === 'ERR_CERT_INVALID');
  });
});
