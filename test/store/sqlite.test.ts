import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { GatehouseError, type ErrorCode } from '../../src/core/index.ts';
import { runStoreContract } from '../../src/store/contract.ts';
import { openSqliteStore, openStore, type SqliteStore, type StoreChange, type StoreResync } from '../../src/store/index.ts';

const root = mkdtempSync(join(tmpdir(), 'gatehouse-store-'));
after(() => rmSync(root, { recursive: true, force: true }));
let dirCounter = 0;
/** A database path in a folder of its own that does not exist yet. */
function freshPath(): string {
  return join(root, `db${++dirCounter}`, 'nested', 'gatehouse.db');
}

runStoreContract('sqlite', () => openSqliteStore(join(root, 'contract', 'gatehouse.db'), { pollInterval: 20 }), {
  compact: async (store: SqliteStore) => void (await store.compact()),
  config: { sqlite: { path: 'contract/gatehouse.db' } },
  baseDir: root,
});

async function rejectsWith(promise: Promise<unknown>, code: ErrorCode): Promise<void> {
  await assert.rejects(promise, (err: unknown) => err instanceof GatehouseError && err.code === code);
}

async function waitFor(condition: () => boolean, what: string, timeout = 5000): Promise<void> {
  const deadline = Date.now() + timeout;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe('SQLite store', () => {
  it('creates the missing folders and a database only its owner can read', async () => {
    const path = freshPath();
    const store = await openSqliteStore(path);
    try {
      await store.put('k', 'a', 1);
      assert.equal(store.path, path);
      assert.equal(statSync(path).mode & 0o777, 0o600);
      assert.equal(statSync(`${path}-wal`).mode & 0o777, 0o600);
      assert.equal(statSync(join(path, '..')).mode & 0o777, 0o700);
    } finally {
      await store.close();
    }
  });

  it('opens the configured file, relative to the base folder', async () => {
    const store = await openStore({ sqlite: { path: 'conf/store.db' } }, root);
    try {
      assert.equal(store.name, 'sqlite');
      assert.equal((store as SqliteStore).path, join(root, 'conf', 'store.db'));
    } finally {
      await store.close();
    }
  });

  it('uses WAL mode and keeps its data across opens', async () => {
    const path = freshPath();
    const first = await openSqliteStore(path);
    const put = await first.put('k', 'a', { x: 1 });
    await first.close();
    const second = await openSqliteStore(path);
    try {
      assert.deepEqual(await second.get('k', 'a'), put);
      assert.equal(await second.revision(), put.revision);
    } finally {
      await second.close();
    }
    const raw = new Database(path, { readonly: true });
    try {
      assert.equal(raw.pragma('journal_mode', { simple: true }), 'wal');
    } finally {
      raw.close();
    }
  });

  it('refuses a file that is not a Gatehouse store, or one from a newer Gatehouse', async () => {
    const garbage = freshPath();
    await openSqliteStore(garbage).then((s) => s.close());
    writeFileSync(garbage, 'not a database, not at all'.repeat(100));
    rmSync(`${garbage}-wal`, { force: true });
    rmSync(`${garbage}-shm`, { force: true });
    await rejectsWith(openSqliteStore(garbage), 'ERR_STORE_UNAVAILABLE');

    const foreign = freshPath();
    await openSqliteStore(foreign).then((s) => s.close());
    const other = join(foreign, '..', 'other.db');
    const raw = new Database(other);
    raw.exec('CREATE TABLE t (x)');
    raw.close();
    await rejectsWith(openSqliteStore(other), 'ERR_STORE_UNAVAILABLE');

    const newer = freshPath();
    await openSqliteStore(newer).then((s) => s.close());
    const db = new Database(newer);
    db.pragma('user_version = 99');
    db.close();
    await rejectsWith(openSqliteStore(newer), 'ERR_STORE_UNAVAILABLE');
  });

  it('checks its options and names the known ones', async () => {
    await assert.rejects(openSqliteStore(freshPath(), { pollIntervall: 10 } as never), /pollInterval/);
    await assert.rejects(openSqliteStore(freshPath(), { pollInterval: -1 }), TypeError);
  });

  it('sweep returns how many expired records it deleted, in one revision', async () => {
    const store = await openSqliteStore(freshPath(), { sweepInterval: 0 });
    try {
      const expiresAt = Date.now() + 30;
      for (const id of ['a', 'b', 'c']) await store.put('k', id, id, { expiresAt });
      await store.put('k', 'd', 'd');
      await waitFor(() => Date.now() > expiresAt, 'the expiry');
      const before = await store.revision();
      assert.equal(await store.sweep(), 3);
      assert.equal(await store.revision(), before + 1);
      assert.equal(await store.sweep(), 0);
      assert.equal(await store.revision(), before + 1);
    } finally {
      await store.close();
    }
  });

  it('sweeps by itself, so a watcher sees expired records go without anyone calling sweep', async () => {
    const store = await openSqliteStore(freshPath(), { sweepInterval: 20, pollInterval: 20 });
    const controller = new AbortController();
    try {
      const seen: StoreChange[] = [];
      store.watch(0, { onChanges: (c) => seen.push(...c), onResync: () => assert.fail('resync') }, controller.signal);
      await store.put('k', 'a', 1, { expiresAt: Date.now() + 50 });
      await waitFor(() => seen.length === 2, 'the deletion');
      assert.deepEqual(seen[1], { kind: 'k', id: 'a', revision: 2 });
    } finally {
      controller.abort();
      await store.close();
    }
  });

  it('prunes its change log by length, and a watcher behind it is told to resync', async () => {
    const store = await openSqliteStore(freshPath(), { sweepInterval: 0, maxChanges: 5 });
    const controller = new AbortController();
    try {
      for (let i = 0; i < 20; i++) await store.put('k', `r${i}`, i);
      await store.sweep(); // prunes too
      const resyncs: StoreResync[] = [];
      const seen: StoreChange[] = [];
      store.watch(10, { onChanges: (c) => seen.push(...c), onResync: (r) => resyncs.push(r) }, controller.signal);
      const recent = new AbortController();
      store.watch(15, { onChanges: (c) => seen.push(...c), onResync: (r) => resyncs.push(r) }, recent.signal);
      await waitFor(() => resyncs.length === 1 && seen.length === 5, 'a resync and the kept changes');
      recent.abort();
      assert.deepEqual(resyncs, [{ fromRevision: 10, reason: 'compacted' }]);
      assert.deepEqual(
        seen.map((c) => c.revision),
        [16, 17, 18, 19, 20],
      );
    } finally {
      controller.abort();
      await store.close();
    }
  });

  it('prunes its change log by age', async () => {
    const store = await openSqliteStore(freshPath(), { sweepInterval: 0, changeRetention: 50 });
    try {
      await store.put('k', 'old', 1);
      const start = Date.now();
      await waitFor(() => Date.now() > start + 60, 'the retention to pass');
      await store.put('k', 'new', 2);
      await store.sweep();
      const resyncs: StoreResync[] = [];
      const seen: StoreChange[] = [];
      const controller = new AbortController();
      store.watch(1, { onChanges: (c) => seen.push(...c), onResync: (r) => resyncs.push(r) }, controller.signal);
      await waitFor(() => seen.length === 1, 'the kept change');
      controller.abort();
      const old = new AbortController();
      store.watch(0, { onChanges: (c) => seen.push(...c), onResync: (r) => resyncs.push(r) }, old.signal);
      await waitFor(() => resyncs.length === 1, 'a resync');
      assert.deepEqual(seen.map((c) => c.id), ['new']);
    } finally {
      await store.close();
    }
  });

  it('reports a database it can no longer write as unavailable, not as a crash', async () => {
    const path = freshPath();
    const store = await openSqliteStore(path, { busyTimeout: 50 });
    const blocker = new Database(path);
    try {
      blocker.exec('BEGIN IMMEDIATE');
      await rejectsWith(store.put('k', 'a', 1), 'ERR_STORE_UNAVAILABLE');
      assert.equal(await store.get('k', 'a'), undefined);
      assert.equal(await store.healthy(), true, 'reads still work while another connection writes');
      blocker.exec('ROLLBACK');
      await store.put('k', 'a', 1);
    } finally {
      blocker.close();
      await store.close();
    }
  });

  it('a process that exits without close leaves the database usable', () => {
    const path = freshPath();
    const script = `
      import { openSqliteStore } from './src/store/index.ts';
      const store = await openSqliteStore(${JSON.stringify(path)});
      await store.put('k', 'a', 1);
      process.exit(0);
    `;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: fileURLToPath(new URL('../../', import.meta.url)),
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, r.stderr);
    return openSqliteStore(path).then(async (store) => {
      assert.equal((await store.get('k', 'a'))?.value, 1);
      await store.close();
    });
  });
});
