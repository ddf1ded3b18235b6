import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { GatehouseError, StoreUnavailableError } from '../../core/index.ts';
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
import { EtcdCallError, EtcdClient, grpcCode, type EtcdKv, type WatchResult } from './etcd-client.ts';
import { decodeEnvelope, encodeEnvelope, expiryText, KeyLayout, toChange, type Envelope } from './keys.ts';
import { LeaseCache } from './leases.ts';

export interface EtcdStoreOptions {
  /** etcd members' client URLs (`http(s)://host:port`); calls move on to the next when one fails. */
  endpoints: readonly string[];
  /** Every key starts with this. Default `/gatehouse/`. */
  prefix?: string;
  /** PEM files: the CA of the members' certificates, and this client's certificate and key. */
  tls?: { ca?: string; cert?: string; key?: string };
  /** How long opening a connection to a member may take, in ms. Default 2000. */
  dialTimeout?: number;
  /** The deadline of one call (across every member it tries), in ms. Default 5000. */
  requestTimeout?: number;
  /** How often expired records are swept, in ms; 0 = never by itself. Default 1000. */
  sweepInterval?: number;
  /** The longest wait between attempts to watch again while etcd is unreachable, in ms. Default 1000. */
  retryDelay?: number;
}

/** The etcd store, plus what only it can do. */
export interface EtcdStore extends Store {
  readonly endpoints: readonly string[];
  readonly prefix: string;
  /** Compacts etcd's history up to its current revision (watchers behind it must resync); returns that revision. */
  compact(): Promise<number>;
}

type Settings = Required<Omit<EtcdStoreOptions, 'tls'>>;
const numericDefaults = { dialTimeout: 2000, requestTimeout: 5000, sweepInterval: 1000, retryDelay: 1000 } as const;
const minimums: Record<keyof typeof numericDefaults, number> = { dialTimeout: 1, requestTimeout: 1, sweepInterval: 0, retryDelay: 1 };
const optionNames = ['endpoints', 'prefix', 'tls', ...Object.keys(numericDefaults)];

/** Records read per range request by `list` and per index scan by a sweep. */
const pageSize = 500;
/** Expired records deleted per etcd transaction by a sweep: each is a compare and two deletes, under etcd's 128 operations. */
const sweepBatch = 40;
/** Attempts of a write whose keys keep changing between its read and its transaction. */
const writeAttempts = 16;
/** The longest `healthy()` waits for an answer, in ms. */
const healthTimeout = 2000;

interface RangeResponse {
  readonly header?: { readonly revision?: string };
  readonly kvs?: readonly EtcdKv[];
  readonly more?: boolean;
}
interface TxnResponse {
  readonly header?: { readonly revision?: string };
  readonly succeeded?: boolean;
  readonly responses?: ReadonlyArray<{ readonly response_range?: RangeResponse }>;
}
type TxnOp = { request_put: { key: string; value: string; lease?: string } } | { request_delete_range: { key: string } } | { request_range: { key: string } };
interface LeaseGrantResponse {
  readonly ID?: string;
  readonly TTL?: string;
}
interface Compare {
  key: string;
  target: 'MOD';
  result: 'EQUAL';
  mod_revision: string;
}

/** A record as read from etcd: `undefined` fields for a key that is absent. */
interface Current {
  readonly kv: EtcdKv | undefined;
  readonly modRevision: number;
  readonly envelope: Envelope | undefined;
}

const b64 = (key: Buffer | string) => Buffer.from(key).toString('base64');
const unb64 = (text: string | undefined) => Buffer.from(text ?? '', 'base64');
const num = (text: string | undefined) => Number(text ?? 0);

/**
 * Opens a Store on etcd v3 (3.4 or later), talking to its JSON gateway over HTTP(S) with undici.
 * No I/O but reading the TLS files: a member that cannot be reached fails the first call, not this.
 *
 * - The store revision is etcd's revision, and a record's revision its key's `mod_revision`; every
 *   write is one etcd transaction, so every record it writes shares one revision. (Writes by anything
 *   else to the same etcd also advance the revision.)
 * - Writes read their keys first and commit with a compare on each key's `mod_revision` (0 = absent)
 *   wherever the outcome depends on it (`ifRevision`, a delete), reading again when a compare fails.
 * - Expiry: a record keeps its `expiresAt` and is treated as absent from then on; an expiry index
 *   (see keys.ts) lets a sweep, every `sweepInterval` in every process, delete what expired, each
 *   batch in one transaction, with compares so that processes sweeping together do no harm. And the
 *   record and its index key are attached to an etcd lease that ends soon after `expiresAt` (one per
 *   bucket of expiry time, never kept alive: see leases.ts), so etcd deletes them itself even when no
 *   process is left to sweep. A put without `expiresAt` detaches the record from its lease.
 * - `watch` is one etcd watch over every record key, from `fromRevision + 1`; when its connection
 *   fails it watches again (on the next member) from the last revision it delivered, so missed changes
 *   arrive after an outage; when etcd has compacted them, `onResync` says so.
 * - When etcd cannot be reached, calls reject with `ERR_STORE_UNAVAILABLE` within `requestTimeout`
 *   (a `StoreUnavailableError` saying whether nothing was changed), `healthy()` is false and `reachable()`
 *   false until a call succeeds again; a write that failed after it was sent may or may not have been applied.
 * - etcd refuses a transaction of more than `--max-txn-ops` (default 128) operations; a record written
 *   is one or two (its expiry index), so keep `transact` to some dozens of records.
 */
export async function openEtcdStore(options: EtcdStoreOptions): Promise<EtcdStore> {
  const settings = checkOptions(options);
  const tls: { ca?: string; cert?: string; key?: string } = {};
  for (const [name, file] of Object.entries(options.tls ?? {}) as Array<['ca' | 'cert' | 'key', string | undefined]>) {
    if (file === undefined) continue;
    try {
      tls[name] = readFileSync(file, 'utf8');
    } catch (err) {
      throw new GatehouseError('ERR_STORE_UNAVAILABLE', `cannot read the etcd TLS ${name} file ${file}: ${(err as Error).message}`, { cause: err });
    }
  }
  if ((tls.cert === undefined) !== (tls.key === undefined)) throw new TypeError('etcd tls needs both cert and key (or neither)');
  const client = new EtcdClient({ endpoints: settings.endpoints, tls, dialTimeout: settings.dialTimeout, requestTimeout: settings.requestTimeout });
  const store = new EtcdStoreImpl(client, settings);
  store.start();
  return store;
}

function checkOptions(options: EtcdStoreOptions): Settings {
  if (typeof options !== 'object' || options === null) throw new TypeError('etcd store options must be an object');
  for (const key of Object.keys(options)) {
    if (!optionNames.includes(key)) throw new TypeError(`unknown etcd store option "${key}"; known: ${optionNames.join(', ')}`);
  }
  const { endpoints, prefix = '/gatehouse/', tls } = options;
  if (!Array.isArray(endpoints) || endpoints.length === 0) throw new TypeError('etcd endpoints must be a non-empty list of URLs');
  const origins = endpoints.map((endpoint) => {
    let url: URL;
    try {
      url = new URL(String(endpoint));
    } catch {
      throw new TypeError(`etcd endpoint ${JSON.stringify(endpoint)} is not a URL (use http(s)://host:port)`);
    }
    if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.pathname !== '/' || url.search || url.username) {
      throw new TypeError(`etcd endpoint ${JSON.stringify(endpoint)} must be http(s)://host:port, with no path`);
    }
    return url.origin;
  });
  if (typeof prefix !== 'string' || prefix.length === 0 || prefix.includes('\0')) throw new TypeError('etcd prefix must be a non-empty string without NUL');
  if (tls !== undefined && (typeof tls !== 'object' || tls === null)) throw new TypeError('etcd tls must be an object { ca, cert, key }');
  for (const key of Object.keys(tls ?? {})) {
    if (!['ca', 'cert', 'key'].includes(key)) throw new TypeError(`unknown etcd tls option "${key}"; known: ca, cert, key`);
  }
  const settings: Settings = { endpoints: origins, prefix, ...numericDefaults };
  for (const name of Object.keys(numericDefaults) as Array<keyof typeof numericDefaults>) {
    const value = options[name];
    if (value === undefined) continue;
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < minimums[name]) {
      throw new TypeError(`etcd store option ${name} must be an integer >= ${minimums[name]} (got ${String(value)})`);
    }
    settings[name] = value;
  }
  return settings;
}

class EtcdStoreImpl implements EtcdStore {
  readonly name = 'etcd';
  readonly endpoints: readonly string[];
  readonly prefix: string;
  readonly #client: EtcdClient;
  readonly #keys: KeyLayout;
  readonly #settings: Settings;
  readonly #watches = new Set<AbortController>();
  #closed = false;
  /** Whether the last call answered (see `reachable`). */
  #reachable = true;
  #sweepTimer: NodeJS.Timeout | undefined;
  #sweeping = false;
  readonly #leases: LeaseCache;

  constructor(client: EtcdClient, settings: Settings) {
    this.#client = client;
    this.#settings = settings;
    this.endpoints = settings.endpoints;
    this.prefix = settings.prefix;
    this.#keys = new KeyLayout(settings.prefix);
    this.#leases = new LeaseCache(async (ttl, timeout) => {
      const answer = await this.#client.call<LeaseGrantResponse>('/v3/lease/grant', { TTL: String(ttl) }, { timeout });
      if (!answer.ID || !/^\d+$/.test(answer.ID) || answer.ID === '0') throw new Error(`etcd granted no lease (${JSON.stringify(answer)})`);
      return { id: answer.ID, ttl: num(answer.TTL) };
    });
  }

  /** Starts the periodic sweep (which does not keep the process alive). */
  start(): void {
    if (this.#settings.sweepInterval > 0) {
      this.#sweepTimer = setInterval(() => void this.#sweepQuietly(), this.#settings.sweepInterval).unref();
    }
  }

  async get<T>(kind: string, id: string): Promise<StoreRecord<T> | undefined> {
    this.#checkOpen();
    checkKind(kind);
    checkId(id);
    const answer = await this.#call<RangeResponse>(`read ${kind}/${id}`, '/v3/kv/range', { key: b64(this.#keys.record(kind, id)) });
    const kv = answer.kvs?.[0];
    return kv ? this.#toRecord<T>(kind, id, kv, Date.now()) : undefined;
  }

  async list<T>(kind: string, options?: ListOptions): Promise<StoreRecord<T>[]> {
    this.#checkOpen();
    checkKind(kind);
    const { prefix, limit, reverse, after } = checkListOptions(options);
    let { start, end } = this.#keys.kindRange(kind, prefix);
    if (after !== undefined) {
      if (reverse) end = min(end, this.#keys.record(kind, after));
      else start = max(start, this.#keys.afterId(kind, after));
    }
    try {
      return await this.#list<T>(kind, start, end, limit, reverse === true, true);
    } catch (err) {
      // etcd compacted the revision of the first page before a later one was read: list again, page by page
      if (!(err instanceof GatehouseError && err.cause instanceof EtcdCallError && err.cause.grpcCode === grpcCode.outOfRange)) throw err;
      return this.#list<T>(kind, start, end, limit, reverse === true, false);
    }
  }

  async #list<T>(kind: string, start: Buffer, end: Buffer, limit: number | undefined, reverse: boolean, snapshot: boolean): Promise<StoreRecord<T>[]> {
    const out: StoreRecord<T>[] = [];
    let revision: string | undefined;
    const now = Date.now();
    while (Buffer.compare(start, end) < 0) {
      const want = Math.min(pageSize, limit === undefined ? pageSize : Math.max(limit - out.length, 1));
      const answer = await this.#call<RangeResponse>(`list ${kind}`, '/v3/kv/range', {
        key: b64(start),
        range_end: b64(end),
        limit: String(want),
        ...(reverse ? { sort_order: 'DESCEND', sort_target: 'KEY' } : {}),
        // later pages read the same revision as the first, so a listing is one snapshot
        ...(revision ? { revision } : {}),
      });
      if (snapshot) revision ??= answer.header?.revision;
      const kvs = answer.kvs ?? [];
      for (const kv of kvs) {
        const key = unb64(kv.key);
        const at = this.#keys.parseRecord(key);
        const record = at && at.kind === kind ? this.#toRecord<T>(kind, at.id, kv, now) : undefined;
        if (record) out.push(record);
        if (limit !== undefined && out.length >= limit) return out;
      }
      if (!answer.more || kvs.length === 0) break;
      const last = unb64(kvs.at(-1)!.key);
      if (reverse) end = last;
      else start = Buffer.concat([last, Buffer.from([0])]);
    }
    return out;
  }

  async put<T>(kind: string, id: string, value: T, options?: PutOptions): Promise<StoreRecord<T>> {
    this.#checkOpen();
    const { expiresAt, ifRevision } = checkPutOptions(options);
    const op: CheckedOp = { op: 'put', kind: checkKind(kind), id: checkId(id), json: encodeValue(value), expiresAt, ifRevision };
    const { revision } = await this.#write([op]);
    const record: { -readonly [K in keyof StoreRecord<T>]: StoreRecord<T>[K] } = { kind, id, value: JSON.parse(op.json) as T, revision };
    if (expiresAt !== undefined) record.expiresAt = expiresAt;
    return record;
  }

  async delete(kind: string, id: string, options?: { ifRevision?: number }): Promise<boolean> {
    this.#checkOpen();
    const op: CheckedOp = { op: 'delete', kind: checkKind(kind), id: checkId(id), ifRevision: checkDeleteOptions(options).ifRevision };
    return (await this.#write([op])).changed > 0;
  }

  async transact(ops: StoreOp[]): Promise<void> {
    this.#checkOpen();
    const checked = checkOps(ops);
    if (checked.length > 0) await this.#write(checked);
  }

  async revision(): Promise<number> {
    this.#checkOpen();
    return this.#revision();
  }

  async kinds(): Promise<string[]> {
    this.#checkOpen();
    const kinds: string[] = [];
    let start = this.#keys.recordsStart;
    while (Buffer.compare(start, this.#keys.recordsEnd) < 0) {
      const answer = await this.#call<RangeResponse>('list the kinds', '/v3/kv/range', {
        key: b64(start),
        range_end: b64(this.#keys.recordsEnd),
        limit: '1',
        keys_only: true,
      });
      const kv = answer.kvs?.[0];
      if (!kv) break;
      const key = unb64(kv.key);
      const at = this.#keys.parseRecord(key);
      if (at) kinds.push(at.kind);
      // skip the rest of that kind (or just a foreign key under the prefix)
      start = at ? this.#keys.afterKind(at.kind) : Buffer.concat([key, Buffer.from([0])]);
    }
    return kinds.sort();
  }

  watch(fromRevision: number, watcher: StoreWatcher, signal: AbortSignal): void {
    this.#checkOpen();
    checkRevision(fromRevision);
    if (typeof watcher?.onChanges !== 'function' || typeof watcher.onResync !== 'function') {
      throw new TypeError('watch needs a watcher with onChanges and onResync');
    }
    if (!(signal instanceof AbortSignal)) throw new TypeError('watch needs an AbortSignal');
    if (signal.aborted) return;
    const controller = new AbortController();
    const onAbort = () => controller.abort();
    signal.addEventListener('abort', onAbort, { once: true });
    this.#watches.add(controller);
    void this.#follow(fromRevision, watcher, controller.signal).finally(() => {
      signal.removeEventListener('abort', onAbort);
      this.#watches.delete(controller);
    });
  }

  async sweep(): Promise<number> {
    this.#checkOpen();
    return this.#sweep(Date.now());
  }

  async healthy(): Promise<boolean> {
    this.#checkOpen();
    try {
      await this.#revision(Math.min(healthTimeout, this.#settings.requestTimeout));
      return true;
    } catch {
      return false;
    }
  }

  reachable(): boolean {
    return this.#reachable && !this.#closed;
  }

  async compact(): Promise<number> {
    this.#checkOpen();
    const revision = await this.#revision();
    try {
      await this.#client.call('/v3/kv/compaction', { revision: String(revision), physical: true });
    } catch (err) {
      // compacting again at the same revision is no news
      if (!(err instanceof EtcdCallError && err.grpcCode === grpcCode.outOfRange)) throw this.#translate(err, 'compact');
    }
    return revision;
  }

  async close(): Promise<void> {
    this.#checkOpen();
    this.#closed = true;
    clearInterval(this.#sweepTimer);
    for (const controller of this.#watches) controller.abort();
    this.#watches.clear();
    this.#leases.clear(); // never revoked: each ends by itself soon after its records expire
    await this.#client.destroy();
  }

  #checkOpen(): void {
    if (this.#closed) throw new GatehouseError('ERR_STORE_CLOSED', `the etcd store at ${this.endpoints.join(', ')} is closed`);
  }

  /**
   * One call to etcd, its failure translated at this boundary. `write`: the call commits a change, so a failure
   * says whether it surely changed nothing.
   */
  async #call<T>(what: string, path: string, body: unknown, options?: { idempotent?: boolean; timeout?: number; write?: boolean }): Promise<T> {
    try {
      const answer = await this.#client.call<T>(path, body, options);
      this.#reachable = true;
      return answer;
    } catch (err) {
      if (isOutage(err)) this.#reachable = false;
      throw this.#translate(err, what, options?.write === true && !surelyUnsent(err) ? 'unknown' : 'unchanged');
    }
  }

  #translate(err: unknown, what: string, outcome: 'unchanged' | 'unknown' = 'unchanged'): GatehouseError {
    if (this.#closed) return new GatehouseError('ERR_STORE_CLOSED', `the etcd store was closed while it was to ${what}`, { cause: err });
    if (err instanceof GatehouseError) return err;
    let hint = '';
    if (err instanceof EtcdCallError && /too many operations/.test(err.message)) hint = ' (a transaction of that many records is over etcd\'s --max-txn-ops)';
    if (err instanceof EtcdCallError && /too large/.test(err.message)) hint = ' (over etcd\'s --max-request-bytes)';
    const result = outcome === 'unchanged' ? 'nothing was changed' : 'the change may or may not have been applied';
    return new StoreUnavailableError(`the etcd store could not ${what}: ${(err as Error).message}${hint}; ${result}`, outcome, { cause: err });
  }

  async #revision(timeout?: number): Promise<number> {
    const answer = await this.#call<RangeResponse>('read the revision', '/v3/kv/range', { key: b64(this.#keys.expiryStart), count_only: true }, { timeout });
    return num(answer.header?.revision);
  }

  #toRecord<T>(kind: string, id: string, kv: EtcdKv, now: number): StoreRecord<T> | undefined {
    const envelope = decodeEnvelope(unb64(kv.value));
    if (!envelope || (envelope.expiresAt !== undefined && envelope.expiresAt <= now)) return undefined;
    const revision = num(kv.mod_revision);
    return envelope.expiresAt === undefined
      ? { kind, id, value: envelope.value as T, revision }
      : { kind, id, value: envelope.value as T, revision, expiresAt: envelope.expiresAt };
  }

  /** The keys' current state, read in one revision (or several, for over a hundred keys: the compares guard the rest). */
  async #read(keys: readonly Buffer[], what: string, deadline?: number): Promise<Current[]> {
    const timeout = () => (deadline === undefined ? undefined : { timeout: Math.max(1, deadline - Date.now()) });
    const out: Current[] = [];
    for (let i = 0; i < keys.length; i += 100) {
      const chunk = keys.slice(i, i + 100);
      let kvs: Array<EtcdKv | undefined>;
      if (chunk.length === 1) {
        const answer = await this.#call<RangeResponse>(what, '/v3/kv/range', { key: b64(chunk[0]!) }, timeout());
        kvs = [answer.kvs?.[0]];
      } else {
        const answer = await this.#call<TxnResponse>(what, '/v3/kv/txn', { success: chunk.map((k) => ({ request_range: { key: b64(k) } })) }, timeout());
        kvs = chunk.map((_, j) => answer.responses?.[j]?.response_range?.kvs?.[0]);
      }
      for (const kv of kvs) out.push({ kv, modRevision: num(kv?.mod_revision), envelope: kv ? decodeEnvelope(unb64(kv.value)) : undefined });
    }
    return out;
  }

  /**
   * Checks every condition against what it reads, then writes every op in one transaction that holds
   * only while the keys it depends on are as read; reads again when one changed meanwhile.
   */
  async #write(ops: readonly CheckedOp[]): Promise<{ revision: number; changed: number }> {
    const what = ops.length === 1 ? `write ${ops[0]!.kind}/${ops[0]!.id}` : `write a transaction of ${ops.length} records`;
    const keys = ops.map((op) => this.#keys.record(op.kind, op.id));
    // one deadline for the whole write, its reads and its transaction
    const deadline = Date.now() + this.#settings.requestTimeout;
    // the values of the last transaction whose outcome was unknown (it may sit in the log of a leader that died)
    let unsure: { puts: ReadonlyMap<number, string>; changed: number } | undefined;
    for (let attempt = 0; attempt < writeAttempts; attempt++) {
      let leases: Array<string | undefined>;
      let current: Current[];
      try {
        leases = await this.#leasesFor(ops, what, deadline);
        current = await this.#read(keys, what, deadline);
      } catch (err) {
        // after a transaction whose answer was lost, a failure to look says nothing of whether that one applied
        if (unsure && err instanceof StoreUnavailableError && err.outcome === 'unchanged') {
          throw new StoreUnavailableError(`${err.message.replace(/; nothing was changed$/, '')}; an earlier attempt may or may not have been applied`, 'unknown', { cause: err.cause });
        }
        throw err;
      }
      if (unsure && applied(ops, current, unsure.puts)) return { revision: Math.max(...current.map((c) => c.modRevision)), changed: unsure.changed };
      unsure = undefined;
      const now = Date.now();
      const compare: Compare[] = [];
      const success: TxnOp[] = [];
      const sent = new Map<number, string>();
      let changed = 0;
      ops.forEach((op, i) => {
        const { kv, modRevision, envelope } = current[i]!;
        const old = envelope?.expiresAt;
        const live = envelope !== undefined && (old === undefined || old > now);
        const liveRevision = live ? modRevision : 0;
        if (op.ifRevision !== undefined && op.ifRevision !== liveRevision) {
          throw new GatehouseError(
            'ERR_STORE_CONFLICT',
            `${op.kind}/${op.id} is ${liveRevision === 0 ? 'absent' : `at revision ${liveRevision}`}, not ${op.ifRevision === 0 ? 'absent' : `at revision ${op.ifRevision}`}`,
          );
        }
        const key = b64(keys[i]!);
        const guard = () => compare.push({ key, target: 'MOD', result: 'EQUAL', mod_revision: String(modRevision) });
        if (op.op === 'put') {
          if (op.ifRevision !== undefined) guard();
          // without a lease, a put detaches the key from the lease it had
          const lease = leases[i] === undefined ? {} : { lease: leases[i] };
          const value = b64(encodeEnvelope(op.json, op.expiresAt));
          sent.set(i, value);
          success.push({ request_put: { key, value, ...lease } });
          if (op.expiresAt !== undefined) success.push({ request_put: { key: b64(this.#keys.expiry(op.expiresAt, op.kind, op.id)), value: '', ...lease } });
          if (old !== undefined && (op.expiresAt === undefined || expiryText(old) !== expiryText(op.expiresAt))) {
            success.push({ request_delete_range: { key: b64(this.#keys.expiry(old, op.kind, op.id)) } });
          }
          changed++;
        } else if (live) {
          guard();
          success.push({ request_delete_range: { key } });
          if (old !== undefined) success.push({ request_delete_range: { key: b64(this.#keys.expiry(old, op.kind, op.id)) } });
          changed++;
        } else if (op.ifRevision !== undefined && kv) {
          guard(); // "absent" because expired: it must still be so when the others are written
        }
      });
      if (success.length === 0) return { revision: 0, changed: 0 };
      const left = deadline - Date.now();
      if (left <= 0) throw this.#translate(new Error(`no answer within ${this.#settings.requestTimeout} ms`), what);
      let answer: TxnResponse;
      try {
        answer = await this.#call<TxnResponse>(what, '/v3/kv/txn', { compare, success }, { idempotent: false, timeout: left, write: true });
      } catch (err) {
        // no answer (a member lost its leader with the transaction): read again and see; the compares keep a late
        // apply of this transaction and the next attempt from both taking effect
        if (err instanceof StoreUnavailableError && err.outcome === 'unknown' && isOutage(err.cause) && deadline - Date.now() > 0) {
          unsure = { puts: sent, changed };
          continue;
        }
        // a cached lease etcd no longer knows (etcd replaced or restored, the lease revoked): nothing was written; grant anew
        if (!(err instanceof GatehouseError && isLeaseNotFound(err.cause))) throw err;
        for (const id of leases) if (id !== undefined) this.#leases.forget(id);
        continue;
      }
      if (answer.succeeded) return { revision: num(answer.header?.revision), changed };
    }
    throw new GatehouseError('ERR_STORE_CONFLICT', `${what}: its records kept changing while it was written (${writeAttempts} attempts)`);
  }

  /** The lease of each put that expires (undefined for the others), granted (or cached) within the write's deadline. */
  async #leasesFor(ops: readonly CheckedOp[], what: string, deadline: number): Promise<Array<string | undefined>> {
    const out: Array<string | undefined> = [];
    for (const op of ops) {
      if (op.op !== 'put' || op.expiresAt === undefined) {
        out.push(undefined);
        continue;
      }
      const left = deadline - Date.now();
      if (left <= 0) throw this.#translate(new Error(`no answer within ${this.#settings.requestTimeout} ms`), what);
      try {
        out.push(await this.#leases.lease(op.expiresAt, left));
      } catch (err) {
        if (isOutage(err)) this.#reachable = false;
        throw this.#translate(err, `${what} (granting its etcd lease)`);
      }
    }
    return out;
  }

  async #sweep(now: number): Promise<number> {
    let swept = 0;
    for (let round = 0; round < 100; round++) {
      const index = await this.#call<RangeResponse>('sweep expired records', '/v3/kv/range', {
        key: b64(this.#keys.expiryStart),
        range_end: b64(this.#keys.expiredBefore(now)),
        limit: String(sweepBatch),
        keys_only: true,
      });
      const entries = (index.kvs ?? []).map((kv) => ({ key: unb64(kv.key), at: this.#keys.parseExpiry(unb64(kv.key)) }));
      if (entries.length === 0) break;
      const records = await this.#read(
        entries.map((e) => (e.at ? this.#keys.record(e.at.kind, e.at.id) : e.key)),
        'sweep expired records',
      );
      const compare: Compare[] = [];
      const success: TxnOp[] = [];
      let count = 0;
      entries.forEach((entry, i) => {
        success.push({ request_delete_range: { key: b64(entry.key) } });
        if (!entry.at) return; // not an index key of ours: drop it
        const { kv, modRevision, envelope } = records[i]!;
        const recordKey = b64(this.#keys.record(entry.at.kind, entry.at.id));
        // the record is as read (or still absent), so that the index stays right for a record written meanwhile
        compare.push({ key: recordKey, target: 'MOD', result: 'EQUAL', mod_revision: String(modRevision) });
        const expiresAt = envelope?.expiresAt;
        if (kv && expiresAt !== undefined && expiryText(expiresAt) === entry.at.time) {
          if (expiresAt > now) {
            success.pop(); // not due yet after all: keep its index key
            compare.pop();
            return;
          }
          success.push({ request_delete_range: { key: recordKey } });
          count++;
        }
      });
      if (success.length === 0) break;
      const answer = await this.#call<TxnResponse>('sweep expired records', '/v3/kv/txn', { compare, success }, { idempotent: false });
      if (answer.succeeded) swept += count;
      else continue; // written meanwhile (or swept by another process): read again
      if (entries.length < sweepBatch) break;
    }
    return swept;
  }

  async #sweepQuietly(): Promise<void> {
    if (this.#closed || this.#sweeping) return;
    this.#sweeping = true;
    try {
      await this.#sweep(Date.now());
    } catch {
      // etcd is unreachable (healthy() says so) or another process swept the same records: next tick
    } finally {
      this.#sweeping = false;
    }
  }

  /**
   * One watch: watches etcd from after `cursor`, delivers, and on any failure watches again from the
   * last revision delivered, waiting longer each time up to `retryDelay`, until `signal` aborts.
   */
  async #follow(fromRevision: number, watcher: StoreWatcher, signal: AbortSignal): Promise<void> {
    let cursor = fromRevision;
    let delay = 0;
    const resync = (reason: StoreResync['reason']) => {
      if (!signal.aborted) deliver(() => watcher.onResync({ fromRevision: cursor, reason }));
    };
    while (!signal.aborted && !this.#closed) {
      if (delay > 0) {
        try {
          await sleep(delay, undefined, { signal });
        } catch {
          return;
        }
      }
      try {
        // A watch from the future would wait for it; the store was replaced or restored instead.
        if (cursor > (await this.#revision())) return resync('ahead');
        const create = {
          key: b64(this.#keys.recordsStart),
          range_end: b64(this.#keys.recordsEnd),
          start_revision: String(cursor + 1),
          progress_notify: true,
        };
        for await (const result of this.#client.watch(create, signal)) {
          if (signal.aborted) return;
          if (num(result.compact_revision) > 0) return resync('compacted');
          if (result.created) {
            delay = 0;
            continue;
          }
          const next = this.#changes(result);
          if (next.changes.length > 0) {
            cursor = next.revision;
            deliver(() => watcher.onChanges(next.changes));
          } else if (next.revision > cursor) {
            cursor = next.revision; // a progress note: nothing of ours up to there
          }
        }
      } catch (err) {
        if (signal.aborted || this.#closed) return;
        if (err instanceof EtcdCallError) this.#client.failed(err.endpoint);
      }
      delay = Math.min(Math.max(delay * 2, 50), this.#settings.retryDelay);
    }
  }

  /** The changes of one watch message, and the revision it brings the watch to. */
  #changes(result: WatchResult): { changes: StoreChange[]; revision: number } {
    const events = result.events ?? [];
    if (events.length === 0) return { changes: [], revision: num(result.header?.revision) };
    const changes: StoreChange[] = [];
    let revision = 0;
    for (const event of events) {
      if (!event.kv) continue;
      const eventRevision = num(event.kv.mod_revision);
      revision = Math.max(revision, eventRevision);
      const at = this.#keys.parseRecord(unb64(event.kv.key));
      if (!at) continue;
      if (event.type === 'DELETE') changes.push(toChange(at.kind, at.id, eventRevision, undefined));
      else {
        const envelope = decodeEnvelope(unb64(event.kv.value));
        if (envelope) changes.push(toChange(at.kind, at.id, eventRevision, envelope));
      }
    }
    return { changes, revision };
  }
}

/** A failure of etcd's availability (no answer, no leader, unavailable), not an answer about the request. */
function isOutage(err: unknown): boolean {
  if (!(err instanceof EtcdCallError)) return false;
  return err.grpcCode === undefined || err.grpcCode === grpcCode.unavailable || err.grpcCode === grpcCode.deadlineExceeded || /no leader/.test(err.message);
}

/**
 * Whether a transaction whose answer was lost took effect: every record it put holds the value it sent,
 * every record it deleted is gone.
 */
function applied(ops: readonly CheckedOp[], current: readonly Current[], puts: ReadonlyMap<number, string>): boolean {
  return ops.every((op, i) => (op.op === 'put' ? current[i]!.kv?.value === puts.get(i) : current[i]!.kv === undefined));
}

/** etcd refused a write for a lease it does not know (nothing was written). */
function isLeaseNotFound(err: unknown): boolean {
  return err instanceof EtcdCallError && /lease not found/.test(err.message);
}

/** A write that surely never reached etcd's log: never sent, or refused by a member without a leader. */
function surelyUnsent(err: unknown): boolean {
  return err instanceof EtcdCallError && (err.unsent || /no leader|not capable/.test(err.message));
}

/** Calls a watcher; its error is its own bug, surfaced as uncaught without stopping the watch. */
function deliver(call: () => void): void {
  try {
    call();
  } catch (err) {
    process.nextTick(() => {
      throw err;
    });
  }
}

function min(a: Buffer, b: Buffer): Buffer {
  return Buffer.compare(a, b) <= 0 ? a : b;
}

function max(a: Buffer, b: Buffer): Buffer {
  return Buffer.compare(a, b) >= 0 ? a : b;
}
