import assert from 'node:assert/strict';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import * as https from 'node:https';
import { after, before, describe, it } from 'node:test';
import * as tls from 'node:tls';
import { GatehouseError, type ErrorCode } from '../../src/core/index.ts';
import { createCa, encodePkcs12, issueCertificate, type CreatedCa, type IssuedCertificate } from '../../src/pki/index.ts';
import { pkcs12DeriveKey } from '../../src/pki/pkcs12.ts';
import { listenLocal, makeTempDir, openssl, run, type TempDir } from './support.ts';

function hasCode(code: ErrorCode) {
  return (err: unknown): boolean => err instanceof GatehouseError && err.code === code;
}

function pemBlocks(text: string, label: string): string[] {
  return text.match(new RegExp(`-----BEGIN ${label}-----[\\s\\S]+?-----END ${label}-----\\n?`, 'g')) ?? [];
}

function sameKey(a: string, b: string): boolean {
  const jwk = (pem: string): string => JSON.stringify(createPrivateKey(pem).export({ format: 'jwk' }));
  return jwk(a) === jwk(b);
}

describe('encodePkcs12', () => {
  let dir: TempDir;
  let ca: CreatedCa;
  let caFile: string;
  let ecClient: IssuedCertificate;
  let rsaClient: IssuedCertificate;

  before(async () => {
    dir = await makeTempDir();
    ca = await createCa({ subject: { CN: 'P12 Root' } });
    caFile = await dir.write('ca.pem', ca.certPem);
    ecClient = await issueCertificate({ ca, kind: 'client', subject: { CN: 'ec-user', emailAddress: 'ec@example.com' } });
    rsaClient = await issueCertificate({ ca, kind: 'client', subject: { CN: 'rsa-user' }, keyAlgorithm: 'rsa-2048' });
  });
  after(() => dir.remove());

  for (const which of ['EC', 'RSA'] as const) {
    it(`openssl pkcs12 recovers the same ${which} key, certificate and chain`, async () => {
      const client = which === 'EC' ? ecClient : rsaClient;
      const p12 = encodePkcs12({ keyPem: client.keyPem, certPem: client.certPem, chainPems: [ca.certPem], password: 'correct horse', friendlyName: 'Gatehouse client' });
      const file = await dir.write(`${which}.p12`, p12);
      const out = await openssl('pkcs12', '-in', file, '-passin', 'pass:correct horse', '-nodes', '-info');
      assert.match(out, /MAC: sha256, Iteration 2048/);
      assert.match(out, /PKCS7 Encrypted data: PBES2, PBKDF2, AES-256-CBC, Iteration 2048, PRF hmacWithSHA256/);
      assert.match(out, /Shrouded Keybag: PBES2, PBKDF2, AES-256-CBC, Iteration 2048, PRF hmacWithSHA256/);
      assert.match(out, /friendlyName: Gatehouse client/);
      const keys = pemBlocks(out, 'PRIVATE KEY');
      assert.equal(keys.length, 1);
      assert.ok(sameKey(keys[0]!, client.keyPem));
      const certs = pemBlocks(out, 'CERTIFICATE').map((pem) => new X509Certificate(pem));
      assert.deepEqual(
        certs.map((c) => c.fingerprint256),
        [new X509Certificate(client.certPem).fingerprint256, new X509Certificate(ca.certPem).fingerprint256],
      );
      // the key bag and the leaf certificate bag share one localKeyID
      const ids = [...out.matchAll(/localKeyID: ([0-9A-F ]+)/g)].map((m) => m[1]!.trim());
      assert.equal(ids.length, 2);
      assert.equal(ids[0], ids[1]);
    });
  }

  it('openssl refuses a wrong password (the MAC does not verify)', async () => {
    const file = await dir.write('wrong.p12', encodePkcs12({ keyPem: ecClient.keyPem, certPem: ecClient.certPem, password: 'right' }));
    const r = await run('openssl', ['pkcs12', '-in', file, '-passin', 'pass:wrong', '-nodes']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /mac verify/i);
  });

  it("Node's tls.createSecureContext loads it with the passphrase, and not without", () => {
    for (const client of [ecClient, rsaClient]) {
      const pfx = encodePkcs12({ keyPem: client.keyPem, certPem: client.certPem, password: 'pässwörd', iterations: 4096 });
      assert.doesNotThrow(() => tls.createSecureContext({ pfx, passphrase: 'pässwörd' }));
      assert.throws(() => tls.createSecureContext({ pfx, passphrase: 'nope' }));
    }
  });

  it('curl authenticates with it against a Node https server that requires client certificates', async () => {
    const server = await issueCertificate({ ca, kind: 'server', subject: { CN: 'localhost' }, ipAddresses: ['127.0.0.1'] });
    const httpsServer = https.createServer(
      { key: server.keyPem, cert: server.certPem, ca: ca.certPem, requestCert: true, rejectUnauthorized: true },
      (req, res) => {
        const peer = (req.socket as tls.TLSSocket).getPeerCertificate();
        res.end(`hello ${peer.subject.CN}`);
      },
    );
    const port = await listenLocal(httpsServer);
    try {
      for (const client of [ecClient, rsaClient]) {
        const p12 = await dir.write('curl.p12', encodePkcs12({ keyPem: client.keyPem, certPem: client.certPem, chainPems: [ca.certPem], password: 's3cret' }));
        const r = await run('curl', ['--silent', '--show-error', '--cacert', caFile, '--cert-type', 'P12', '--cert', `${p12}:s3cret`, `https://127.0.0.1:${port}/`]);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stdout, `hello ${client === ecClient ? 'ec-user' : 'rsa-user'}`);
      }
      const anonymous = await run('curl', ['--silent', '--cacert', caFile, `https://127.0.0.1:${port}/`]);
      assert.notEqual(anonymous.code, 0);
    } finally {
      httpsServer.closeAllConnections();
      await new Promise((resolve) => httpsServer.close(resolve));
    }
  });

  it('derives keys as OpenSSL PKCS12KDF does, over several hash blocks (RFC 7292 appendix B)', async () => {
    const password = Buffer.from('0073006500630072006500740000', 'hex'); // BMPString "secret" and its terminator
    const salt = Buffer.from('0102030405060708', 'hex');
    const ours = pkcs12DeriveKey(password, salt, 1, 2048, 80);
    const theirs = await openssl(
      'kdf', '-keylen', '80', '-kdfopt', 'digest:SHA256', '-kdfopt', `hexpass:${password.toString('hex')}`,
      '-kdfopt', `hexsalt:${salt.toString('hex')}`, '-kdfopt', 'iter:2048', '-kdfopt', 'id:1', 'PKCS12KDF',
    );
    assert.equal(ours.toString('hex'), theirs.trim().replace(/:/g, '').toLowerCase());
  });

  it('refuses mismatched keys and weak settings', () => {
    assert.throws(() => encodePkcs12({ keyPem: rsaClient.keyPem, certPem: ecClient.certPem, password: 'x' }), hasCode('ERR_USAGE'));
    assert.throws(() => encodePkcs12({ keyPem: ecClient.keyPem, certPem: ecClient.certPem, password: 'x', iterations: 1000 }), hasCode('ERR_USAGE'));
    assert.throws(() => encodePkcs12({ keyPem: ecClient.keyPem, certPem: ecClient.certPem, password: 'x', chainPems: ['junk'] }), hasCode('ERR_USAGE'));
    assert.throws(() => encodePkcs12({ keyPem: ecClient.keyPem, certPem: ecClient.certPem, passphrase: 'x' } as never), hasCode('ERR_USAGE'));
  });
});
