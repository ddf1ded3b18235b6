/**
 * Server certificates for Gatehouse's own hosts: issued once, kept in the store with the key sealed, shared by every
 * instance, renewed when a third of the validity (at most 30 days) is left, and issued anew after a CA change.
 */
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { renewalTime } from '../../src/ca/index.ts';
import { Worlds, dbPath, makeTempDir, openssl, refused, type CaWorld, type TempDir } from './support.ts';

const DAY = 86_400_000;

describe('server certificates', () => {
  let dir: TempDir;
  const worlds = new Worlds();
  let a: CaWorld;
  let b: CaWorld;

  before(async () => {
    dir = await makeTempDir();
    const path = dbPath(dir.path, 'shared');
    a = await worlds.open(path);
    await a.ca.createRoot({ by: 'cli' });
    b = await worlds.open(path);
  });
  after(async () => {
    await worlds.closeAll();
    await dir.remove();
  });

  it('issues one for a host set, keeps it in the store, and every instance serves the same one', async () => {
    const cert = await a.ca.serverCertificate(['App.Example.com', '*.example.com', '10.0.0.1', 'app.example.com.']);
    assert.deepEqual(cert.hosts, ['*.example.com', '10.0.0.1', 'app.example.com']);
    assert.ok(new X509Certificate(cert.certPem).checkPrivateKey(createPrivateKey(cert.keyPem)));
    const file = await dir.write('server.crt', cert.certPem);
    const text = await openssl('x509', '-in', file, '-noout', '-text');
    assert.match(text, /DNS:\*\.example\.com, IP Address:10\.0\.0\.1, DNS:app\.example\.com|DNS:\*\.example\.com, DNS:app\.example\.com, IP Address:10\.0\.0\.1/);
    assert.match(text, /TLS Web Server Authentication/);
    assert.match(await openssl('verify', '-CAfile', await dir.write('ca.crt', a.ca.caBundlePem()), file), /OK/);
    assert.ok(Math.abs(cert.notAfter - (Date.now() + 90 * DAY)) < 5000, '90 days by default');
    assert.equal(cert.renewAt, cert.notAfter - 30 * DAY);

    const again = await a.ca.serverCertificate(['app.example.com', '10.0.0.1', '*.example.com']);
    assert.equal(again.serial, cert.serial);
    const elsewhere = await b.ca.serverCertificate(['*.example.com', 'app.example.com', '10.0.0.1']);
    assert.equal(elsewhere.serial, cert.serial);
    assert.equal(elsewhere.keyPem, cert.keyPem);
    const [record] = (await a.ca.list({ kind: 'server' })).filter((r) => r.serial === cert.serial);
    assert.deepEqual({ hosts: record?.hosts, issuedBy: record?.issuedBy, device: record?.device }, { hosts: cert.hosts, issuedBy: 'gatehouse', device: '*.example.com' });
  });

  it('shares one issue between concurrent callers, in one instance and across instances', async () => {
    const hosts = ['race.example.com'];
    const all = await Promise.all([a.ca.serverCertificate(hosts), a.ca.serverCertificate(hosts), b.ca.serverCertificate(hosts), b.ca.serverCertificate(hosts)]);
    assert.equal(new Set(all.map((c) => c.serial)).size, 1);
    assert.equal((await a.ca.list({ kind: 'server' })).filter((r) => r.hosts?.includes('race.example.com')).length, 1);
  });

  it('renews when less than a third of the validity (at most 30 days) is left', async (t) => {
    t.mock.timers.enable({ apis: ['Date'], now: Date.now() });
    const first = await a.ca.serverCertificate(['renew.example.com']);
    t.mock.timers.tick(59 * DAY);
    assert.equal((await a.ca.serverCertificate(['renew.example.com'])).serial, first.serial, '31 days left: kept');
    t.mock.timers.tick(2 * DAY);
    const renewed = await a.ca.serverCertificate(['renew.example.com']);
    assert.notEqual(renewed.serial, first.serial, '29 days left: renewed');
    assert.ok(renewed.notBefore > first.notBefore + 60 * DAY);
    assert.equal((await b.ca.serverCertificate(['renew.example.com'])).serial, renewed.serial, 'the other instance takes the renewed one');

    const brief = await a.ca.serverCertificate(['brief.example.com'], { days: 3 });
    assert.equal(brief.renewAt, renewalTime(brief.notBefore, brief.notAfter));
    assert.ok(Math.abs(brief.notAfter - brief.renewAt - (3 * DAY + 60_000) / 3) < 1000, 'a third of a short validity');
    t.mock.timers.tick(2 * DAY + 1000);
    assert.notEqual((await a.ca.serverCertificate(['brief.example.com'], { days: 3 })).serial, brief.serial);
  });

  it('issues anew after the CA is replaced', async () => {
    const path = dbPath(dir.path, 'replaced');
    const { ca } = await worlds.open(path);
    await ca.createRoot({ by: 'cli' });
    const before = await ca.serverCertificate(['gate.example.com']);
    await ca.createRoot({ by: 'cli', force: true });
    const after = await ca.serverCertificate(['gate.example.com']);
    assert.notEqual(after.serial, before.serial);
    assert.ok(new X509Certificate(after.certPem).verify(new X509Certificate(ca.caCertificatePem()).publicKey));
  });

  it('refuses what is no host name or IP address (ERR_BAD_REQUEST)', async () => {
    for (const hosts of [[], ['bad host'], ['a.*.example.com'], ['-x.example.com'], ['x..example.com'], [42]]) {
      await refused(a.ca.serverCertificate(hosts as string[]), 'ERR_BAD_REQUEST');
    }
    await refused(a.ca.serverCertificate(['ok.example.com'], { days: 0 }), 'ERR_BAD_REQUEST');
  });
});
