/**
 * An in-memory copy of some kinds of records, fed by the store's change feed, so the hot path never waits on
 * the store. A resync (the feed fell behind a compaction, or the store was replaced) reloads the copy from
 * scratch, trying again until the store answers, and tells the listeners what the reload changed, so that
 * whoever follows changes (revocations closing connections, say) misses none.
 */
import type { Store, StoreChange, StoreResync } from './store.ts';

interface Entry {
  readonly value: unknown;
  readonly revision: number;
  readonly expiresAt: number | undefined;
}

export interface StoreMirrorOptions {
  /** The longest a `lookup` that misses memory waits for the store, in ms. Default 1000. */
  readonly lookupTimeout?: number;
  /** The longest wait between attempts to reload after a resync while the store does not answer, in ms. Default 1000. */
  readonly retryDelay?: number;
  /** Told when the feed asks for a reload (for a log line). */
  readonly onResync?: (resync: StoreResync) => void;
  /** Told of each failed reload (for a log line); the mirror tries again by itself. */
  readonly onReloadFailed?: (err: unknown) => void;
}

/** Records read per page while (re)loading. */
const pageSize = 1000;

export class StoreMirror {
  readonly #store: Store;
  readonly #kinds: ReadonlySet<string>;
  #data = new Map<string, Map<string, Entry>>();
  readonly #options: Required<Pick<StoreMirrorOptions, 'lookupTimeout' | 'retryDelay'>> & Pick<StoreMirrorOptions, 'onResync' | 'onReloadFailed'>;
  #abort = new AbortController();
  #closed = false;
  /** Loaded and following the feed (false before `start` and while a resync reloads). */
  #live = false;
  #listeners: Array<(change: StoreChange) => void> = [];

  constructor(store: Store, kinds: readonly string[], options: StoreMirrorOptions = {}) {
    this.#store = store;
    this.#kinds = new Set(kinds);
    this.#options = { ...options, lookupTimeout: options.lookupTimeout ?? 1000, retryDelay: options.retryDelay ?? 1000 };
    for (const k of kinds) this.#data.set(k, new Map());
  }

  /** Loads every kind and follows the feed; rejects when the store does not answer (nothing is followed then). */
  async start(): Promise<void> {
    await this.#load(false);
  }

  /** Whether the copy is loaded and following the feed (not while a resync reloads it). */
  get live(): boolean {
    return this.#live && !this.#closed;
  }

  async #load(announce: boolean): Promise<void> {
    const revision = await this.#store.revision();
    const data = new Map<string, Map<string, Entry>>();
    for (const kind of this.#kinds) {
      const map = new Map<string, Entry>();
      let after: string | undefined;
      for (;;) {
        const page = await this.#store.list(kind, { limit: pageSize, ...(after ? { after } : {}) });
        for (const r of page) map.set(r.id, { value: r.value, revision: r.revision, expiresAt: r.expiresAt });
        if (page.length < pageSize) break;
        after = page[page.length - 1]!.id;
      }
      data.set(kind, map);
    }
    if (this.#closed) return;
    const before = this.#data;
    this.#data = data;
    if (announce) this.#announce(before, data);
    this.#abort.abort(); // the feed that asked for the reload has ended: this is for sure
    this.#abort = new AbortController();
    this.#live = true;
    this.#store.watch(
      revision,
      {
        onChanges: (changes) => {
          for (const c of changes) this.apply(c);
        },
        onResync: (resync) => {
          this.#live = false;
          this.#options.onResync?.(resync);
          void this.#reload();
        },
      },
      this.#abort.signal,
    );
  }

  /** After a resync: loads again until the store answers (or the mirror closes). */
  async #reload(): Promise<void> {
    let delay = 50;
    while (!this.#closed) {
      try {
        await this.#load(true);
        return;
      } catch (err) {
        if (this.#closed) return;
        this.#options.onReloadFailed?.(err);
        await new Promise((resolve) => setTimeout(resolve, delay).unref());
        delay = Math.min(delay * 2, this.#options.retryDelay);
      }
    }
  }

  /** Tells the listeners what a reload changed: a deletion for each record gone, the record for each new or newer one. */
  #announce(before: ReadonlyMap<string, ReadonlyMap<string, Entry>>, after: ReadonlyMap<string, ReadonlyMap<string, Entry>>): void {
    const changes: StoreChange[] = [];
    for (const [kind, map] of after) {
      const old = before.get(kind) ?? new Map<string, Entry>();
      for (const [id, e] of old) {
        // a reload is the state at its revision: anything missing from it is gone (the revision only orders)
        if (!map.has(id)) changes.push({ kind, id, revision: e.revision });
      }
      for (const [id, e] of map) {
        const prev = old.get(id);
        if (!prev || prev.revision !== e.revision) {
          changes.push({ kind, id, revision: e.revision, value: e.value, ...(e.expiresAt !== undefined ? { expiresAt: e.expiresAt } : {}) });
        }
      }
    }
    for (const c of changes) for (const l of this.#listeners) l(c);
  }

  /** Applies one change (also used right after a local write, so this process sees its own writes at once). */
  apply(c: StoreChange): void {
    const map = this.#data.get(c.kind);
    if (!map) return;
    const prev = map.get(c.id);
    if (prev && prev.revision >= c.revision) return;
    if (c.value === undefined) map.delete(c.id);
    else map.set(c.id, { value: c.value, revision: c.revision, expiresAt: c.expiresAt });
    for (const l of this.#listeners) l(c);
  }

  /** Called for every change applied (revocations close open connections, for example). */
  onChange(listener: (change: StoreChange) => void): void {
    this.#listeners.push(listener);
  }

  /** The live record in memory (a store with `catchUp` is asked for what other processes wrote first). */
  get<T>(kind: string, id: string): T | undefined {
    this.#store.catchUp?.();
    const e = this.#data.get(kind)?.get(id);
    if (!e) return undefined;
    if (e.expiresAt !== undefined && e.expiresAt <= Date.now()) return undefined;
    return e.value as T;
  }

  /**
   * The live record from memory, else from the store: a record written by another process a moment ago may not
   * have reached this copy yet. The store is asked only while it answers (`Store.reachable`), and for at most
   * `lookupTimeout`: when it is down, or slow, a record not in memory is taken for absent, and nothing waits.
   */
  async lookup<T>(kind: string, id: string): Promise<T | undefined> {
    const held = this.get<T>(kind, id);
    if (held !== undefined || this.#closed) return held;
    if (this.#store.reachable?.() === false) return undefined;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), this.#options.lookupTimeout)));
    try {
      const found = await Promise.race([this.#store.get<T>(kind, id).catch(() => undefined), timeout]);
      return found?.value;
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * The live records of a kind in memory. `expired`: those past their expiry too (which the store deletes at its
   * next sweep), each with `expired: true`, for a caller that would rather try a stale record than none while the
   * store cannot be reached (and cannot be refreshed).
   */
  values<T>(kind: string, options: { readonly expired?: boolean } = {}): Array<{ id: string; value: T; expired?: true }> {
    const now = Date.now();
    const out: Array<{ id: string; value: T; expired?: true }> = [];
    for (const [id, e] of this.#data.get(kind) ?? []) {
      if (e.expiresAt === undefined || e.expiresAt > now) out.push({ id, value: e.value as T });
      else if (options.expired) out.push({ id, value: e.value as T, expired: true });
    }
    return out;
  }

  close(): void {
    this.#closed = true;
    this.#live = false;
    this.#abort.abort();
  }
}
