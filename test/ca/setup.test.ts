/**
 * Setting up the internal CA: a root, an intermediate signed by a company CA made with the real openssl, an imported
 * CA; re-initialising refused without force; no CA without a secrets key unless accepted.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Keyring } from '../../src/authn/index.ts';
import { CA_COMMON_NAME, CA_ID, CA_KIND, InternalCa, type CaInfo } from '../../src/ca/index.ts';
import { openSqliteStore } from '../../src/store/index.ts';
import { Worlds, dbPath, eventually, makeTempDir, openssl, opensslRoot, refused, run, type TempDir } from './support.ts';

describe('internal CA setup', () => {
  let dir: TempDir;
  const worlds = new Worlds();
  let n = 0;
  const fresh = () => dbPath(dir.path, `db${++n}`);

  before(async () => {
    dir = await makeTempDir();
  });
  after(async () => {
    await worlds.closeAll();
    await dir.remove();
  });

  it('creates a root: EC P-256, CN "Gatehouse internal CA" and the O given, 10 years, CA:TRUE with pathlen 0', async () => {
    const { ca } = await worlds.open(fresh());
    assert.equal(ca.info(), undefined);
    const { info, warnings } = await ca.createRoot({ by: 'root@example.com', organisation: 'Acme Corp' });
    assert.deepEqual(warnings, []);
    assert.equal(info.state, 'active');
    assert.equal(info.mode, 'root');
    assert.equal(info.keyProtection, 'secrets-key');
    assert.equal(info.subject, `CN=${CA_COMMON_NAME},O=Acme Corp`);
    const file = await dir.write(`root${n}.crt`, ca.caCertificatePem());
    const text = await openssl('x509', '-in', file, '-noout', '-text');
    assert.match(text, /Public-Key: \(256 bit\)/);
    assert.match(text, /NIST CURVE: P-256/);
    assert.match(text, /CA:TRUE, pathlen:0/);
    assert.match(text, /Certificate Sign, CRL Sign/);
    assert.match(text, /Subject: O = Acme Corp, CN = Gatehouse internal CA/);
    const cert = new X509Certificate(ca.caCertificatePem());
    const years = (Date.parse(cert.validTo) - Date.now()) / (365.25 * 86_400_000);
    assert.ok(years > 9.9 && years < 10.1, `valid for ${years} years`);
    assert.equal(cert.serialNumber, info.serial);
    assert.equal(ca.caBundlePem(), ca.caCertificatePem(), 'a root has no chain above it');
  });

  it('refuses to re-initialise over a CA without force (ERR_CONFLICT); with force it replaces it and other instances hear of it', async () => {
    const path = fresh();
    const { ca } = await worlds.open(path);
    const first = (await ca.createRoot({ by: 'cli' })).info;
    await refused(ca.createRoot({ by: 'cli' }), 'ERR_CONFLICT');
    await refused(ca.requestIntermediate({ by: 'cli' }), 'ERR_CONFLICT');
    const other = await worlds.open(path);
    assert.equal(other.ca.info()?.serial, first.serial);
    const heard: Array<CaInfo | undefined> = [];
    other.ca.onCaChanged((info) => heard.push(info));

    const second = (await ca.createRoot({ by: 'cli', force: true })).info;
    assert.notEqual(second.serial, first.serial);
    assert.equal(ca.info()?.serial, second.serial, 'this process sees its own write at once');
    await eventually(() => heard.length > 0, 1000);
    assert.equal(heard[0]?.serial, second.serial);
    assert.equal(new X509Certificate(other.ca.caCertificatePem()).serialNumber, second.serial);
    // the replacement signs with the new key in the other instance too
    const issued = await other.ca.issue({ user: 'ann@example.com', issuedBy: 'cli' });
    assert.ok(new X509Certificate(issued.certPem).verify(new X509Certificate(ca.caCertificatePem()).publicKey));
  });

  it('without identity.secretsKey a CA is refused (ERR_USAGE, nothing written) unless allowStoreKey accepts it', async () => {
    const path = fresh();
    const { ca, store } = await worlds.open(path, { secretsKeyConfigured: false });
    await assert.rejects(ca.createRoot({ by: 'cli' }), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'ERR_USAGE');
      assert.match(err.message, /identity\.secretsKey/);
      assert.match(err.message, /--allow-store-key/);
      return true;
    });
    await refused(ca.requestIntermediate({ by: 'cli' }), 'ERR_USAGE');
    assert.equal(await store.get(CA_KIND, CA_ID), undefined);
    const { info } = await ca.createRoot({ by: 'cli', allowStoreKey: true });
    assert.equal(info.keyProtection, 'store-key');
  });

  it('makes an intermediate: a sealed key and a CSR, completed with the certificate an openssl root signed; leaves verify up to that root', async () => {
    const root = await opensslRoot(dir, openssl, 'Corp Root A');
    const { ca } = await worlds.open(fresh());
    const { csrPem, info: pending } = await ca.requestIntermediate({ by: 'cli', organisation: 'Acme' });
    assert.equal(pending.state, 'pending');
    assert.equal(pending.subject, 'CN=Gatehouse internal CA,O=Acme');
    await refused(ca.issue({ user: 'ann@example.com', issuedBy: 'cli' }), 'ERR_CA_NOT_INITIALISED');
    await refused(() => ca.caCertificatePem(), 'ERR_CA_NOT_INITIALISED');
    await refused(ca.crlPem(), 'ERR_CA_NOT_INITIALISED');
    await refused(ca.createRoot({ by: 'cli' }), 'ERR_CONFLICT');

    const csr = await dir.write('inter.csr', csrPem);
    const request = await openssl('req', '-in', csr, '-noout', '-verify', '-subject');
    assert.match(request, /verify OK/);
    assert.match(request, /subject=O = Acme, CN = Gatehouse internal CA/);
    const caExt = await dir.write('ca-ext.cnf', 'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n');
    const leafExt = await dir.write('leaf-ext.cnf', 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n');
    const sign = async (csrFile: string, ext: string, out: string) => {
      await openssl('x509', '-req', '-in', csrFile, '-CA', root.cert, '-CAkey', root.key, '-set_serial', `0x${Date.now().toString(16)}${n}`, '-days', '20', '-extfile', ext, '-out', join(dir.path, out));
      return readFile(join(dir.path, out), 'utf8');
    };
    const rootPem = await readFile(root.cert, 'utf8');

    // a CA certificate for another key, and a certificate for the right key that is no CA, are refused
    const otherCsr = join(dir.path, 'other.csr');
    await openssl('req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir.path, 'other.key'), '-subj', '/CN=other', '-out', otherCsr);
    await refused(ca.completeIntermediate({ certPem: (await sign(otherCsr, caExt, 'other.crt')) + rootPem, by: 'cli' }), 'ERR_BAD_REQUEST');
    await refused(ca.completeIntermediate({ certPem: (await sign(csr, leafExt, 'not-ca.crt')) + rootPem, by: 'cli' }), 'ERR_BAD_REQUEST');
    assert.equal(ca.info()?.state, 'pending');

    const interPem = await sign(csr, caExt, 'inter.crt');
    const { info, warnings } = await ca.completeIntermediate({ certPem: interPem + rootPem, by: 'cli' });
    assert.equal(warnings.length, 1, 'only that it expires within a year: the chain reaches the root');
    assert.match(warnings[0]!, /expires in 19 days/);
    assert.equal(info.state, 'active');
    assert.equal(info.mode, 'intermediate');
    assert.equal(info.subject, 'CN=Gatehouse internal CA,O=Acme');
    assert.equal(ca.caCertificatePem(), interPem.endsWith('\n') ? interPem : `${interPem}\n`);
    assert.equal(ca.caBundlePem(), ca.caCertificatePem() + rootPem, 'the bundle is the intermediate, then the root');
    await refused(ca.completeIntermediate({ certPem: interPem, by: 'cli' }), 'ERR_CA_NOT_INITIALISED');

    const issued = await ca.issue({ user: 'ann@example.com', device: 'laptop', issuedBy: 'cli' });
    assert.equal(issued.chainPem, ca.caCertificatePem(), 'a client sends the intermediate, not the root');
    const leaf = await dir.write('leaf.crt', issued.certPem);
    const inter = await dir.write('inter-only.crt', interPem);
    assert.match(await openssl('verify', '-CAfile', root.cert, '-untrusted', inter, leaf), /leaf\.crt: OK/);
    // without the intermediate, the root alone does not verify the leaf
    assert.notEqual((await run('openssl', ['verify', '-CAfile', root.cert, leaf])).code, 0);
    // the CRL is signed by the intermediate and verifies against the chain
    const crl = await dir.write('inter.crl', await ca.crlPem());
    const bundle = await dir.write('inter-bundle.crt', ca.caBundlePem());
    assert.match(await openssl('crl', '-in', crl, '-CAfile', bundle, '-noout'), /verify OK/);
  });

  it('completes an intermediate whose chain stops short of a root, with a warning', async () => {
    const root = await opensslRoot(dir, openssl, 'Corp Root B');
    const { ca } = await worlds.open(fresh());
    const csr = await dir.write('short.csr', (await ca.requestIntermediate({ by: 'cli' })).csrPem);
    const ext = await dir.write('short-ext.cnf', 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n');
    await openssl('x509', '-req', '-in', csr, '-CA', root.cert, '-CAkey', root.key, '-set_serial', '0x5151', '-days', '20', '-extfile', ext, '-out', join(dir.path, 'short.crt'));
    const { warnings } = await ca.completeIntermediate({ certPem: await readFile(join(dir.path, 'short.crt'), 'utf8'), by: 'cli' });
    assert.equal(warnings.length, 2, warnings.join('\n'));
    assert.match(warnings[0]!, /not a self-signed root/);
    assert.match(warnings[1]!, /expires in 19 days/);
  });

  it('imports an existing CA with its key, and refuses what cannot be one', async () => {
    const root = await opensslRoot(dir, openssl, 'Corp Root C');
    const certPem = await readFile(root.cert, 'utf8');
    const keyPem = await readFile(root.key, 'utf8');
    const { ca } = await worlds.open(fresh());

    // a leaf is no CA; a key of another certificate; an encrypted key; a CA that may not sign CRLs
    const leafKey = join(dir.path, 'imp-leaf.key');
    const leafCert = join(dir.path, 'imp-leaf.crt');
    await openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', leafKey, '-out', leafCert, '-subj', '/CN=leaf', '-days', '5', '-addext', 'basicConstraints=critical,CA:FALSE');
    await refused(ca.importCa({ certPem: await readFile(leafCert, 'utf8'), keyPem: await readFile(leafKey, 'utf8'), by: 'cli' }), 'ERR_BAD_REQUEST');
    await refused(ca.importCa({ certPem, keyPem: await readFile(leafKey, 'utf8'), by: 'cli' }), 'ERR_BAD_REQUEST');
    const encrypted = join(dir.path, 'imp-enc.key');
    await openssl('pkey', '-in', root.key, '-aes256', '-passout', 'pass:secret', '-out', encrypted);
    await assert.rejects(ca.importCa({ certPem, keyPem: await readFile(encrypted, 'utf8'), by: 'cli' }), /encrypted/);
    const noCrlKey = join(dir.path, 'nocrl.key');
    const noCrlCert = join(dir.path, 'nocrl.crt');
    await openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', noCrlKey, '-out', noCrlCert, '-subj', '/CN=No CRL CA', '-days', '500', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign');
    await assert.rejects(ca.importCa({ certPem: await readFile(noCrlCert, 'utf8'), keyPem: await readFile(noCrlKey, 'utf8'), by: 'cli' }), /cRLSign/);
    assert.equal(ca.info(), undefined, 'nothing was stored');

    const { info, warnings } = await ca.importCa({ certPem, keyPem, by: 'cli' });
    assert.equal(info.mode, 'imported');
    assert.equal(info.subject, 'CN=Corp Root C,O=Corp');
    assert.deepEqual(warnings, ['CN=Corp Root C,O=Corp expires in 29 days (' + new Date(Date.parse(new X509Certificate(certPem).validTo)).toISOString() + ')']);
    const leaf = await dir.write('imported-leaf.crt', (await ca.issue({ connector: 'office-jenkins', issuedBy: 'cli' })).certPem);
    assert.match(await openssl('verify', '-CAfile', root.cert, leaf), /OK/);
    await refused(ca.importCa({ certPem, keyPem, by: 'cli' }), 'ERR_CONFLICT');
  });

  it('a CA sealed with another secrets key still serves its certificate, and signing fails clearly (ERR_CONFIG_INVALID)', async () => {
    const path = fresh();
    const { ca } = await worlds.open(path);
    await ca.createRoot({ by: 'cli' });
    const other = await worlds.open(path, { secret: Buffer.alloc(32, 9) });
    assert.equal(other.ca.caCertificatePem(), ca.caCertificatePem());
    await assert.rejects(other.ca.issue({ user: 'ann@example.com', issuedBy: 'cli' }), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'ERR_CONFIG_INVALID');
      assert.match(err.message, /secretsKey/);
      return true;
    });
    await refused(other.ca.crlPem(), 'ERR_CONFIG_INVALID');
  });

  it('fails clearly before start and after close (ERR_NOT_READY)', async () => {
    const store = await openSqliteStore(fresh());
    try {
      const ca = new InternalCa({ store, keyring: Keyring.fromSecret(Buffer.alloc(32, 1)), secretsKeyConfigured: true });
      await refused(ca.createRoot({ by: 'cli' }), 'ERR_NOT_READY');
      await ca.start();
      await refused(ca.start(), 'ERR_NOT_READY');
      ca.close();
      await refused(ca.issue({ user: 'ann@example.com', issuedBy: 'cli' }), 'ERR_NOT_READY');
      await refused(() => ca.info(), 'ERR_NOT_READY');
    } finally {
      await store.close();
    }
  });
});
