/**
 * Revoking: seen by another instance on the same SQLite file through the change feed within a second, listed in a
 * CRL that openssl reads and verifies, rebuilt after revocations and daily; expired certificates drop out.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { AUDIT_KIND, type AuditRecord } from '../../src/directory/index.ts';
import { parseCrl } from '../../src/pki/index.ts';
import type { CertificateRecord } from '../../src/ca/index.ts';
import { Worlds, dbPath, eventually, makeTempDir, openssl, refused, revokedSerialsInText, type CaWorld, type TempDir } from './support.ts';

const DAY = 86_400_000;

/** `4F1A…` as `4f:1a:…`: how people paste serials from openssl output. */
function colonLower(serial: string): string {
  return serial.toLowerCase().replace(/(..)(?!$)/g, '$1:');
}

/** How `openssl crl -text` prints a time: `Nov  2 18:31:50 2026 GMT`. */
function opensslDate(ms: number): string {
  const d = new Date(ms);
  return `${d.toUTCString().slice(8, 11)} ${String(d.getUTCDate()).padStart(2, ' ')} ${d.toISOString().slice(11, 19)} ${d.getUTCFullYear()} GMT`;
}

describe('revocation and the CRL', () => {
  let dir: TempDir;
  const worlds = new Worlds();
  let a: CaWorld;
  let b: CaWorld;
  let caFile: string;

  before(async () => {
    dir = await makeTempDir();
    const path = dbPath(dir.path, 'shared');
    a = await worlds.open(path);
    await a.ca.createRoot({ by: 'cli' });
    b = await worlds.open(path); // another connection to the same file, as another process has
    caFile = await dir.write('ca.crt', a.ca.caBundlePem());
  });
  after(async () => {
    await worlds.closeAll();
    await dir.remove();
  });

  it('a revocation reaches another instance through the change feed within a second', async () => {
    const heardByB: CertificateRecord[] = [];
    const heardByA: CertificateRecord[] = [];
    b.ca.onRevoked((r) => heardByB.push(r));
    a.ca.onRevoked((r) => heardByA.push(r));
    const { record } = await a.ca.issue({ user: 'ann@example.com', device: 'laptop', issuedBy: 'cli' });
    await eventually(() => b.ca.recordOf(record.serial) !== undefined, 1000);
    assert.equal(b.ca.isRevoked(record.serial), false);
    assert.equal(b.ca.userOf(record.serial), 'ann@example.com');

    const started = Date.now();
    const { changed } = await a.ca.revoke(colonLower(record.serial), 'root@example.com', 'lost laptop');
    assert.equal(changed, true);
    assert.equal(a.ca.isRevoked(record.serial), true, 'the revoking process knows at once');
    assert.equal(heardByA.length, 1);
    // B is told by the feed (its listener fires without anyone reading B)
    await eventually(() => heardByB.length > 0, 1000);
    assert.ok(Date.now() - started < 1000, `took ${Date.now() - started} ms`);
    assert.equal(heardByB[0]!.serial, record.serial);
    assert.deepEqual({ by: heardByB[0]!.revoked?.by, reason: heardByB[0]!.revoked?.reason }, { by: 'root@example.com', reason: 'lost laptop' });
    assert.equal(b.ca.isRevoked(record.serial), true);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(heardByB.length, 1, 'told once');
  });

  it('revoking again keeps the first revocation; an unknown serial is ERR_NOT_FOUND, a malformed one ERR_BAD_REQUEST', async () => {
    const { record } = await a.ca.issue({ user: 'ann@example.com', issuedBy: 'cli' });
    const first = await a.ca.revoke(record.serial, 'root@example.com', 'first');
    const second = await b.ca.revoke(`0x${record.serial.toLowerCase()}`, 'other@example.com', 'second');
    assert.equal(second.changed, false);
    assert.deepEqual(second.record.revoked, first.record.revoked);
    await refused(a.ca.revoke('DEADBEEF', 'cli'), 'ERR_NOT_FOUND');
    await refused(a.ca.revoke('not-a-serial', 'cli'), 'ERR_BAD_REQUEST');
    await refused(a.ca.revoke(record.serial, 'cli', 'x'.repeat(201)), 'ERR_BAD_REQUEST');
    const audit = (await a.store.list<AuditRecord>(AUDIT_KIND)).map((r) => r.value).filter((r) => r.target === `certificate:${record.serial}`);
    assert.deepEqual(audit.map((r) => [r.action, r.actor]), [['certificate.issue', 'cli'], ['certificate.revoke', 'root@example.com']]);
  });

  it('revokeAllOf revokes every live certificate of a user at once, and no one else\'s', async () => {
    const dave = await Promise.all([1, 2, 3].map((i) => a.ca.issue({ user: 'dave@example.com', device: `d${i}`, issuedBy: 'cli' })));
    const erin = await a.ca.issue({ user: 'erin@example.com', issuedBy: 'cli' });
    await a.ca.revoke(dave[0]!.record.serial, 'cli');
    await eventually(() => b.ca.isRevoked(dave[0]!.record.serial), 1000);
    const heard: string[] = [];
    b.ca.onRevoked((r) => heard.push(r.serial));
    const revoked = await a.ca.revokeAllOf('Dave@Example.com', 'root@example.com', 'user disabled');
    assert.deepEqual(revoked.map((r) => r.serial).sort(), [dave[1]!.record.serial, dave[2]!.record.serial].sort());
    for (const d of dave) assert.equal(a.ca.isRevoked(d.record.serial), true);
    assert.equal(a.ca.isRevoked(erin.record.serial), false);
    assert.deepEqual(await a.ca.revokeAllOf('dave@example.com', 'cli'), []);
    await eventually(() => heard.length === 2, 1000);
    const listed = await b.ca.list({ user: 'dave@example.com' });
    assert.deepEqual(listed.map((r) => r.device).sort(), ['d1', 'd2', 'd3']);
    assert.ok(listed.every((r) => r.revoked));
  });

  it('the CRL is signed by the CA and lists every revoked, unexpired serial with its revocation time; openssl reads and verifies it', async () => {
    const kept = await a.ca.issue({ user: 'fay@example.com', issuedBy: 'cli' });
    const gone = await a.ca.issue({ user: 'fay@example.com', issuedBy: 'cli' });
    const { record } = await a.ca.revoke(gone.record.serial, 'cli');
    const pem = await a.ca.crlPem();
    assert.match(pem, /^-----BEGIN X509 CRL-----\n/);
    const file = await dir.write('list.crl', pem);
    const text = await openssl('crl', '-inform', 'PEM', '-in', file, '-noout', '-text');
    const listed = revokedSerialsInText(text);
    const expected = (await a.ca.list()).filter((r) => r.revoked).map((r) => r.serial);
    assert.deepEqual([...listed].sort(), [...expected].sort());
    assert.ok(listed.includes(gone.record.serial));
    assert.ok(!listed.includes(kept.record.serial));
    assert.ok(text.includes(`Serial Number: ${gone.record.serial}\n        Revocation Date: ${opensslDate(record.revoked!.at)}\n`), text);
    assert.match(await openssl('crl', '-in', file, '-CAfile', caFile, '-noout'), /verify OK/);
    const info = parseCrl(pem);
    assert.equal(await info.verify(a.ca.caCertificatePem()), true);
    assert.ok(info.nextUpdate!.getTime() - info.thisUpdate.getTime() >= 7 * DAY);
    assert.ok(info.thisUpdate.getTime() <= Date.now());
  });

  it('serves the CRL from memory, and rebuilds it when a revocation arrives from another instance', async () => {
    const first = await a.ca.crlPem();
    assert.equal(await a.ca.crlPem(), first, 'unchanged: the same CRL');
    const { record } = await b.ca.issue({ user: 'gus@example.com', issuedBy: 'cli' });
    await b.ca.revoke(record.serial, 'cli');
    await eventually(async () => parseCrl(await a.ca.crlPem()).revoked.has(record.serial), 1000);
    assert.notEqual(await a.ca.crlPem(), first);
  });

  it('rebuilds the CRL daily, well before its nextUpdate', async (t) => {
    const first = parseCrl(await a.ca.crlPem());
    t.mock.timers.enable({ apis: ['Date'], now: Date.now() });
    t.mock.timers.tick(23 * 3_600_000);
    assert.equal(parseCrl(await a.ca.crlPem()).thisUpdate.getTime(), first.thisUpdate.getTime(), 'still the same within the day');
    t.mock.timers.tick(2 * 3_600_000);
    const next = parseCrl(await a.ca.crlPem());
    assert.ok(next.thisUpdate.getTime() > first.thisUpdate.getTime() + DAY - 120_000);
    assert.ok(next.nextUpdate!.getTime() > Date.now() + 6 * DAY);
    assert.ok(next.crlNumber! > first.crlNumber!);
  });

  it('expired certificates drop out of the store, the list, the hot path and the CRL', async (t) => {
    t.mock.timers.enable({ apis: ['Date'], now: Date.now() });
    const short = await a.ca.issue({ user: 'hal@example.com', days: 1, issuedBy: 'cli' });
    const shortRevoked = await a.ca.issue({ user: 'hal@example.com', days: 1, issuedBy: 'cli' });
    const long = await a.ca.issue({ user: 'hal@example.com', days: 30, issuedBy: 'cli' });
    await a.ca.revoke(shortRevoked.record.serial, 'cli');
    await a.ca.revoke(long.record.serial, 'cli');
    assert.equal(parseCrl(await a.ca.crlPem()).revoked.has(shortRevoked.record.serial), true);

    t.mock.timers.tick(DAY + 120_000);
    assert.deepEqual((await a.ca.list({ user: 'hal@example.com' })).map((r) => r.serial), [long.record.serial]);
    assert.equal(await a.ca.get(short.record.serial), undefined);
    assert.equal(a.ca.recordOf(shortRevoked.record.serial), undefined);
    assert.equal(b.ca.recordOf(short.record.serial), undefined);
    await refused(a.ca.revoke(short.record.serial, 'cli'), 'ERR_NOT_FOUND');
    t.mock.timers.tick(DAY); // the next daily CRL
    const crl = parseCrl(await a.ca.crlPem());
    assert.equal(crl.revoked.has(shortRevoked.record.serial), false);
    assert.equal(crl.revoked.has(long.record.serial), true);
  });
});
