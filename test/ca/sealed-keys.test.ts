/**
 * No private key reaches the SQLite file in clear: the CA key (root, imported, pending intermediate), the keys of
 * generated device certificates and PKCS#12 passwords, and the keys of server certificates. The database and its
 * WAL are searched byte for byte for every encoding of each key: PEM lines, base64 and base64url of the DER, the
 * DER itself, and the raw private scalar.
 */
import assert from 'node:assert/strict';
import { createPrivateKey } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { CA_ID, CA_KIND, type CaRecord } from '../../src/ca/index.ts';
import { Worlds, dbPath, makeTempDir, openssl, opensslRoot, type TempDir } from './support.ts';

/** Every form in which `keyPem` could sit in a file. */
function needles(keyPem: string): Array<{ what: string; bytes: Buffer }> {
  const key = createPrivateKey(keyPem);
  const der = key.export({ type: 'pkcs8', format: 'der' });
  const jwk = key.export({ format: 'jwk' });
  const body = keyPem.replace(/-----[A-Z ]+-----/g, '');
  const out = [
    { what: 'PKCS#8 DER', bytes: der },
    { what: 'base64 DER', bytes: Buffer.from(der.toString('base64')) },
    { what: 'base64url DER', bytes: Buffer.from(der.toString('base64url')) },
    { what: 'PEM body without newlines', bytes: Buffer.from(body.replace(/\s+/g, '')) },
    { what: 'private scalar', bytes: Buffer.from(jwk.d!, 'base64url') },
    { what: 'private scalar base64url', bytes: Buffer.from(jwk.d!) },
    { what: 'private scalar hex', bytes: Buffer.from(Buffer.from(jwk.d!, 'base64url').toString('hex')) },
  ];
  for (const line of body.split('\n').filter((l) => l.length >= 40)) out.push({ what: `PEM line ${line.slice(0, 12)}…`, bytes: Buffer.from(line) });
  // JSON escapes newlines: the PEM as it would appear inside a stored JSON value
  out.push({ what: 'PEM in JSON', bytes: Buffer.from(JSON.stringify(keyPem).slice(1, 60)) });
  return out;
}

function databaseBytes(path: string): Buffer {
  return Buffer.concat([path, `${path}-wal`, `${path}-shm`].filter((p) => existsSync(p)).map((p) => readFileSync(p)));
}

describe('keys sealed in the store', () => {
  let dir: TempDir;
  const worlds = new Worlds();
  const secrets: Array<{ what: string; keyPem: string }> = [];
  const passwords: string[] = [];
  const publicPems: string[] = [];
  const paths: string[] = [];

  before(async () => {
    dir = await makeTempDir();
    // a root CA with device and server certificates
    const rootPath = dbPath(dir.path, 'root');
    paths.push(rootPath);
    const root = await worlds.open(rootPath);
    await root.ca.createRoot({ by: 'cli' });
    const stored = await root.store.get<CaRecord>(CA_KIND, CA_ID);
    secrets.push({ what: 'root CA key', keyPem: root.keyring.decrypt('ca-key', stored!.value.key) });
    publicPems.push(root.ca.caCertificatePem());
    for (const user of ['ann@example.com', 'bob@example.com']) {
      const issued = await root.ca.issue({ user, issuedBy: 'cli' });
      secrets.push({ what: `device key of ${user}`, keyPem: issued.keyPem! });
      passwords.push(issued.p12Password!);
    }
    const server = await root.ca.serverCertificate(['gate.example.com', '*.apps.example.com']);
    secrets.push({ what: 'server key', keyPem: server.keyPem });
    publicPems.push(server.certPem);
    await root.ca.revoke((await root.ca.list())[1]!.serial, 'cli');

    // an imported CA (its key given in SEC 1 form, as openssl writes EC keys with -traditional)
    const importedPath = dbPath(dir.path, 'imported');
    paths.push(importedPath);
    const made = await opensslRoot(dir, openssl, 'Sealed Import Root');
    await openssl('ec', '-in', made.key, '-out', `${made.key}.sec1`);
    const imported = await worlds.open(importedPath);
    const keyPem = await readFile(`${made.key}.sec1`, 'utf8');
    await imported.ca.importCa({ certPem: await readFile(made.cert, 'utf8'), keyPem, by: 'cli' });
    secrets.push({ what: 'imported CA key', keyPem });

    // a pending intermediate
    const pendingPath = dbPath(dir.path, 'pending');
    paths.push(pendingPath);
    const pending = await worlds.open(pendingPath);
    await pending.ca.requestIntermediate({ by: 'cli' });
    const record = await pending.store.get<CaRecord>(CA_KIND, CA_ID);
    secrets.push({ what: 'pending intermediate key', keyPem: pending.keyring.decrypt('ca-key', record!.value.key) });
  });
  after(async () => {
    await worlds.closeAll();
    await dir.remove();
  });

  function assertNoneInClear(when: string): void {
    const haystack = Buffer.concat(paths.map(databaseBytes));
    assert.ok(haystack.length > 10_000, 'the database files were read');
    // the search finds what is there: the CA and server certificates are stored as they are
    for (const pem of publicPems) {
      const line = pem.split('\n')[3]!;
      assert.ok(haystack.includes(Buffer.from(line)), `${when}: a certificate line is found in the files`);
    }
    for (const { what, keyPem } of secrets) {
      for (const n of needles(keyPem)) assert.equal(haystack.indexOf(n.bytes), -1, `${when}: ${what} found in clear as ${n.what}`);
    }
    for (const p of passwords) assert.equal(haystack.indexOf(Buffer.from(p)), -1, `${when}: a PKCS#12 password is stored`);
  }

  it('keeps every private key sealed while the store is open (database and WAL)', () => {
    assert.ok(paths.some((p) => existsSync(`${p}-wal`)), 'the WAL is there to search');
    assertNoneInClear('open');
  });

  it('and after the stores are closed and the WAL is folded into the database', async () => {
    await worlds.closeAll();
    assertNoneInClear('closed');
  });
});
