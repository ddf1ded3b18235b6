/**
 * Argument checks every Store implementation shares, so each rejects the same mistakes the same
 * way: with a `TypeError` naming the argument (a programming error, not a store failure).
 */
import type { ListOptions, PutOptions, StoreOp } from './store.ts';

export const maxValueBytes = 1024 * 1024;
const kindPattern = /^[A-Za-z0-9_.-]{1,64}$/;
const loneSurrogate = /\p{Surrogate}/u;

export function checkKind(kind: unknown): string {
  if (typeof kind !== 'string' || !kindPattern.test(kind)) {
    throw new TypeError(`store kind must be 1-64 characters of A-Z a-z 0-9 _ . - (got ${JSON.stringify(kind)})`);
  }
  return kind;
}

export function checkId(id: unknown, what = 'id'): string {
  if (typeof id !== 'string' || id.length === 0 || id.length > 1024 || id.includes('\0') || loneSurrogate.test(id)) {
    throw new TypeError(`store ${what} must be 1-1024 characters of well-formed Unicode without NUL (got ${JSON.stringify(id)})`);
  }
  return id;
}

/** The value as the JSON text that is stored. */
export function encodeValue(value: unknown): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch (err) {
    throw new TypeError(`store value is not JSON: ${(err as Error).message}`, { cause: err });
  }
  if (text === undefined) throw new TypeError(`store value is not JSON (got ${typeof value})`);
  if (text.length * 3 > maxValueBytes && Buffer.byteLength(text) > maxValueBytes) {
    throw new TypeError(`store value is ${Buffer.byteLength(text)} bytes as JSON; the limit is ${maxValueBytes}`);
  }
  return text;
}

function checkKeys(options: object, allowed: readonly string[], what: string): void {
  for (const key of Object.keys(options)) {
    if (allowed.includes(key)) continue;
    const near = allowed.find((a) => a.toLowerCase().slice(0, 4) === key.toLowerCase().slice(0, 4));
    throw new TypeError(`unknown ${what} option "${key}"${near ? ` (did you mean "${near}"?)` : ''}; known: ${allowed.join(', ')}`);
  }
}

function checkObject(options: unknown, what: string): object | undefined {
  if (options === undefined) return undefined;
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new TypeError(`${what} options must be an object`);
  }
  return options;
}

export function checkIfRevision(ifRevision: unknown): number | undefined {
  if (ifRevision === undefined) return undefined;
  if (typeof ifRevision !== 'number' || !Number.isSafeInteger(ifRevision) || ifRevision < 0) {
    throw new TypeError(`ifRevision must be an integer >= 0 (got ${String(ifRevision)})`);
  }
  return ifRevision;
}

export function checkRevision(revision: unknown): number {
  if (typeof revision !== 'number' || !Number.isSafeInteger(revision) || revision < 0) {
    throw new TypeError(`a revision must be an integer >= 0 (got ${String(revision)})`);
  }
  return revision;
}

export function checkPutOptions(options: unknown): PutOptions {
  const o = checkObject(options, 'put') as PutOptions | undefined;
  if (!o) return {};
  checkKeys(o, ['expiresAt', 'ifRevision'], 'put');
  if (o.expiresAt !== undefined && (typeof o.expiresAt !== 'number' || !Number.isFinite(o.expiresAt))) {
    throw new TypeError(`expiresAt must be milliseconds since the epoch (got ${String(o.expiresAt)})`);
  }
  return { expiresAt: o.expiresAt, ifRevision: checkIfRevision(o.ifRevision) };
}

export function checkDeleteOptions(options: unknown): { ifRevision?: number } {
  const o = checkObject(options, 'delete') as { ifRevision?: number } | undefined;
  if (!o) return {};
  checkKeys(o, ['ifRevision'], 'delete');
  return { ifRevision: checkIfRevision(o.ifRevision) };
}

export function checkListOptions(options: unknown): ListOptions {
  const o = checkObject(options, 'list') as ListOptions | undefined;
  if (!o) return {};
  checkKeys(o, ['prefix', 'limit', 'reverse', 'after'], 'list');
  if (o.prefix !== undefined && o.prefix !== '') checkId(o.prefix, 'prefix');
  if (o.after !== undefined) checkId(o.after, 'after cursor');
  if (o.limit !== undefined && (typeof o.limit !== 'number' || !Number.isSafeInteger(o.limit) || o.limit < 1)) {
    throw new TypeError(`limit must be a positive integer (got ${String(o.limit)})`);
  }
  if (o.reverse !== undefined && typeof o.reverse !== 'boolean') throw new TypeError('reverse must be a boolean');
  return { prefix: o.prefix || undefined, limit: o.limit, reverse: o.reverse === true, after: o.after };
}

/** A transaction's operations, checked, with each value already encoded. */
export type CheckedOp =
  | { op: 'put'; kind: string; id: string; json: string; expiresAt?: number; ifRevision?: number }
  | { op: 'delete'; kind: string; id: string; ifRevision?: number };

export function checkOps(ops: unknown): CheckedOp[] {
  if (!Array.isArray(ops)) throw new TypeError('transact takes an array of operations');
  const seen = new Set<string>();
  return ops.map((raw: StoreOp, i) => {
    if (typeof raw !== 'object' || raw === null) throw new TypeError(`operation ${i} is not an object`);
    const kind = checkKind(raw.kind);
    const id = checkId(raw.id);
    const key = `${kind}\0${id}`;
    if (seen.has(key)) throw new TypeError(`operation ${i} names ${kind}/${id} again; each record may appear once`);
    seen.add(key);
    if (raw.op === 'put') {
      checkKeys(raw, ['op', 'kind', 'id', 'value', 'options'], 'put operation');
      const { expiresAt, ifRevision } = checkPutOptions(raw.options);
      return { op: 'put', kind, id, json: encodeValue(raw.value), expiresAt, ifRevision };
    }
    if (raw.op === 'delete') {
      checkKeys(raw, ['op', 'kind', 'id', 'ifRevision'], 'delete operation');
      return { op: 'delete', kind, id, ifRevision: checkIfRevision(raw.ifRevision) };
    }
    throw new TypeError(`operation ${i} has op ${JSON.stringify((raw as { op?: unknown }).op)}; use "put" or "delete"`);
  });
}
