import { closeSync, mkdirSync, openSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { GatehouseError } from '../../core/index.ts';
import {
  checkDeleteOptions,
  checkId,
  checkKind,
  checkListOptions,
  checkOps,
  checkPutOptions,
  checkRevision,
  encodeValue,
  type CheckedOp,
} from '../arguments.ts';
import type { ListOptions, PutOptions, Store, StoreChange, StoreOp, StoreRecord, StoreResync, StoreWatcher } from '../store.ts';
import { migrate } from './schema.ts';

export interface SqliteStoreOptions {
  /** How often watchers look for writes by other connections, in ms. Default 100. */
  pollInterval?: number;
  /** How often expired records are swept and the change log pruned, in ms; 0 = never by itself. Default 1000. */
  sweepInterval?: number;
  /** Changes older than this (ms) are pruned from the log… Default 10 minutes. */
  changeRetention?: number;
  /** …and so are all but the last this many revisions. Default 100 000. */
  maxChanges?: number;
  /** How long a write waits for another process's write to finish, in ms. Default 5000. */
  busyTimeout?: number;
}

/** The SQLite store, plus what only it can do. */
export interface SqliteStore extends Store {
  readonly path: string;
  /** Prunes the whole change log now, so watchers behind the current revision must resync. Returns that revision. */
  compact(): Promise<number>;
}

/** The least value of each option: polling needs a real interval, the log at least one revision. */
const minimums: Partial<Record<keyof SqliteStoreOptions, number>> = { pollInterval: 1, maxChanges: 1 };

const defaults: Required<SqliteStoreOptions> = {
  pollInterval: 100,
  sweepInterval: 1000,
  changeRetention: 10 * 60_000,
  maxChanges: 100_000,
  busyTimeout: 5000,
};

/** Changes handed to one `onChanges` call, roughly; a revision is never split. */
const batchSize = 1000;
/** Expired records deleted per write transaction by a sweep. */
const sweepBatch = 1000;

interface RecordRow {
  kind: string;
  id: string;
  value: string;
  revision: number;
  expires_at: number | null;
}
interface ChangeRow {
  revision: number;
  kind: string;
  id: string;
  value: string | null;
  expires_at: number | null;
}
interface Watch {
  cursor: number;
  readonly watcher: StoreWatcher;
  readonly signal: AbortSignal;
  readonly onAbort: () => void;
}
type Delivery = { watch: Watch; batches: StoreChange[][] } | { watch: Watch; resync: StoreResync };

/**
 * Opens (creating if missing, with its directory) the SQLite database at `path` as a Store.
 * The file is created with mode 0600 (its folder 0700) and used in WAL mode, so several processes
 * can open it at once. Each store polls the change log (cheaply, via `PRAGMA data_version`) while it
 * has watchers, and an active watch keeps the process alive. better-sqlite3 is synchronous: a write
 * that finds another process's write in progress blocks this event loop for up to `busyTimeout`
 * (writes are short, so in practice milliseconds), then rejects with `ERR_STORE_UNAVAILABLE`.
 * `synchronous = NORMAL`: a power cut may lose the last commits, never the database.
 */
export async function openSqliteStore(path: string, options: SqliteStoreOptions = {}): Promise<SqliteStore> {
  const settings = checkOptions(options);
  const file = resolve(path);
  let db: Database.Database | undefined;
  try {
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    closeSync(openSync(file, 'a', 0o600));
    db = new Database(file, { timeout: settings.busyTimeout });
    const mode = db.pragma('journal_mode = WAL', { simple: true });
    if (mode !== 'wal') throw new Error(`journal_mode is ${String(mode)}, not wal`);
    db.pragma('synchronous = NORMAL');
    migrate(db);
    const store = new SqliteStoreImpl(db, file, settings, prepareStatements(db));
    store.start();
    return store;
  } catch (err) {
    db?.close();
    if (err instanceof GatehouseError) throw err;
    throw new GatehouseError('ERR_STORE_UNAVAILABLE', `cannot open the SQLite store ${file}: ${(err as Error).message}`, { cause: err });
  }
}

function checkOptions(options: SqliteStoreOptions): Required<SqliteStoreOptions> {
  const settings = { ...defaults };
  for (const [key, value] of Object.entries(options)) {
    if (!Object.hasOwn(defaults, key)) {
      throw new TypeError(`unknown SQLite store option "${key}"; known: ${Object.keys(defaults).join(', ')}`);
    }
    if (value === undefined) continue;
    const least = minimums[key as keyof SqliteStoreOptions] ?? 0;
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < least) {
      throw new TypeError(`SQLite store option ${key} must be an integer >= ${least} (got ${String(value)})`);
    }
    settings[key as keyof SqliteStoreOptions] = value;
  }
  return settings;
}

class SqliteStoreImpl implements SqliteStore {
  readonly name = 'sqlite';
  readonly path: string;
  readonly #db: Database.Database;
  readonly #settings: Required<SqliteStoreOptions>;
  readonly #statements: Statements;
  readonly #listStatements = new Map<string, Database.Statement<unknown[], RecordRow>>();
  readonly #watches = new Set<Watch>();
  #closed = false;
  #pollTimer: NodeJS.Timeout | undefined;
  #pollSoon: NodeJS.Immediate | undefined;
  #sweepTimer: NodeJS.Timeout | undefined;
  /** The last `PRAGMA data_version` polled; it moves when another connection commits. */
  #dataVersion = -1;
  /** This connection wrote (or a watch began) since the last poll. */
  #dirty = false;

  constructor(db: Database.Database, path: string, settings: Required<SqliteStoreOptions>, statements: Statements) {
    this.#db = db;
    this.path = path;
    this.#settings = settings;
    this.#statements = statements;
  }

  /** Starts the periodic sweep (which does not keep the process alive). */
  start(): void {
    if (this.#settings.sweepInterval > 0) {
      this.#sweepTimer = setInterval(() => this.#sweepQuietly(), this.#settings.sweepInterval).unref();
    }
  }

  async get<T>(kind: string, id: string): Promise<StoreRecord<T> | undefined> {
    this.#checkOpen();
    checkKind(kind);
    checkId(id);
    return this.#run(() => {
      const row = this.#statements.get.get(kind, id);
      return row && !expired(row, Date.now()) ? toRecord<T>(row) : undefined;
    });
  }

  async list<T>(kind: string, options?: ListOptions): Promise<StoreRecord<T>[]> {
    this.#checkOpen();
    checkKind(kind);
    const { prefix, limit, reverse, after } = checkListOptions(options);
    const end = prefix === undefined ? undefined : prefixEnd(prefix);
    const where = ['kind = ?', '(expires_at IS NULL OR expires_at > ?)'];
    const params: unknown[] = [kind, Date.now()];
    if (prefix !== undefined) {
      where.push('id >= ?');
      params.push(prefix);
    }
    if (end !== undefined) {
      where.push('id < ?');
      params.push(end);
    }
    if (after !== undefined) {
      where.push(reverse ? 'id < ?' : 'id > ?');
      params.push(after);
    }
    params.push(limit ?? -1);
    const sql = `SELECT kind, id, value, revision, expires_at FROM records WHERE ${where.join(' AND ')} ORDER BY id ${reverse ? 'DESC' : 'ASC'} LIMIT ?`;
    return this.#run(() => {
      let statement = this.#listStatements.get(sql);
      if (!statement) this.#listStatements.set(sql, (statement = this.#db.prepare<unknown[], RecordRow>(sql)));
      return statement.all(...params).map((row) => toRecord<T>(row));
    });
  }

  async put<T>(kind: string, id: string, value: T, options?: PutOptions): Promise<StoreRecord<T>> {
    this.#checkOpen();
    const { expiresAt, ifRevision } = checkPutOptions(options);
    const op: CheckedOp = { op: 'put', kind: checkKind(kind), id: checkId(id), json: encodeValue(value), expiresAt, ifRevision };
    const revision = this.#run(() => this.#apply([op]).revision);
    const record: { -readonly [K in keyof StoreRecord<T>]: StoreRecord<T>[K] } = { kind, id, value: JSON.parse(op.json) as T, revision };
    if (expiresAt !== undefined) record.expiresAt = expiresAt;
    return record;
  }

  async delete(kind: string, id: string, options?: { ifRevision?: number }): Promise<boolean> {
    this.#checkOpen();
    const op: CheckedOp = { op: 'delete', kind: checkKind(kind), id: checkId(id), ifRevision: checkDeleteOptions(options).ifRevision };
    return this.#run(() => this.#apply([op]).changed > 0);
  }

  async transact(ops: StoreOp[]): Promise<void> {
    this.#checkOpen();
    const checked = checkOps(ops);
    if (checked.length > 0) this.#run(() => this.#apply(checked));
  }

  async revision(): Promise<number> {
    this.#checkOpen();
    return this.#run(() => this.#readMeta('revision'));
  }

  async kinds(): Promise<string[]> {
    this.#checkOpen();
    return this.#run(() => this.#statements.kinds.all());
  }

  watch(fromRevision: number, watcher: StoreWatcher, signal: AbortSignal): void {
    this.#checkOpen();
    checkRevision(fromRevision);
    if (typeof watcher?.onChanges !== 'function' || typeof watcher.onResync !== 'function') {
      throw new TypeError('watch needs a watcher with onChanges and onResync');
    }
    if (!(signal instanceof AbortSignal)) throw new TypeError('watch needs an AbortSignal');
    if (signal.aborted) return;
    const watch: Watch = { cursor: fromRevision, watcher, signal, onAbort: () => this.#endWatch(watch) };
    signal.addEventListener('abort', watch.onAbort, { once: true });
    this.#watches.add(watch);
    this.#pollTimer ??= setInterval(() => this.#poll(), this.#settings.pollInterval);
    this.#dirty = true;
    this.#schedulePoll();
  }

  async sweep(): Promise<number> {
    this.#checkOpen();
    return this.#run(() => this.#sweep(Date.now()));
  }

  async healthy(): Promise<boolean> {
    this.#checkOpen();
    try {
      this.#readMeta('revision');
      return true;
    } catch {
      return false;
    }
  }

  async compact(): Promise<number> {
    this.#checkOpen();
    return this.#run(() => this.#db.transaction(() => this.#prune(this.#readMeta('revision'))).immediate());
  }

  async close(): Promise<void> {
    this.#checkOpen();
    this.#closed = true;
    clearInterval(this.#sweepTimer);
    clearInterval(this.#pollTimer);
    clearImmediate(this.#pollSoon);
    for (const watch of this.#watches) watch.signal.removeEventListener('abort', watch.onAbort);
    this.#watches.clear();
    this.#db.close();
  }

  #checkOpen(): void {
    if (this.#closed) throw new GatehouseError('ERR_STORE_CLOSED', `the SQLite store ${this.path} is closed`);
  }

  /** Runs SQLite work, translating its errors at this boundary. */
  #run<R>(work: () => R): R {
    try {
      return work();
    } catch (err) {
      if (err instanceof Database.SqliteError) {
        throw new GatehouseError('ERR_STORE_UNAVAILABLE', `the SQLite store ${this.path} failed: ${err.message} (${err.code})`, {
          cause: err,
        });
      }
      throw err;
    }
  }

  #readMeta(key: 'revision' | 'compacted'): number {
    return this.#statements.readMeta.get(key) ?? 0;
  }

  /** Checks every condition, then writes every op at one new revision, in one write transaction. */
  #apply(ops: CheckedOp[]): { revision: number; changed: number } {
    const result = this.#db
      .transaction(() => {
        const now = Date.now();
        const live = ops.map((op) => {
          const row = this.#statements.get.get(op.kind, op.id);
          return row && !expired(row, now) ? row : undefined;
        });
        ops.forEach((op, i) => {
          const current = live[i]?.revision ?? 0;
          if (op.ifRevision !== undefined && op.ifRevision !== current) {
            throw new GatehouseError(
              'ERR_STORE_CONFLICT',
              `${op.kind}/${op.id} is ${current === 0 ? 'absent' : `at revision ${current}`}, not ${op.ifRevision === 0 ? 'absent' : `at revision ${op.ifRevision}`}`,
            );
          }
        });
        const revision = this.#readMeta('revision') + 1;
        let changed = 0;
        ops.forEach((op, i) => {
          if (op.op === 'put') {
            const expiresAt = op.expiresAt ?? null;
            this.#statements.upsert.run(op.kind, op.id, op.json, revision, expiresAt);
            this.#statements.logChange.run(revision, op.kind, op.id, op.json, expiresAt, now);
            changed++;
          } else if (live[i]) {
            this.#statements.remove.run(op.kind, op.id);
            this.#statements.logChange.run(revision, op.kind, op.id, null, null, now);
            changed++;
          }
        });
        if (changed > 0) this.#statements.writeMeta.run(revision, 'revision');
        return { revision, changed };
      })
      .immediate();
    if (result.changed > 0) this.#wrote();
    return result;
  }

  #sweep(now: number): number {
    let swept = 0;
    for (;;) {
      if (this.#statements.anyExpired.get(now) === undefined) break;
      const count = this.#db
        .transaction(() => {
          const rows = this.#statements.expired.all(now, sweepBatch);
          if (rows.length === 0) return 0;
          const revision = this.#readMeta('revision') + 1;
          for (const { kind, id } of rows) {
            this.#statements.remove.run(kind, id);
            this.#statements.logChange.run(revision, kind, id, null, null, now);
          }
          this.#statements.writeMeta.run(revision, 'revision');
          return rows.length;
        })
        .immediate();
      if (count === 0) break;
      swept += count;
      this.#wrote();
      if (count < sweepBatch) break;
    }
    this.#pruneIfDue(now);
    return swept;
  }

  /** Prunes the change log by age and length, when its oldest entry says something is due. */
  #pruneIfDue(now: number): void {
    const oldest = this.#statements.oldestChange.get();
    if (!oldest) return;
    const { changeRetention, maxChanges } = this.#settings;
    const current = this.#readMeta('revision');
    if (oldest.at >= now - changeRetention && oldest.revision > current - maxChanges) return;
    this.#db
      .transaction(() => {
        const byAge = this.#statements.lastChangeBefore.get(now - changeRetention) ?? 0;
        this.#prune(Math.max(byAge, this.#readMeta('revision') - maxChanges));
      })
      .immediate();
  }

  /** Drops the log up to `upTo` and records that it is gone (call inside a write transaction). */
  #prune(upTo: number): number {
    const compacted = Math.max(upTo, this.#readMeta('compacted'));
    this.#statements.prune.run(compacted);
    this.#statements.writeMeta.run(compacted, 'compacted');
    return compacted;
  }

  #sweepQuietly(): void {
    if (this.#closed) return;
    try {
      this.#sweep(Date.now());
    } catch {
      // Another process may hold the write lock or the disk may be failing; the next tick
      // retries, `healthy()` reports a failing database, and writes reject on their own.
    }
  }

  #wrote(): void {
    if (this.#watches.size === 0) return;
    this.#dirty = true;
    this.#schedulePoll();
  }

  #schedulePoll(): void {
    this.#pollSoon ??= setImmediate(() => {
      this.#pollSoon = undefined;
      this.#poll();
    });
  }

  #endWatch(watch: Watch): void {
    watch.signal.removeEventListener('abort', watch.onAbort);
    this.#watches.delete(watch);
    if (this.#watches.size === 0) {
      clearInterval(this.#pollTimer);
      this.#pollTimer = undefined;
    }
  }

  /** What other connections committed reaches the watches now, not at the next poll (one PRAGMA when nothing changed). */
  catchUp(): void {
    this.#poll();
  }

  /** Reads what each watch has not seen (in one snapshot), then hands it over. */
  #poll(): void {
    if (this.#closed || this.#watches.size === 0) return;
    let deliveries: Delivery[];
    try {
      const dataVersion = this.#statements.dataVersion.get()!;
      if (dataVersion === this.#dataVersion && !this.#dirty) return;
      this.#dataVersion = dataVersion;
      this.#dirty = false;
      deliveries = this.#db.transaction(() => this.#collect()).deferred();
    } catch {
      this.#dirty = true; // the database is failing (healthy() says so); try again next tick
      return;
    }
    for (const delivery of deliveries) {
      const { watch } = delivery;
      if ('resync' in delivery) {
        if (!this.#watches.has(watch)) continue;
        this.#endWatch(watch);
        deliver(() => watch.watcher.onResync(delivery.resync));
        continue;
      }
      for (const batch of delivery.batches) {
        if (!this.#watches.has(watch)) break;
        watch.cursor = batch.at(-1)!.revision;
        deliver(() => watch.watcher.onChanges(batch));
      }
    }
  }

  #collect(): Delivery[] {
    const current = this.#readMeta('revision');
    const compacted = this.#readMeta('compacted');
    const deliveries: Delivery[] = [];
    for (const watch of this.#watches) {
      if (watch.cursor === current) continue;
      if (watch.cursor > current || watch.cursor < compacted) {
        const reason = watch.cursor > current ? 'ahead' : 'compacted';
        deliveries.push({ watch, resync: { fromRevision: watch.cursor, reason } });
        continue;
      }
      const batches: StoreChange[][] = [];
      let batch: StoreChange[] = [];
      for (const row of this.#statements.changesSince.iterate(watch.cursor, current)) {
        if (batch.length >= batchSize && batch.at(-1)!.revision !== row.revision) {
          batches.push(batch);
          batch = [];
        }
        batch.push(toChange(row));
      }
      if (batch.length > 0) batches.push(batch);
      deliveries.push({ watch, batches });
    }
    return deliveries;
  }
}

type Statements = ReturnType<typeof prepareStatements>;

function prepareStatements(db: Database.Database) {
  return {
    get: db.prepare<[string, string], RecordRow>('SELECT kind, id, value, revision, expires_at FROM records WHERE kind = ? AND id = ?'),
    upsert: db.prepare<[string, string, string, number, number | null]>(
      'INSERT OR REPLACE INTO records (kind, id, value, revision, expires_at) VALUES (?, ?, ?, ?, ?)',
    ),
    remove: db.prepare<[string, string]>('DELETE FROM records WHERE kind = ? AND id = ?'),
    logChange: db.prepare<[number, string, string, string | null, number | null, number]>(
      'INSERT INTO changes (revision, kind, id, value, expires_at, at) VALUES (?, ?, ?, ?, ?, ?)',
    ),
    // a skip-scan of the primary key: one lookup per kind, however many records each holds
    kinds: db
      .prepare<[], string>(
        `WITH RECURSIVE k(kind) AS (SELECT min(kind) FROM records UNION ALL SELECT (SELECT min(kind) FROM records WHERE kind > k.kind) FROM k WHERE k.kind IS NOT NULL)
         SELECT kind FROM k WHERE kind IS NOT NULL`,
      )
      .pluck(),
    readMeta: db.prepare<[string], number>('SELECT value FROM meta WHERE key = ?').pluck(),
    writeMeta: db.prepare<[number, string]>('UPDATE meta SET value = ? WHERE key = ?'),
    dataVersion: db.prepare<[], number>('PRAGMA data_version').pluck(),
    changesSince: db.prepare<[number, number], ChangeRow>(
      'SELECT revision, kind, id, value, expires_at FROM changes WHERE revision > ? AND revision <= ? ORDER BY revision, kind, id',
    ),
    anyExpired: db.prepare<[number], number>('SELECT 1 FROM records WHERE expires_at <= ? LIMIT 1').pluck(),
    expired: db.prepare<[number, number], { kind: string; id: string }>(
      'SELECT kind, id FROM records WHERE expires_at <= ? LIMIT ?',
    ),
    oldestChange: db.prepare<[], { revision: number; at: number }>('SELECT revision, at FROM changes ORDER BY revision LIMIT 1'),
    lastChangeBefore: db.prepare<[number], number | null>('SELECT max(revision) FROM changes WHERE at < ?').pluck(),
    prune: db.prepare<[number]>('DELETE FROM changes WHERE revision <= ?'),
  };
}

/** Calls a watcher; its error is its own bug, surfaced as uncaught without stopping the others. */
function deliver(call: () => void): void {
  try {
    call();
  } catch (err) {
    process.nextTick(() => {
      throw err;
    });
  }
}

function expired(row: { expires_at: number | null }, now: number): boolean {
  return row.expires_at !== null && row.expires_at <= now;
}

function toRecord<T>(row: RecordRow): StoreRecord<T> {
  const value = JSON.parse(row.value) as T;
  return row.expires_at === null
    ? { kind: row.kind, id: row.id, value, revision: row.revision }
    : { kind: row.kind, id: row.id, value, revision: row.revision, expiresAt: row.expires_at };
}

function toChange(row: ChangeRow): StoreChange {
  const change: { -readonly [K in keyof StoreChange]: StoreChange[K] } = { kind: row.kind, id: row.id, revision: row.revision };
  if (row.value !== null) change.value = JSON.parse(row.value);
  if (row.expires_at !== null) change.expiresAt = row.expires_at;
  return change;
}

/**
 * The least string above every string that starts with `prefix`, in UTF-8 byte order (SQLite's
 * order for text): the prefix with its last code point incremented, or none when it is all U+10FFFF.
 */
export function prefixEnd(prefix: string): string | undefined {
  const points = Array.from(prefix, (c) => c.codePointAt(0)!);
  while (points.length > 0) {
    const last = points.pop()!;
    if (last < 0x10ffff) {
      points.push(last === 0xd7ff ? 0xe000 : last + 1);
      return String.fromCodePoint(...points);
    }
  }
  return undefined;
}
