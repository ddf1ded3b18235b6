/**
 * The Store: a revisioned record store shared by every Gatehouse process.
 *
 * Records are JSON values addressed by `kind` (a namespace such as `user`, `session`, `audit`) and
 * `id`. Every successful write advances one store-wide revision; each record carries the revision
 * of its last write. Each process keeps its hot-path data in memory and follows `watch`:
 *
 *   const from = await store.revision();
 *   const records = await store.list('session');   // may already include changes after `from`
 *   store.watch(from, { onChanges, onResync }, signal);
 *
 * `watch` replays everything after `from`, so changes that `list` already saw arrive again; apply a
 * change only when its revision is greater than the revision held for that record (a deletion
 * likewise), and nothing needs to be tracked for deleted records.
 *
 * Arguments that break the rules below (a bad kind or id, an unknown option name, a value that is
 * not JSON) are programming errors: the call rejects with a `TypeError`. Everything else rejects
 * with a `GatehouseError`: `ERR_STORE_CONFLICT` (a condition failed), `ERR_STORE_UNAVAILABLE`
 * (the backend failed; `cause` keeps its error) or `ERR_STORE_CLOSED`.
 *
 * One contract suite (`contract.ts`) holds every implementation to these promises.
 */

/**
 * A record as stored. `value` is what `JSON.parse` gives back for what was put (so `undefined`
 * properties are gone and dates are strings).
 */
export interface StoreRecord<T = unknown> {
  readonly kind: string;
  readonly id: string;
  readonly value: T;
  /** The store revision of the record's last write. */
  readonly revision: number;
  /** Milliseconds since the epoch; from then on the record is treated as absent. */
  readonly expiresAt?: number;
}

export interface PutOptions {
  /** Milliseconds since the epoch after which the record is treated as absent and later swept. */
  expiresAt?: number;
  /**
   * Compare-and-set: `0` writes only when the record is absent (or expired); `N` only when its
   * current revision is `N`. Otherwise the write rejects with `ERR_STORE_CONFLICT`.
   */
  ifRevision?: number;
}

export interface DeleteOptions {
  /** As for `put`: `N` deletes only when the current revision is `N` (`0`: only when absent). */
  ifRevision?: number;
}

export interface ListOptions {
  /** Only ids that start with this. */
  prefix?: string;
  /** At most this many records (a positive integer). */
  limit?: number;
  /** Highest id first. */
  reverse?: boolean;
  /** Start after this id (exclusive) in listing order: the last id of the previous page. */
  after?: string;
}

/** One write seen by `watch`. A deletion (or an expiry, once swept) has no `value`. */
export interface StoreChange {
  readonly kind: string;
  readonly id: string;
  readonly revision: number;
  readonly value?: unknown;
  /** The expiry the record was written with, so an in-memory copy can stop honouring it in time. */
  readonly expiresAt?: number;
}

/** Why a watch ended and its owner must reload: see `StoreWatcher.onResync`. */
export interface StoreResync {
  /** The revision the watch was asked (or had got) to continue from. */
  readonly fromRevision: number;
  /**
   * `compacted`: the changes after `fromRevision` are no longer kept (the watcher fell too far
   * behind, or started from too old a revision). `ahead`: `fromRevision` is beyond the store's
   * revision, so the store was replaced or restored and nothing held in memory can be trusted.
   */
  readonly reason: 'compacted' | 'ahead';
}

export interface StoreWatcher {
  /**
   * Changes in revision order, each revision exactly once, never before `watch` has returned.
   * All changes of one revision (one `transact`, one sweep) arrive in the same call. A handler that
   * throws has a bug: the error surfaces as an uncaught exception and the watch goes on.
   */
  onChanges(changes: StoreChange[]): void;
  /**
   * The store cannot replay what this watcher needs. The watch has ended (no further calls); reload
   * as at start-up — read `revision()`, then `list()`, then `watch` from that revision.
   */
  onResync(resync: StoreResync): void;
}

export type StoreOp =
  | { readonly op: 'put'; readonly kind: string; readonly id: string; readonly value: unknown; readonly options?: PutOptions }
  | { readonly op: 'delete'; readonly kind: string; readonly id: string; readonly ifRevision?: number };

/**
 * Kinds are 1–64 characters of `A–Z a–z 0–9 _ . -`. Ids are 1–1024 characters of well-formed
 * Unicode without NUL. A serialized value may be up to 1 MiB (UTF-8).
 */
export interface Store {
  /** `sqlite` or `etcd`. */
  readonly name: string;

  /** The record, or `undefined` when absent or expired. */
  get<T>(kind: string, id: string): Promise<StoreRecord<T> | undefined>;

  /**
   * The live (unexpired) records of one kind, ordered by id: by the UTF-8 bytes of the id, which
   * is JavaScript's string order except that characters above U+FFFF sort after U+E000–U+FFFF.
   */
  list<T>(kind: string, options?: ListOptions): Promise<StoreRecord<T>[]>;

  /** Writes the record (replacing any) at a new revision and returns it as stored. */
  put<T>(kind: string, id: string, value: T, options?: PutOptions): Promise<StoreRecord<T>>;

  /** `true` when a live record was deleted, `false` when there was none (or it had expired). */
  delete(kind: string, id: string, options?: DeleteOptions): Promise<boolean>;

  /**
   * Several puts and deletes, all or nothing: every `ifRevision` is checked first, and when one
   * fails nothing is written and the call rejects with `ERR_STORE_CONFLICT`. Every record written
   * gets the same new revision. Each (kind, id) may appear once. Deleting what is absent is no
   * change; a transaction that changes nothing does not advance the revision.
   */
  transact(ops: StoreOp[]): Promise<void>;

  /**
   * The kinds that hold records, each once, in order (kinds are ASCII: byte order is string order).
   * For copying a whole store (`gatehouse backup`). A kind whose records have all expired may be listed
   * until they are swept; `list` shows none of them.
   */
  kinds(): Promise<string[]>;

  /** The store-wide revision: 0 for a new store, greater after every write, never smaller. */
  revision(): Promise<number>;

  /**
   * Calls `watcher.onChanges` with every change after `fromRevision` — including writes by other
   * connections and processes on the same backend, and a deletion for each swept expired record —
   * until `signal` aborts or the store closes. When that history is gone (or `fromRevision` lies
   * in the store's future) it calls `watcher.onResync` once instead, and the watch ends.
   * Throws `ERR_STORE_CLOSED` after `close`.
   */
  watch(fromRevision: number, watcher: StoreWatcher, signal: AbortSignal): void;

  /**
   * Deletes expired records, each a deletion change, and returns how many. Implementations also
   * sweep by themselves, so expired records disappear without it (though `get` hides them anyway).
   */
  sweep(): Promise<number>;

  /**
   * Optional: delivers now, synchronously, to every watch, what other processes have committed and the
   * watches have not seen yet — cheap when nothing changed. A store that has it lets an in-memory copy be
   * exact on every read (a sign-out in one worker refuses the session on the next request in another).
   */
  catchUp?(): void;

  /** Whether the backend answers now. */
  healthy(): Promise<boolean>;

  /**
   * Optional, no I/O: whether the last exchange with a remote backend succeeded. False from a failed call (or a
   * watch that lost its connection) until the next call that succeeds, so that callers who can do without the
   * store (a lookup that missed memory) need not wait on one that is down.
   */
  reachable?(): boolean;

  /** Ends every watch and releases the backend. Every later call, `close` too, rejects with `ERR_STORE_CLOSED`. */
  close(): Promise<void>;
}
