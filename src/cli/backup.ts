/**
 * `gatehouse backup -c FILE OUT` and `gatehouse restore -c FILE IN`: every live record of every kind in the
 * configured store (users, memberships, tokens, sessions, certificates, the CA with its sealed key, the keyring,
 * the audit log…) copied to a file and back, for either store and between them (SQLite → etcd).
 *
 * The file is JSON lines, mode 0600: a header line, then one record per line —
 *
 *   {"format":"gatehouse-backup","version":1,"source":{"store":"sqlite","revision":42},"created":"2026-…Z"}
 *   {"kind":"user","id":"alice@example.com","value":{…}}
 *   {"kind":"session","id":"…","value":{…},"expiresAt":1767225600000}
 *
 * Values are copied as stored: what the store keeps sealed (the CA key, under identity.secretsKey) stays sealed,
 * so a restored store needs the same secretsKey. Revisions are not copied: the target store numbers its own.
 * A backup taken while Gatehouse runs holds each record as it was when read, kind by kind; for an exact copy,
 * stop the writers first. A restore writes into an empty store (`--force`: deletes everything there first) in
 * transactions of some dozens of records; run it before the Gatehouses that use the store start.
 */
import { once } from 'node:events';
import { createReadStream, createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { GatehouseError, messageOf } from '../core/index.ts';
import { exists } from './files.ts';
import { formatProblems, loadConfig } from '../config/index.ts';
import { openStore, type Store, type StoreOp } from '../store/index.ts';

export const BACKUP_FORMAT = 'gatehouse-backup';
export const BACKUP_VERSION = 1;

export interface BackupHeader {
  readonly format: typeof BACKUP_FORMAT;
  readonly version: number;
  readonly source: { readonly store: string; readonly revision: number };
  readonly created: string;
}

/** One record of a backup. */
export interface BackupRecord {
  readonly kind: string;
  readonly id: string;
  readonly value: unknown;
  readonly expiresAt?: number;
}

/** Records read per page while copying out. */
const page = 1000;
/** Records written per transaction on restore, and their JSON size at most (etcd takes 128 operations and 1.5 MiB per request). */
const batchRecords = 40;
const batchBytes = 512 * 1024;
const kindPattern = /^[A-Za-z0-9_.-]{1,64}$/;

/** Every live record of `store`, kind by kind, each kind in id order. */
export async function* readAll(store: Store): AsyncGenerator<BackupRecord> {
  for (const kind of await store.kinds()) {
    let after: string | undefined;
    for (;;) {
      const records = await store.list(kind, { limit: page, ...(after !== undefined ? { after } : {}) });
      for (const r of records) yield r.expiresAt === undefined ? { kind, id: r.id, value: r.value } : { kind, id: r.id, value: r.value, expiresAt: r.expiresAt };
      if (records.length < page) break;
      after = records.at(-1)!.id;
    }
  }
}

/** The kinds of `store` that hold live records. */
export async function liveKinds(store: Store): Promise<string[]> {
  const kinds: string[] = [];
  for (const kind of await store.kinds()) if ((await store.list(kind, { limit: 1 })).length > 0) kinds.push(kind);
  return kinds;
}

/** Writes `records` into `store` in transactions; returns how many were written, by kind (those already expired are not). */
export async function writeAll(
  store: Store,
  records: AsyncIterable<BackupRecord> | Iterable<BackupRecord>,
): Promise<{ written: number; expired: number; counts: Map<string, number> }> {
  let ops: StoreOp[] = [];
  let bytes = 0;
  let written = 0;
  let expired = 0;
  const counts = new Map<string, number>();
  const flush = async () => {
    if (ops.length === 0) return;
    await store.transact(ops);
    written += ops.length;
    ops = [];
    bytes = 0;
  };
  for await (const r of records) {
    if (r.expiresAt !== undefined && r.expiresAt <= Date.now()) {
      expired++;
      continue;
    }
    const size = JSON.stringify(r.value).length + r.id.length;
    if (ops.length >= batchRecords || (ops.length > 0 && bytes + size > batchBytes)) await flush();
    ops.push({ op: 'put', kind: r.kind, id: r.id, value: r.value, ...(r.expiresAt !== undefined ? { options: { expiresAt: r.expiresAt } } : {}) });
    counts.set(r.kind, (counts.get(r.kind) ?? 0) + 1);
    bytes += size;
  }
  await flush();
  return { written, expired, counts };
}

/** Deletes every record of `store`; returns how many. */
export async function deleteAll(store: Store): Promise<number> {
  let deleted = 0;
  for (const kind of await store.kinds()) {
    for (;;) {
      const records = await store.list(kind, { limit: batchRecords });
      if (records.length === 0) break;
      await store.transact(records.map((r) => ({ op: 'delete', kind, id: r.id, ifRevision: r.revision })));
      deleted += records.length;
    }
  }
  return deleted;
}

async function withStore(file: string, work: (store: Store) => Promise<number>): Promise<number> {
  const loaded = await loadConfig(file);
  if (!loaded.ok) {
    process.stderr.write(formatProblems(loaded.problems) + '\n');
    return 1;
  }
  const store = await openStore(loaded.config.store, loaded.baseDir);
  try {
    return await work(store);
  } finally {
    await store.close().catch(() => undefined);
  }
}

function summary(counts: Map<string, number>): string {
  return [...counts].map(([kind, n]) => `${kind} ${n}`).join(', ') || 'none';
}

export async function runBackup(o: { config: string; out: string; force?: boolean }): Promise<number> {
  if (!o.force && (await exists(o.out))) throw new GatehouseError('ERR_USAGE', `${o.out} already exists: choose another file, remove it, or add --force to replace it`);
  return withStore(o.config, async (store) => {
    // written beside OUT and renamed into place at the end, so OUT is never a half-written backup
    const partial = join(dirname(o.out), `.${basename(o.out)}.${process.pid}.partial`);
    const counts = new Map<string, number>();
    let total = 0;
    try {
      const out = createWriteStream(partial, { flags: 'wx', mode: 0o600 });
      const opened = once(out, 'open');
      const failed = new Promise<never>((_, reject) => out.once('error', reject));
      failed.catch(() => undefined);
      await Promise.race([opened, failed]);
      const write = async (line: string) => {
        if (!out.write(`${line}\n`)) await Promise.race([once(out, 'drain'), failed]);
      };
      const header: BackupHeader = {
        format: BACKUP_FORMAT,
        version: BACKUP_VERSION,
        source: { store: store.name, revision: await store.revision() },
        created: new Date().toISOString(),
      };
      await write(JSON.stringify(header));
      for await (const record of readAll(store)) {
        await write(JSON.stringify(record));
        counts.set(record.kind, (counts.get(record.kind) ?? 0) + 1);
        total++;
      }
      out.end();
      await Promise.race([once(out, 'finish'), failed]);
      await rename(partial, o.out);
    } catch (err) {
      await rm(partial, { force: true });
      if (err instanceof GatehouseError) throw err;
      throw new GatehouseError('ERR_USAGE', `cannot write ${o.out}: ${messageOf(err)}`, { cause: err });
    }
    process.stderr.write(`Backed up ${total} records from the ${store.name} store to ${o.out} (${summary(counts)})\n`);
    return 0;
  });
}

/** Reads a backup file: its header, then its records, each checked, errors naming FILE:LINE. */
async function* readBackup(file: string, onHeader: (header: BackupHeader) => void): AsyncGenerator<BackupRecord> {
  const input = createReadStream(file, { encoding: 'utf8' });
  const opened = new Promise<void>((resolve, reject) => {
    input.once('open', () => resolve());
    input.once('error', reject);
  });
  try {
    await opened;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new GatehouseError('ERR_USAGE', `cannot read ${file}: ${code === 'ENOENT' ? 'no such file' : messageOf(err)}`, { cause: err });
  }
  const lines = createInterface({ input, crlfDelay: Infinity });
  let n = 0;
  const bad = (message: string) => new GatehouseError('ERR_USAGE', `${file}:${n}: ${message}`);
  for await (const line of lines) {
    n++;
    if (line.trim() === '') continue;
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch {
      throw bad('not a JSON line');
    }
    if (n === 1) {
      const h = parsed as Partial<BackupHeader>;
      if (h?.format !== BACKUP_FORMAT) throw bad(`not a Gatehouse backup (its first line has no "format": "${BACKUP_FORMAT}")`);
      if (typeof h.version !== 'number' || h.version > BACKUP_VERSION) throw bad(`backup format version ${String(h.version)}: this Gatehouse reads up to ${BACKUP_VERSION} (use a newer Gatehouse)`);
      onHeader(h as BackupHeader);
      continue;
    }
    yield checkRecord(parsed, bad);
  }
  if (n === 0) throw bad('the file is empty');
}

function checkRecord(parsed: unknown, bad: (message: string) => Error): BackupRecord {
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw bad('a record must be a JSON object');
  const r = parsed as Record<string, unknown>;
  for (const key of Object.keys(r)) if (!['kind', 'id', 'value', 'expiresAt'].includes(key)) throw bad(`unknown field "${key}" (a record has kind, id, value, expiresAt)`);
  if (typeof r.kind !== 'string' || !kindPattern.test(r.kind)) throw bad(`kind must be 1-64 characters of A-Z a-z 0-9 _ . - (got ${JSON.stringify(r.kind)})`);
  if (typeof r.id !== 'string' || r.id.length === 0 || r.id.length > 1024 || r.id.includes('\0') || /\p{Surrogate}/u.test(r.id)) throw bad(`id must be 1-1024 characters without NUL (got ${JSON.stringify(r.id)})`);
  if (!('value' in r)) throw bad('the record has no value');
  if (r.expiresAt !== undefined && (typeof r.expiresAt !== 'number' || !Number.isFinite(r.expiresAt))) throw bad('expiresAt must be milliseconds since the epoch');
  return r.expiresAt === undefined ? { kind: r.kind, id: r.id, value: r.value } : { kind: r.kind, id: r.id, value: r.value, expiresAt: r.expiresAt };
}

export async function runRestore(o: { config: string; in: string; force?: boolean }): Promise<number> {
  // the whole file is read and checked before the store is touched
  let header: BackupHeader | undefined;
  let records = 0;
  for await (const _ of readBackup(o.in, (h) => (header = h))) records++;
  return withStore(o.config, async (store) => {
    const present = await liveKinds(store);
    let deleted = 0;
    if (present.length > 0) {
      if (!o.force) {
        throw new GatehouseError(
          'ERR_USAGE',
          `the ${store.name} store already holds records (${present.join(', ')}): restore into an empty store, or add --force to replace everything in it`,
        );
      }
      deleted = await deleteAll(store);
    }
    const { written, expired, counts } = await writeAll(store, readBackup(o.in, () => undefined));
    const from = header ? ` (taken from a ${header.source.store} store on ${header.created})` : '';
    process.stderr.write(
      `Restored ${written} of ${records} records into the ${store.name} store from ${o.in}${from}` +
        `${expired > 0 ? `; ${expired} had expired since` : ''}${deleted > 0 ? `; ${deleted} records there before were deleted` : ''} (${summary(counts)})\n`,
    );
    return 0;
  });
}
