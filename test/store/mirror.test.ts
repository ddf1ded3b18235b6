/**
 * StoreMirror, the in-memory copy the hot path reads: a resync (its feed fell behind a compaction) reloads it, trying
 * again while the store does not answer, serving the old copy meanwhile and telling its listeners what changed; a
 * lookup that misses memory asks the store briefly, and not at all while the store is known to be unreachable.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { GatehouseError } from '../../src/core/index.ts';
import { StoreMirror, openSqliteStore, type Store, type StoreChange } from '../../src/store/index.ts';
import { tempDir } from '../harness/tmp.ts';

/** `inner` with switches: `failing` makes revision() and list() reject, `hanging` makes get() never answer. */
function switchable(inner: Store) {
  const down = () => Promise.reject(new GatehouseError('ERR_STORE_UNAVAILABLE', 'the store is down (test)'));
  const state = { failing: false, hanging: false, reachable: true, gets: 0 };
  const store: Store = {
    name: 'switchable',
    get: (kind, id) => {
      state.gets++;
      return state.hanging ? new Promise(() => undefined) : inner.get(kind, id);
    },
    list: (kind, options) => (state.failing ? down() : inner.list(kind, options)),
    put: (kind, id, value, options) => inner.put(kind, id, value, options),
    delete: (kind, id, options) => inner.delete(kind, id, options),
    transact: (ops) => inner.transact(ops),
    kinds: () => inner.kinds(),
    revision: () => (state.failing ? down() : inner.revision()),
    watch: (from, watcher, signal) => inner.watch(from, watcher, signal),
    sweep: () => inner.sweep(),
    healthy: () => inner.healthy(),
    reachable: () => state.reachable,
    close: () => inner.close(),
  };
  return { store, state };
}

async function waitFor(condition: () => boolean, what: string, timeout = 5000): Promise<void> {
  const deadline = Date.now() + timeout;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('StoreMirror', () => {
  const t = tempDir('gatehouse-mirror-');
  after(() => t.cleanup());

  it('reloads after a resync, retrying while the store fails, serving its old copy meanwhile, and tells its listeners what changed', async () => {
    const file = join(t.dir, 'resync.db');
    const mine = await openSqliteStore(file, { pollInterval: 10 });
    const other = await openSqliteStore(file, { pollInterval: 10 });
    try {
      await other.put('session', 's1', { user: 'a' });
      await other.put('session', 's2', { user: 'b' });
      const { store, state } = switchable(mine);
      const resyncs: string[] = [];
      let failures = 0;
      const mirror = new StoreMirror(store, ['session'], { retryDelay: 20, onResync: (r) => resyncs.push(r.reason), onReloadFailed: () => failures++ });
      await mirror.start();
      assert.equal(mirror.live, true);
      const changes: StoreChange[] = [];
      mirror.onChange((c) => changes.push(c));

      state.failing = true;
      // another process changes things and compacts the history before this one's feed has read it
      await other.delete('session', 's1');
      await other.put('session', 's3', { user: 'c' });
      await other.compact();
      await waitFor(() => resyncs.length === 1 && failures >= 2, 'a resync whose reload keeps failing');
      assert.deepEqual(resyncs, ['compacted']);
      assert.equal(mirror.live, false);
      assert.deepEqual(mirror.get('session', 's1'), { user: 'a' }, 'the old copy serves meanwhile');
      assert.equal(changes.length, 0);

      state.failing = false;
      await waitFor(() => mirror.live, 'the reload');
      assert.equal(mirror.get('session', 's1'), undefined);
      assert.deepEqual(mirror.get('session', 's3'), { user: 'c' });
      assert.deepEqual(
        changes.map((c) => [c.id, c.value === undefined ? 'gone' : 'there']).sort(),
        [['s1', 'gone'], ['s3', 'there']],
        'the listeners heard of the deletion and the new record, and of nothing else',
      );
      // and it follows the feed again
      await other.put('session', 's4', { user: 'd' });
      await waitFor(() => mirror.get('session', 's4') !== undefined, 'a change after the reload');
      mirror.close();
    } finally {
      await mine.close();
      await other.close();
    }
  });

  it('lookup: a miss asks the store, for a moment at most, and not at all while the store is unreachable', async () => {
    const inner = await openSqliteStore(join(t.dir, 'lookup.db'));
    try {
      const { store, state } = switchable(inner);
      const mirror = new StoreMirror(store, ['session'], { lookupTimeout: 200 });
      await mirror.start();
      // written behind the mirror's back (as by another instance a moment ago)
      await inner.put('session', 'fresh', { user: 'a' });
      assert.deepEqual(await mirror.lookup('session', 'fresh'), { user: 'a' });

      state.hanging = true;
      const started = Date.now();
      assert.equal(await mirror.lookup('session', 'unknown'), undefined);
      const waited = Date.now() - started;
      assert.ok(waited >= 150 && waited < 1000, `a store that does not answer is waited for briefly: ${waited} ms`);

      state.reachable = false;
      const gets = state.gets;
      assert.equal(await mirror.lookup('session', 'unknown-too'), undefined);
      assert.equal(state.gets, gets, 'an unreachable store is not asked');
      mirror.close();
    } finally {
      await inner.close();
    }
  });
});
