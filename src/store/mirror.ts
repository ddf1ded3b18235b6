/**
 * An in-memory copy of some kinds of records, fed by the store's change feed, so the hot path never waits on
 * the store. A resync (the feed fell behind, or the store was replaced) reloads the copy from scratch.
 */
import type { Store, StoreChange } from './store.ts';

interface Entry {
  readonly value: unknown;
  readonly revision: number;
  readonly expiresAt: number | undefined;
}

export class StoreMirror {
  readonly #store: Store;
  readonly #kinds: ReadonlySet<string>;
  readonly #data = new Map<string, Map<string, Entry>>();
  #abort = new AbortController();
  #closed = false;
  #listeners: Array<(change: StoreChange) => void> = [];

  constructor(store: Store, kinds: readonly string[]) {
    this.#store = store;
    this.#kinds = new Set(kinds);
    for (const k of kinds) this.#data.set(k, new Map());
  }

  async start(): Promise<void> {
    const revision = await this.#store.revision();
    for (const kind of this.#kinds) {
      const map = new Map<string, Entry>();
      let after: string | undefined;
      for (;;) {
        const page = await this.#store.list(kind, { limit: 1000, ...(after ? { after } : {}) });
        for (const r of page) map.set(r.id, { value: r.value, revision: r.revision, expiresAt: r.expiresAt });
        if (page.length < 1000) break;
        after = page[page.length - 1]!.id;
      }
      this.#data.set(kind, map);
    }
    if (this.#closed) return;
    this.#store.watch(
      revision,
      {
        onChanges: (changes) => {
          for (const c of changes) this.apply(c);
        },
        onResync: () => {
          if (!this.#closed) void this.start();
        },
      },
      this.#abort.signal,
    );
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

  get<T>(kind: string, id: string): T | undefined {
    this.#store.catchUp?.();
    const e = this.#data.get(kind)?.get(id);
    if (!e) return undefined;
    if (e.expiresAt !== undefined && e.expiresAt <= Date.now()) return undefined;
    return e.value as T;
  }

  values<T>(kind: string): Array<{ id: string; value: T }> {
    const now = Date.now();
    const out: Array<{ id: string; value: T }> = [];
    for (const [id, e] of this.#data.get(kind) ?? []) {
      if (e.expiresAt === undefined || e.expiresAt > now) out.push({ id, value: e.value as T });
    }
    return out;
  }

  close(): void {
    this.#closed = true;
    this.#abort.abort();
  }
}
