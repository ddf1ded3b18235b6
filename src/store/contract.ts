/**
 * The Store contract: every promise of `store.ts`, as tests every implementation runs unchanged.
 *
 *   runStoreContract('sqlite', () => openSqliteStore(file), { compact, config, baseDir });
 *
 * `open` must return a new connection to one shared backend on every call; each test works in kinds
 * of its own, so the backend need not be empty, but nothing else may write to it while the suite
 * runs (some tests check that the store revision did not move). Each test sweeps what it left
 * expiring. Waits poll briefly and are bounded in time.
 * Not exported from the store's index: only tests import this (it imports node:test).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { GatehouseError, type ErrorCode } from '../core/index.ts';
import type { ChildResult, ChildTask } from './contract-child.ts';
import type { StoreConfig } from './open.ts';
import type { Store, StoreChange, StoreOp, StoreResync } from './store.ts';

export interface StoreContractHooks<S extends Store> {
  /** Makes the backend forget its change history up to its current revision (as its own pruning or compaction would). */
  compact(store: S): Promise<void>;
  /** What another process passes to `openStore` to reach the same backend. */
  readonly config: StoreConfig;
  readonly baseDir: string;
}

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const childScript = fileURLToPath(new URL('./contract-child.ts', import.meta.url));
let kindCounter = 0;

export function runStoreContract<S extends Store>(name: string, open: () => Promise<S>, hooks: StoreContractHooks<S>): void {
  describe(`Store contract: ${name}`, { timeout: 60_000 }, () => {
    let stores: Store[] = [];
    let watches: AbortController[] = [];
    /** What watchers found wrong in their calls (thrown there, it would surface as uncaught). */
    let problems: unknown[] = [];
    /** The store of the current test, and a kind no other test (or run) uses. */
    let store: S;
    let kind: string;

    async function connect(): Promise<S> {
      const s = await open();
      stores.push(s);
      return s;
    }

    beforeEach(async () => {
      store = await connect();
      kind = `t${process.pid.toString(36)}${Date.now().toString(36)}n${++kindCounter}`;
    });

    afterEach(async () => {
      for (const w of watches) w.abort();
      try {
        await store.sweep(); // so that no later test sees the revision move under it
      } finally {
        for (const s of stores) await s.close().catch((err: unknown) => assertCode(err, 'ERR_STORE_CLOSED'));
        stores = [];
        watches = [];
      }
      const found = problems;
      problems = [];
      for (const problem of found) throw problem;
    });

    interface Follower {
      /** Changes to the test's kind, in order of arrival. */
      readonly changes: StoreChange[];
      /** The `onChanges` calls that held changes to the test's kind, filtered to it. */
      readonly batches: StoreChange[][];
      readonly resyncs: StoreResync[];
      readonly controller: AbortController;
      /** Set while `watch` itself is running, to catch a synchronous call. */
      inWatch: boolean;
    }

    /** Watches `s` from `from`, keeping what concerns `onlyKind`; checks order on every call. */
    function follow(s: Store, from: number, onlyKind = kind): Follower {
      const controller = new AbortController();
      watches.push(controller);
      let previous = from;
      const follower: Follower = { changes: [], batches: [], resyncs: [], controller, inWatch: true };
      s.watch(
        from,
        {
          onChanges: (changes) => check(() => {
            assert.equal(follower.inWatch, false, 'onChanges was called before watch returned');
            assert.ok(changes.length > 0, 'onChanges was called with no changes');
            // Revisions rise from call to call; one call may hold several changes of one revision.
            assert.ok(changes[0]!.revision > previous, `revision ${changes[0]!.revision} came after ${previous}`);
            for (const [i, c] of changes.entries()) {
              if (i > 0) assert.ok(c.revision >= changes[i - 1]!.revision, `revision ${c.revision} came after a later one`);
            }
            previous = changes.at(-1)!.revision;
            const mine = changes.filter((c) => c.kind === onlyKind);
            if (mine.length > 0) follower.batches.push(mine);
            follower.changes.push(...mine);
          }),
          onResync: (resync) => check(() => {
            assert.equal(follower.inWatch, false, 'onResync was called before watch returned');
            follower.resyncs.push(resync);
          }),
        },
        controller.signal,
      );
      follower.inWatch = false;
      return follower;
    }

    /** The changes arrived together in one `onChanges` call (perhaps with others). */
    function assertOneCall(follower: Follower, changes: StoreChange[]): void {
      const call = follower.batches.find((batch) => batch.includes(changes[0]!));
      assert.ok(call && changes.every((c) => call.includes(c)), 'the changes of one revision arrived in separate calls');
    }

    function check(assertions: () => void): void {
      try {
        assertions();
      } catch (err) {
        problems.push(err);
      }
    }

    function summary(changes: readonly StoreChange[]): string[] {
      return changes.map((c) => `${c.id}=${'value' in c ? JSON.stringify(c.value) : '(deleted)'}`);
    }

    describe('records', () => {
      it('get returns undefined for a record never written', async () => {
        assert.equal(await store.get(kind, 'nobody'), undefined);
      });

      it('put returns the record as stored and get reads back the same', async () => {
        const value = { name: 'Ada', groups: ['eng', 'ops'], nested: { n: 1.5, ok: true, none: null }, s: 'é✓😀', gone: undefined };
        const put = await store.put(kind, 'ada', value);
        const stored = { name: 'Ada', groups: ['eng', 'ops'], nested: { n: 1.5, ok: true, none: null }, s: 'é✓😀' };
        assert.deepEqual(put, { kind, id: 'ada', value: stored, revision: put.revision });
        assert.ok(Number.isSafeInteger(put.revision) && put.revision > 0);
        assert.deepEqual(await store.get(kind, 'ada'), put);
      });

      it('values are any JSON value and come back as JSON would give them', async () => {
        const when = new Date(1_700_000_000_000);
        for (const [id, value, back] of [
          ['null', null, null],
          ['zero', 0, 0],
          ['text', 'plain', 'plain'],
          ['list', [1, 'two', [3]], [1, 'two', [3]]],
          ['date', { when }, { when: when.toISOString() }],
        ] as const) {
          assert.deepEqual((await store.put(kind, id, value)).value, back, id);
          assert.deepEqual((await store.get(kind, id))?.value, back, id);
        }
      });

      it('put replaces the record at a higher revision', async () => {
        const first = await store.put(kind, 'a', 1);
        const second = await store.put(kind, 'a', 2);
        assert.ok(second.revision > first.revision);
        assert.deepEqual(await store.get(kind, 'a'), second);
      });

      it('kinds are separate namespaces, even when one kind starts with another', async () => {
        const other = `${kind}x`;
        await store.put(kind, 'same', 'mine');
        await store.put(other, 'same', 'other');
        await store.put(other, 'more', 'other');
        assert.equal((await store.get(kind, 'same'))?.value, 'mine');
        assert.equal((await store.get(other, 'same'))?.value, 'other');
        assert.deepEqual((await store.list(kind)).map((r) => r.id), ['same']);
        assert.equal(await store.delete(other, 'same'), true);
        assert.equal((await store.get(kind, 'same'))?.value, 'mine');
      });

      it('delete removes the record and says whether there was one', async () => {
        await store.put(kind, 'a', 1);
        assert.equal(await store.delete(kind, 'a'), true);
        assert.equal(await store.get(kind, 'a'), undefined);
        assert.equal(await store.delete(kind, 'a'), false);
        assert.equal(await store.delete(kind, 'never'), false);
      });

      it('rejects what is not a kind, an id, an option or a JSON value with a TypeError, storing nothing', async () => {
        const before = await store.revision();
        const cyclic: Record<string, unknown> = {};
        cyclic.self = cyclic;
        const mistakes: Array<[string, () => Promise<unknown>]> = [
          ['empty kind', () => store.put('', 'a', 1)],
          ['kind with a slash', () => store.get('a/b', 'a')],
          ['empty id', () => store.put(kind, '', 1)],
          ['id with NUL', () => store.get(kind, 'a\0b')],
          ['id with a lone surrogate', () => store.put(kind, 'a\ud800', 1)],
          ['undefined value', () => store.put(kind, 'a', undefined)],
          ['function value', () => store.put(kind, 'a', () => 1)],
          ['bigint value', () => store.put(kind, 'a', { n: 1n })],
          ['cyclic value', () => store.put(kind, 'a', cyclic)],
          ['misspelt put option', () => store.put(kind, 'a', 1, { ifRevison: 0 } as never)],
          ['negative ifRevision', () => store.put(kind, 'a', 1, { ifRevision: -1 })],
          ['fractional ifRevision', () => store.delete(kind, 'a', { ifRevision: 1.5 })],
          ['expiresAt not a number', () => store.put(kind, 'a', 1, { expiresAt: '1' as never })],
          ['limit 0', () => store.list(kind, { limit: 0 })],
          ['misspelt list option', () => store.list(kind, { prefx: 'a' } as never)],
          ['unknown transact op', () => store.transact([{ op: 'upsert', kind, id: 'a', value: 1 } as never])],
        ];
        for (const [what, call] of mistakes) await assert.rejects(call(), TypeError, what);
        assert.equal(await store.revision(), before);
        assert.deepEqual(await store.list(kind), []);
      });

      it('refuses a value over 1 MiB of JSON and takes one just under', async () => {
        await assert.rejects(store.put(kind, 'big', 'x'.repeat(1024 * 1024)), TypeError);
        await store.put(kind, 'fits', 'x'.repeat(1024 * 1024 - 2));
        assert.equal((await store.get<string>(kind, 'fits'))?.value.length, 1024 * 1024 - 2);
      });
    });

    describe('revisions', () => {
      it('the store revision grows with every write and not with reads', async () => {
        const r0 = await store.revision();
        assert.ok(Number.isSafeInteger(r0) && r0 >= 0);
        const put = await store.put(kind, 'a', 1);
        const r1 = await store.revision();
        assert.ok(r1 >= put.revision && put.revision > r0);
        await store.get(kind, 'a');
        await store.list(kind);
        assert.equal(await store.revision(), r1);
        await store.delete(kind, 'a');
        const r2 = await store.revision();
        assert.ok(r2 > r1);
        await store.transact([{ op: 'put', kind, id: 'b', value: 2 }]);
        assert.ok((await store.revision()) > r2);
      });

      it('a failed condition and a delete of nothing leave the revision alone', async () => {
        await store.put(kind, 'a', 1);
        const before = await store.revision();
        await rejectsWith(store.put(kind, 'a', 2, { ifRevision: 0 }), 'ERR_STORE_CONFLICT');
        assert.equal(await store.delete(kind, 'absent'), false);
        assert.equal(await store.revision(), before);
      });

      it('every connection sees the same revision', async () => {
        const other = await connect();
        const put = await store.put(kind, 'a', 1);
        assert.ok((await other.revision()) >= put.revision);
        assert.deepEqual(await other.get(kind, 'a'), put);
      });
    });

    describe('kinds', () => {
      it('lists every kind that holds records, once each and in order, without writing', async () => {
        const other = `${kind}-x`;
        const longer = `${kind}x`;
        await store.put(longer, 'a', 1);
        await store.put(kind, 'a', 1);
        await store.put(kind, 'b/c', 2);
        await store.put(other, 'a', 3);
        const before = await store.revision();
        const kinds = await store.kinds();
        assert.equal(await store.revision(), before);
        assert.deepEqual(kinds, [...new Set(kinds)].sort(), 'once each, in order');
        const mine = (list: string[]) => list.filter((k) => k === kind || k === other || k === longer);
        assert.deepEqual(mine(kinds), [kind, other, longer].sort());
        assert.equal(await store.delete(other, 'a'), true);
        assert.equal(await store.delete(longer, 'a'), true);
        assert.deepEqual(mine(await (await connect()).kinds()), [kind], 'a kind without records is gone');
      });

      it('rejects with ERR_STORE_CLOSED after close', async () => {
        const s = await connect();
        await s.close();
        await rejectsWith(s.kinds(), 'ERR_STORE_CLOSED');
      });
    });

    describe('list', () => {
      const ids = ['b', 'a', 'é', 'a0', 'B', 'a/b', 'a/', 'c', 'a/c', '~'];

      it('lists the records of one kind in id order', async () => {
        for (const id of ids) await store.put(kind, id, { id });
        const listed = await store.list<{ id: string }>(kind);
        assert.deepEqual(
          listed.map((r) => r.id),
          [...ids].sort(byUtf8),
        );
        for (const r of listed) assert.deepEqual(r, await store.get(kind, r.id));
      });

      it('prefix keeps the ids that start with it', async () => {
        const all = [...ids, 'a/\u{10ffff}', 'a/\u{10ffff}z', 'x\u{10ffff}', 'x\u{10ffff}\u{10ffff}', 'y', 'éa'];
        for (const id of all) await store.put(kind, id, 1);
        const listIds = async (prefix: string) => (await store.list(kind, { prefix })).map((r) => r.id);
        assert.deepEqual(await listIds('a/'), ['a/', 'a/b', 'a/c', 'a/\u{10ffff}', 'a/\u{10ffff}z']);
        assert.deepEqual(await listIds('a'), all.filter((id) => id.startsWith('a')).sort(byUtf8));
        assert.deepEqual(await listIds('x\u{10ffff}'), ['x\u{10ffff}', 'x\u{10ffff}\u{10ffff}']);
        assert.deepEqual(await listIds('é'), ['é', 'éa']);
        assert.deepEqual(await listIds('zz'), []);
        assert.deepEqual(await listIds(''), all.sort(byUtf8));
      });

      it('limit, after and reverse page through a kind both ways', async () => {
        const letters = ['a', 'b', 'c', 'd', 'e', 'f', 'g'];
        for (const id of [...letters].reverse()) await store.put(kind, id, id);
        const pages = async (reverse: boolean) => {
          const out: string[][] = [];
          let after: string | undefined;
          for (;;) {
            const page = await store.list(kind, { limit: 3, reverse, after });
            if (page.length === 0) return out;
            out.push(page.map((r) => r.id));
            after = page.at(-1)!.id;
          }
        };
        assert.deepEqual(await pages(false), [['a', 'b', 'c'], ['d', 'e', 'f'], ['g']]);
        assert.deepEqual(await pages(true), [['g', 'f', 'e'], ['d', 'c', 'b'], ['a']]);
        assert.deepEqual((await store.list(kind, { after: 'cc' })).map((r) => r.id), ['d', 'e', 'f', 'g']);
        assert.deepEqual((await store.list(kind, { after: 'cc', reverse: true })).map((r) => r.id), ['c', 'b', 'a']);
        assert.deepEqual((await store.list(kind, { limit: 100 })).length, 7);
      });

      it('prefix, after, reverse and limit combine', async () => {
        for (const id of ['u/1', 'u/2', 'u/3', 'u/4', 'v/1', 'u']) await store.put(kind, id, id);
        const listIds = async (options: Parameters<Store['list']>[1]) => (await store.list(kind, options)).map((r) => r.id);
        assert.deepEqual(await listIds({ prefix: 'u/', after: 'u/1', limit: 2 }), ['u/2', 'u/3']);
        assert.deepEqual(await listIds({ prefix: 'u/', reverse: true, limit: 3 }), ['u/4', 'u/3', 'u/2']);
        assert.deepEqual(await listIds({ prefix: 'u/', reverse: true, after: 'u/2' }), ['u/1']);
        assert.deepEqual(await listIds({ prefix: 'u/', after: 'u/4' }), []);
        assert.deepEqual(await listIds({ prefix: 'u/', after: 'a' }), ['u/1', 'u/2', 'u/3', 'u/4']);
        assert.deepEqual(await listIds({ prefix: 'u/', after: 'z', reverse: true, limit: 1 }), ['u/4']);
      });

      it('a kind with no records lists nothing', async () => {
        assert.deepEqual(await store.list(kind), []);
        assert.deepEqual(await store.list(kind, { prefix: 'a', reverse: true, limit: 5, after: 'b' }), []);
      });
    });

    describe('conditional writes', () => {
      it('ifRevision 0 creates only when the record is absent', async () => {
        const created = await store.put(kind, 'a', 1, { ifRevision: 0 });
        await rejectsWith(store.put(kind, 'a', 2, { ifRevision: 0 }), 'ERR_STORE_CONFLICT');
        assert.deepEqual(await store.get(kind, 'a'), created);
      });

      it('ifRevision N writes only over revision N', async () => {
        const first = await store.put(kind, 'a', 1);
        const second = await store.put(kind, 'a', 2, { ifRevision: first.revision });
        await rejectsWith(store.put(kind, 'a', 3, { ifRevision: first.revision }), 'ERR_STORE_CONFLICT');
        assert.deepEqual(await store.get(kind, 'a'), second);
        const third = await store.put(kind, 'a', 3, { ifRevision: second.revision });
        assert.equal(third.value, 3);
      });

      it('ifRevision N conflicts when the record is absent', async () => {
        const elsewhere = await store.put(kind, 'b', 1);
        await rejectsWith(store.put(kind, 'a', 1, { ifRevision: elsewhere.revision }), 'ERR_STORE_CONFLICT');
        assert.equal(await store.get(kind, 'a'), undefined);
      });

      it('delete with ifRevision deletes only revision N', async () => {
        const first = await store.put(kind, 'a', 1);
        const second = await store.put(kind, 'a', 2);
        await rejectsWith(store.delete(kind, 'a', { ifRevision: first.revision }), 'ERR_STORE_CONFLICT');
        assert.deepEqual(await store.get(kind, 'a'), second);
        assert.equal(await store.delete(kind, 'a', { ifRevision: second.revision }), true);
        await rejectsWith(store.delete(kind, 'a', { ifRevision: second.revision }), 'ERR_STORE_CONFLICT');
        assert.equal(await store.delete(kind, 'a', { ifRevision: 0 }), false);
      });

      it('a deleted record can be created again with ifRevision 0, at a new revision', async () => {
        const first = await store.put(kind, 'a', 1, { ifRevision: 0 });
        await store.delete(kind, 'a');
        const again = await store.put(kind, 'a', 2, { ifRevision: 0 });
        assert.ok(again.revision > first.revision);
      });

      it('a conflict from another connection is seen at once', async () => {
        const other = await connect();
        const mine = await store.put(kind, 'a', 1);
        await other.put(kind, 'a', 2, { ifRevision: mine.revision });
        await rejectsWith(store.put(kind, 'a', 3, { ifRevision: mine.revision }), 'ERR_STORE_CONFLICT');
        assert.equal((await store.get(kind, 'a'))?.value, 2);
      });
    });

    describe('transact', () => {
      it('applies puts and deletes together, every record at one new revision', async () => {
        await store.put(kind, 'old', 0);
        const before = await store.revision();
        await store.transact([
          { op: 'put', kind, id: 'a', value: 1 },
          { op: 'put', kind, id: 'b', value: 2, options: { ifRevision: 0 } },
          { op: 'delete', kind, id: 'old' },
          { op: 'delete', kind, id: 'never' },
        ]);
        const a = await store.get(kind, 'a');
        const b = await store.get(kind, 'b');
        assert.equal(a?.value, 1);
        assert.equal(b?.value, 2);
        assert.ok(a!.revision > before);
        assert.equal(a!.revision, b!.revision);
        assert.equal(await store.get(kind, 'old'), undefined);
        assert.equal(await store.revision(), a!.revision);
      });

      it('a failing condition anywhere writes nothing at all', async () => {
        const keep = await store.put(kind, 'keep', 'k');
        const stale = await store.put(kind, 'cas', 1);
        const current = await store.put(kind, 'cas', 2);
        const before = await store.revision();
        const attempts: StoreOp[][] = [
          [
            { op: 'put', kind, id: 'new', value: 'n' },
            { op: 'delete', kind, id: 'keep' },
            { op: 'put', kind, id: 'cas', value: 3, options: { ifRevision: stale.revision } },
          ],
          [
            { op: 'delete', kind, id: 'keep', ifRevision: keep.revision },
            { op: 'put', kind, id: 'cas', value: 3, options: { ifRevision: 0 } },
          ],
          [
            { op: 'put', kind, id: 'new', value: 'n', options: { ifRevision: 0 } },
            { op: 'delete', kind, id: 'keep', ifRevision: stale.revision },
          ],
        ];
        for (const ops of attempts) await rejectsWith(store.transact(ops), 'ERR_STORE_CONFLICT');
        assert.equal(await store.revision(), before);
        assert.deepEqual(await store.get(kind, 'keep'), keep);
        assert.deepEqual(await store.get(kind, 'cas'), current);
        assert.equal(await store.get(kind, 'new'), undefined);
      });

      it('conditions that hold let the whole transaction through', async () => {
        const a = await store.put(kind, 'a', 1);
        const b = await store.put(kind, 'b', 1);
        await store.transact([
          { op: 'put', kind, id: 'a', value: 2, options: { ifRevision: a.revision } },
          { op: 'delete', kind, id: 'b', ifRevision: b.revision },
          { op: 'put', kind, id: 'c', value: 1, options: { ifRevision: 0 } },
        ]);
        assert.deepEqual((await store.list(kind)).map((r) => [r.id, r.value]), [['a', 2], ['c', 1]]);
      });

      it('a transaction that changes nothing does not advance the revision', async () => {
        const before = await store.revision();
        await store.transact([]);
        await store.transact([{ op: 'delete', kind, id: 'absent' }]);
        assert.equal(await store.revision(), before);
      });

      it('naming one record twice is a TypeError', async () => {
        await assert.rejects(
          store.transact([
            { op: 'put', kind, id: 'a', value: 1 },
            { op: 'delete', kind, id: 'a' },
          ]),
          TypeError,
        );
        assert.equal(await store.get(kind, 'a'), undefined);
      });
    });

    describe('expiry', () => {
      it('a record is there until it expires and hidden from get and list after', async () => {
        const expiresAt = Date.now() + 150;
        const put = await store.put(kind, 'a', 1, { expiresAt });
        await store.put(kind, 'b', 2);
        assert.equal(put.expiresAt, expiresAt);
        assert.deepEqual(await store.get(kind, 'a'), put);
        assert.deepEqual((await store.list(kind)).map((r) => r.id), ['a', 'b']);
        await waitFor(async () => (await store.get(kind, 'a')) === undefined, 'the record to expire');
        assert.ok(Date.now() >= expiresAt);
        assert.deepEqual((await store.list(kind)).map((r) => r.id), ['b']);
      });

      it('an expired record counts as absent for conditions and delete', async () => {
        const put = await store.put(kind, 'a', 1, { expiresAt: Date.now() + 50 });
        await waitFor(async () => (await store.get(kind, 'a')) === undefined, 'the record to expire');
        assert.equal(await store.delete(kind, 'a'), false);
        await rejectsWith(store.put(kind, 'a', 2, { ifRevision: put.revision }), 'ERR_STORE_CONFLICT');
        const again = await store.put(kind, 'a', 2, { ifRevision: 0 });
        assert.deepEqual(await store.get(kind, 'a'), again);
      });

      it('a record written already expired is never seen', async () => {
        await store.put(kind, 'a', 1, { expiresAt: Date.now() - 1000 });
        assert.equal(await store.get(kind, 'a'), undefined);
        assert.deepEqual(await store.list(kind), []);
      });

      it('put without expiresAt makes a record permanent again', async () => {
        await store.put(kind, 'a', 1, { expiresAt: Date.now() + 100 });
        const permanent = await store.put(kind, 'a', 2);
        assert.equal('expiresAt' in permanent, false);
        const later = Date.now() + 150;
        await waitFor(async () => Date.now() > later, 'the old expiry to pass');
        await store.sweep();
        assert.deepEqual(await store.get(kind, 'a'), permanent);
      });

      it('sweep deletes expired records, and watchers see each as a deletion', async () => {
        const from = await store.revision();
        const watcher = follow(store, from);
        const short = await store.put(kind, 'short', 1, { expiresAt: Date.now() + 100 });
        await store.put(kind, 'long', 2, { expiresAt: Date.now() + 60_000 });
        await waitFor(async () => (await store.get(kind, 'short')) === undefined, 'the record to expire');
        const swept = await store.sweep();
        assert.ok(swept >= 0, 'sweep counts what it deleted');
        await waitFor(() => watcher.changes.length === 3, 'the deletion to be watched');
        const [first, second, deletion] = watcher.changes as [StoreChange, StoreChange, StoreChange];
        assert.deepEqual(first, { kind, id: 'short', revision: short.revision, value: 1, expiresAt: short.expiresAt });
        assert.equal(second.id, 'long');
        assert.deepEqual(deletion, { kind, id: 'short', revision: deletion.revision });
        assert.ok(deletion.revision > second.revision);
        assert.equal(await store.delete(kind, 'long'), true);
      });
    });

    describe('watch', () => {
      it('delivers puts, replacements and deletions in revision order', async () => {
        const watcher = follow(store, await store.revision());
        const a1 = await store.put(kind, 'a', 1);
        const b1 = await store.put(kind, 'b', { x: [1] }, { expiresAt: Date.now() + 60_000 });
        const a2 = await store.put(kind, 'a', 2);
        await store.delete(kind, 'b');
        await waitFor(() => watcher.changes.length === 4, 'four changes');
        assert.deepEqual(watcher.changes.slice(0, 3), [
          { kind, id: 'a', revision: a1.revision, value: 1 },
          { kind, id: 'b', revision: b1.revision, value: { x: [1] }, expiresAt: b1.expiresAt },
          { kind, id: 'a', revision: a2.revision, value: 2 },
        ]);
        const deletion = watcher.changes[3]!;
        assert.deepEqual(Object.keys(deletion).sort(), ['id', 'kind', 'revision']);
        assert.ok(deletion.revision > a2.revision);
        assert.equal(deletion.revision, await store.revision());
      });

      it('replays the changes after fromRevision and none before', async () => {
        await store.put(kind, 'before', 0);
        const from = await store.revision();
        await store.put(kind, 'a', 1);
        await store.put(kind, 'b', 2);
        const watcher = follow(store, from);
        await store.put(kind, 'c', 3);
        await waitFor(() => watcher.changes.length === 3, 'three changes');
        assert.deepEqual(summary(watcher.changes), ['a=1', 'b=2', 'c=3']);
      });

      it('never calls back before watch returns', async () => {
        await store.put(kind, 'a', 1);
        const watcher = follow(store, 0); // follow() fails the test on a synchronous call
        await waitFor(() => watcher.changes.length > 0 || watcher.resyncs.length > 0, 'the replay or a resync');
      });

      it('delivers a transaction in one call', async () => {
        const watcher = follow(store, await store.revision());
        await store.transact([
          { op: 'put', kind, id: 'a', value: 1 },
          { op: 'put', kind, id: 'b', value: 2 },
          { op: 'put', kind, id: 'c', value: 3 },
        ]);
        await store.put(kind, 'd', 4);
        await waitFor(() => watcher.changes.length === 4, 'four changes');
        const [a, b, c] = watcher.changes as [StoreChange, StoreChange, StoreChange];
        assertOneCall(watcher, [a, b, c]);
        assert.equal(a.revision, c.revision);
        assert.deepEqual(summary(watcher.changes), ['a=1', 'b=2', 'c=3', 'd=4']);
      });

      it('delivers the writes of another connection', async () => {
        const other = await connect();
        const watcher = follow(store, await store.revision());
        await store.put(kind, 'mine', 0);
        await waitFor(() => watcher.changes.length === 1, 'the watch to be under way');
        const put = await other.put(kind, 'a', 1);
        await other.delete(kind, 'a');
        await waitFor(() => watcher.changes.length === 3, 'two more changes');
        assert.deepEqual(watcher.changes[1], { kind, id: 'a', revision: put.revision, value: 1 });
        assert.deepEqual(summary(watcher.changes), ['mine=0', 'a=1', 'a=(deleted)']);
      });

      it('delivers the writes of another process', { timeout: 20_000 }, async () => {
        const watcher = follow(store, await store.revision());
        const result = await startChild({
          config: hooks.config,
          baseDir: hooks.baseDir,
          run: 'steps',
          steps: [
            [{ op: 'put', kind, id: 'a', value: 1 }],
            [{ op: 'put', kind, id: 'b', value: 2 }],
            [
              { op: 'put', kind, id: 'a', value: 3 },
              { op: 'delete', kind, id: 'b' },
            ],
          ],
        }).done;
        await waitFor(() => watcher.changes.length === 4, 'four changes');
        assert.deepEqual(summary(watcher.changes), ['a=1', 'b=2', 'a=3', 'b=(deleted)']);
        assertOneCall(watcher, watcher.changes.slice(2));
        assert.ok((await store.revision()) >= result.revision);
        assert.equal(watcher.changes[3]!.revision, result.revision);
      });

      it('gives every watcher every change', async () => {
        const from = await store.revision();
        const first = follow(store, from);
        await store.put(kind, 'a', 1);
        const second = follow(store, from);
        const elsewhere = follow(await connect(), from);
        await store.put(kind, 'b', 2);
        for (const w of [first, second, elsewhere]) {
          await waitFor(() => w.changes.length === 2, 'two changes');
          assert.deepEqual(summary(w.changes), ['a=1', 'b=2']);
        }
      });

      it('stops once its signal aborts, and never starts with an aborted one', async () => {
        const from = await store.revision();
        const stopped = follow(store, from);
        const fence = follow(store, from);
        await store.put(kind, 'a', 1);
        await waitFor(() => stopped.changes.length === 1, 'the first change');
        stopped.controller.abort();
        const neverStarted = new AbortController();
        neverStarted.abort();
        let calls = 0;
        store.watch(from, { onChanges: () => calls++, onResync: () => calls++ }, neverStarted.signal);
        await store.put(kind, 'b', 2);
        await store.put(kind, 'c', 3);
        await waitFor(() => fence.changes.length === 3, 'the fence to see every change');
        assert.deepEqual(summary(stopped.changes), ['a=1']);
        assert.equal(calls, 0);
      });
    });

    describe('resync', () => {
      it('a watch from before the kept history is told to resync, once, and ends', async () => {
        const from = await store.revision();
        await store.put(kind, 'a', 1);
        await store.put(kind, 'a', 2);
        await hooks.compact(store);
        const watcher = follow(store, from);
        const fence = follow(store, await store.revision());
        await waitFor(() => watcher.resyncs.length === 1, 'a resync');
        assert.deepEqual(watcher.resyncs, [{ fromRevision: from, reason: 'compacted' }]);
        await store.put(kind, 'b', 3);
        await waitFor(() => fence.changes.length === 1, 'the fence to see the change');
        assert.deepEqual(watcher.changes, []);
        assert.equal(watcher.resyncs.length, 1);
      });

      it('a watch from the current revision after compaction goes on as usual', async () => {
        await store.put(kind, 'a', 1);
        await hooks.compact(store);
        const watcher = follow(store, await store.revision());
        await store.put(kind, 'b', 2);
        await waitFor(() => watcher.changes.length === 1, 'the change');
        assert.deepEqual(summary(watcher.changes), ['b=2']);
        assert.deepEqual(watcher.resyncs, []);
      });

      it('a watch from beyond the store revision is told to resync', async () => {
        const ahead = (await store.revision()) + 1000;
        const watcher = follow(store, ahead);
        await waitFor(() => watcher.resyncs.length === 1, 'a resync');
        assert.deepEqual(watcher.resyncs, [{ fromRevision: ahead, reason: 'ahead' }]);
      });
    });

    describe('several processes', () => {
      it('compare-and-set loops in two processes lose no update', { timeout: 20_000 }, async () => {
        const times = 100;
        const task: ChildTask = { config: hooks.config, baseDir: hooks.baseDir, run: 'increment', kind, id: 'counter', times };
        const children = [startChild(task), startChild(task)];
        await Promise.all(children.map((c) => c.ready));
        for (const c of children) c.go();
        const results = await Promise.all(children.map((c) => c.done));
        assert.equal((await store.get(kind, 'counter'))?.value, 2 * times);
        assert.ok((await store.revision()) >= Math.max(...results.map((r) => r.revision)));
      });
    });

    describe('close', () => {
      it('is healthy while open', async () => {
        assert.equal(await store.healthy(), true);
      });

      it('every call after close rejects with ERR_STORE_CLOSED', async () => {
        const s = await connect();
        await s.close();
        const calls: Array<() => Promise<unknown>> = [
          () => s.get(kind, 'a'),
          () => s.list(kind),
          () => s.put(kind, 'a', 1),
          () => s.delete(kind, 'a'),
          () => s.transact([]),
          () => s.revision(),
          () => s.sweep(),
          () => s.healthy(),
          () => s.close(),
        ];
        for (const call of calls) await rejectsWith(call(), 'ERR_STORE_CLOSED');
        assert.throws(
          () => s.watch(0, { onChanges() {}, onResync() {} }, new AbortController().signal),
          (err: unknown) => assertCode(err, 'ERR_STORE_CLOSED'),
        );
      });

      it('close ends every watch of that connection', async () => {
        const s = await connect();
        const from = await store.revision();
        const closed = follow(s, from);
        const fence = follow(store, from);
        await store.put(kind, 'a', 1);
        await waitFor(() => closed.changes.length === 1, 'the first change');
        await s.close();
        await store.put(kind, 'b', 2);
        await waitFor(() => fence.changes.length === 2, 'the fence to see both changes');
        assert.deepEqual(summary(closed.changes), ['a=1']);
        assert.deepEqual(closed.resyncs, []);
      });

      it('what was written outlives the connection that wrote it', async () => {
        const s = await connect();
        const put = await s.put(kind, 'a', { kept: true });
        await s.close();
        const again = await connect();
        assert.deepEqual(await again.get(kind, 'a'), put);
      });
    });
  });
}

function assertCode(err: unknown, code: ErrorCode): true {
  assert.ok(err instanceof GatehouseError, `expected a GatehouseError ${code}, got ${String(err)}`);
  assert.equal(err.code, code);
  return true;
}

async function rejectsWith(promise: Promise<unknown>, code: ErrorCode): Promise<void> {
  await assert.rejects(promise, (err: unknown) => assertCode(err, code));
}

/** Polls `condition` every few milliseconds; fails after `timeout` ms. */
async function waitFor(condition: () => boolean | Promise<boolean>, what: string, timeout = 5000): Promise<void> {
  const deadline = Date.now() + timeout;
  while (!(await condition())) {
    if (Date.now() > deadline) assert.fail(`timed out after ${timeout} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function byUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

interface Child {
  /** Resolves when an `increment` child has opened the store and waits for `go`. */
  readonly ready: Promise<void>;
  go(): void;
  readonly done: Promise<ChildResult>;
}

/** Starts contract-child.ts in a new Node process. */
function startChild(task: ChildTask): Child {
  const child = spawn(process.execPath, ['--import', 'tsx', childScript, JSON.stringify(task)], {
    cwd: repoRoot,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  let onReady: () => void = () => {};
  const ready = new Promise<void>((resolve) => (onReady = resolve));
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
    if (stdout.startsWith('ready\n')) onReady();
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const done = new Promise<ChildResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) reject(new Error(`the child process exited with ${code}:\n${stderr}`));
      else resolve(JSON.parse(stdout.trim().split('\n').at(-1)!) as ChildResult);
    });
  });
  // A child that fails before it is ready must fail the test rather than leave it waiting.
  done.catch(() => onReady());
  return { ready, go: () => child.stdin.end('go\n'), done };
}
