/**
 * `gatehouse backup` and `gatehouse restore`, end to end: a Gatehouse on SQLite filled through its real services
 * (a user, a role membership, an API token, a session, the internal CA and a device certificate, their audit
 * records), backed up with the CLI, restored into etcd, compared record by record, and a Gatehouse started on the
 * etcd store that lets the same token through and issues certificates with the restored CA key.
 */
import assert from 'node:assert/strict';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { openStore, type Store, type StoreConfig } from '../../src/store/index.ts';
import { TestCa, runCli, send, startEcho, startEtcd, startGatehouse, tempDir, type Backend, type CertFiles, type EtcdCluster } from '../harness/index.ts';

const BOB = 'bob@example.com';
const ROOT = { email: 'root@example.com' };
const ROUTE = 'app.corp.test';

interface Row {
  kind: string;
  id: string;
  value: unknown;
  expiresAt?: number;
}

/** Every live record of a store, by kind and id, as the store gives them (without revisions). */
async function everything(store: Store): Promise<Row[]> {
  const rows: Row[] = [];
  for (const kind of await store.kinds()) {
    for (const r of await store.list(kind)) rows.push({ kind, id: r.id, value: r.value, ...(r.expiresAt !== undefined ? { expiresAt: r.expiresAt } : {}) });
  }
  return rows;
}

describe('gatehouse backup and restore', { timeout: 90_000 }, () => {
  const t = tempDir('gatehouse-backup-');
  let ca: TestCa;
  let server: CertFiles;
  let echo: Backend;
  let etcd: EtcdCluster;
  const sqliteStore: StoreConfig = { sqlite: { path: join(t.dir, 'gatehouse.db') } };
  let etcdStore: StoreConfig;

  const config = (store: StoreConfig) => ({
    server: { https: '127.0.0.1:0', authHost: 'gate.test', workers: 1, tls: { cert: server.cert, key: server.key } },
    store,
    identity: {
      // sign-in is needed for login routes, not reached: the requests here carry API tokens
      oidc: { issuer: 'https://idp.invalid', clientId: 'gatehouse', clientSecret: 'not-used-not-used' },
      secretsKey: 'backup-test-secrets-key-0123456789',
      admins: [ROOT.email],
    },
    routes: [{ name: 'app', host: ROUTE, to: echo.origin, auth: 'login', allow: { roles: ['viewers'] } }],
    roles: [{ name: 'viewers', grants: ['app'] }],
  });
  const writeConfig = (name: string, store: StoreConfig) => {
    const file = join(t.dir, name);
    writeFileSync(file, stringify(config(store)));
    return file;
  };

  before(async () => {
    ca = new TestCa(t.dir);
    server = ca.server(['*.corp.test', 'gate.test']);
    [echo, etcd] = await Promise.all([startEcho(), startEtcd({ dir: join(t.dir, 'etcd') })]);
    etcdStore = { etcd: { endpoints: etcd.endpoints, prefix: '/gatehouse/' } };
  });
  after(async () => {
    await etcd?.close();
    await echo?.close();
    t.cleanup();
  });

  it('copies every record out of SQLite and into etcd, where a new Gatehouse takes the same token', async () => {
    // 1. a Gatehouse on SQLite, filled through its services
    const first = await startGatehouse(t.dir, config(sqliteStore), { name: 'sqlite.yaml' });
    let token: string;
    let serial: string;
    try {
      const { directory, sessions, ca: internalCa } = first.g.services;
      await directory.recordSignIn(BOB, '127.0.0.1');
      await directory.addMember('viewers', BOB, { actor: ROOT });
      ({ token } = await sessions.issueToken(BOB, 'ci', 3_600_000, 'api'));
      await sessions.create(BOB, [], undefined);
      await internalCa.createRoot({ by: ROOT.email });
      ({ serial } = (await internalCa.issue({ user: BOB, device: 'laptop', issuedBy: ROOT.email })).record);
      const ok = await send(ROUTE, first.httpsPort, ca.certPem, { path: '/', headers: { authorization: `Bearer ${token}` } });
      assert.equal(ok.status, 200, ok.body.toString());
    } finally {
      await first.close();
    }

    // 2. backup
    const file = join(t.dir, 'backup.jsonl');
    const backup = await runCli(['backup', '-c', join(t.dir, 'sqlite.yaml'), file]);
    assert.equal(backup.code, 0, backup.stderr);
    assert.match(backup.stderr, /^Backed up \d+ records from the sqlite store to .*backup\.jsonl \(.*audit \d+/);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const lines = readFileSync(file, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const header = lines.shift()!;
    assert.equal(header.format, 'gatehouse-backup');
    assert.equal(header.version, 1);
    assert.equal((header.source as { store: string }).store, 'sqlite');
    const kinds = new Set(lines.map((l) => l.kind));
    for (const kind of ['user', 'membership', 'token', 'session', 'ca', 'certificate', 'audit']) assert.ok(kinds.has(kind), `a ${kind} record is in the backup (${[...kinds].join(', ')})`);
    assert.ok(!readFileSync(file, 'utf8').includes('PRIVATE KEY'), 'the CA key stays sealed');
    assert.ok(!readFileSync(file, 'utf8').includes(token), 'a token is kept only as its hash');
    const again = await runCli(['backup', '-c', join(t.dir, 'sqlite.yaml'), file]);
    assert.equal(again.code, 1, 'an existing backup is not overwritten');
    assert.match(again.stderr, /already exists/);

    // 3. restore into etcd: refused into a store that holds records, unless --force
    const etcdConfig = writeConfig('etcd.yaml', etcdStore);
    const restored = await runCli(['restore', '-c', etcdConfig, file]);
    assert.equal(restored.code, 0, restored.stderr);
    assert.match(restored.stderr, new RegExp(`^Restored ${lines.length} of ${lines.length} records into the etcd store`));
    const refused = await runCli(['restore', '-c', etcdConfig, file]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /already holds records .*--force/);

    // 4. record by record, the same
    const sqlite = await openStore(sqliteStore, t.dir);
    const target = await openStore(etcdStore, t.dir);
    try {
      const source = await everything(sqlite);
      assert.equal(source.length, lines.length);
      assert.deepEqual(await everything(target), source);
      assert.deepEqual(lines, source, 'the file holds exactly the records');
      // --force replaces whatever is there
      await target.put('user', 'stranger@example.com', { email: 'stranger@example.com' });
      const forced = await runCli(['restore', '-c', etcdConfig, '--force', file]);
      assert.equal(forced.code, 0, forced.stderr);
      assert.deepEqual(await everything(target), source);
    } finally {
      await sqlite.close();
      await target.close();
    }

    // 5. a Gatehouse on etcd: the same token, membership and CA (whose sealed key opens with the same secretsKey)
    const second = await startGatehouse(t.dir, config(etcdStore), { name: 'etcd-serve.yaml' });
    try {
      const ok = await send(ROUTE, second.httpsPort, ca.certPem, { path: '/', headers: { authorization: `Bearer ${token}` } });
      assert.equal(ok.status, 200, ok.body.toString());
      const seen = echo.received.at(-1);
      assert.equal(seen?.headers['x-gatehouse-user'], BOB);
      const { ca: internalCa } = second.g.services;
      assert.equal((await internalCa.get(serial))?.user, BOB);
      const issued = await internalCa.issue({ user: BOB, device: 'phone', issuedBy: ROOT.email });
      assert.equal(issued.record.user, BOB);
      const refusedToken = await send(ROUTE, second.httpsPort, ca.certPem, { path: '/', headers: { authorization: 'Bearer gh_not-a-token' } });
      assert.equal(refusedToken.status, 401);
    } finally {
      await second.close();
    }
  });

  it('refuses a file that is not a backup, naming the line, and leaves the store alone', async () => {
    const bad = join(t.dir, 'bad.jsonl');
    writeFileSync(bad, '{"format":"gatehouse-backup","version":1,"source":{"store":"sqlite","revision":1},"created":"2026-01-01T00:00:00Z"}\n{"kind":"user","id":"a","value":1}\n{"kind":"no/slash","id":"a","value":1}\n');
    const emptyStore: StoreConfig = { sqlite: { path: join(t.dir, 'empty.db') } };
    const r = await runCli(['restore', '-c', writeConfig('empty.yaml', emptyStore), bad]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /bad\.jsonl:3: kind must be/);
    const store = await openStore(emptyStore, t.dir);
    try {
      assert.deepEqual(await store.kinds(), []);
    } finally {
      await store.close();
    }
    writeFileSync(bad, '{"hello":"world"}\n');
    const notBackup = await runCli(['restore', '-c', join(t.dir, 'empty.yaml'), bad]);
    assert.equal(notBackup.code, 1);
    assert.match(notBackup.stderr, /bad\.jsonl:1: not a Gatehouse backup/);
  });
});
