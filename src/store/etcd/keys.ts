/**
 * Where records live in etcd. Every key starts with the configured `prefix` (bytes, compared bytewise):
 *
 *   PREFIX KIND "/" ID                      a record; the value is its envelope (`encodeEnvelope`)
 *   PREFIX "!x/" EXPIRES "/" KIND "/" ID    the expiry index: one empty key per record that expires
 *
 * The id is its raw UTF-8: etcd keys are byte strings ordered bytewise, which is exactly the order
 * the Store promises for `list` (UTF-8 byte order), and a byte prefix of the key is an id prefix. Ids
 * hold no NUL, so `ID + "\0"` is the least key after ID. A kind is `[A-Za-z0-9_.-]` and cannot hold
 * "/", so `KIND "/"` ends it, and `kind` and `kindx` stay apart. Kinds start at `-` (0x2D) and end at
 * `z` (0x7A): every record lies in [PREFIX "-", PREFIX "{"), and the index under PREFIX "!" (0x21)
 * stays outside the range that `watch` follows.
 *
 * EXPIRES is the expiry in whole milliseconds (rounded up, so a key at or before now means an expired
 * record), 16 decimal digits: the index sorts by time and a sweep reads the keys up to now.
 */
import type { StoreChange } from '../store.ts';

const expiryDigits = 16;
const maxExpiry = 10 ** expiryDigits - 1;

export class KeyLayout {
  readonly prefix: Buffer;
  /** First and end (exclusive) key of all records. */
  readonly recordsStart: Buffer;
  readonly recordsEnd: Buffer;
  /** First key of the expiry index. */
  readonly expiryStart: Buffer;

  constructor(prefix: string) {
    this.prefix = Buffer.from(prefix);
    this.recordsStart = this.#key('-');
    this.recordsEnd = this.#key('{');
    this.expiryStart = this.#key('!x/');
  }

  #key(...parts: string[]): Buffer {
    return Buffer.concat([this.prefix, ...parts.map((p) => Buffer.from(p))]);
  }

  record(kind: string, id: string): Buffer {
    return this.#key(kind, '/', id);
  }

  /** The range [start, end) of one kind's records whose ids start with `idPrefix` (all of them without). */
  kindRange(kind: string, idPrefix?: string): { start: Buffer; end: Buffer } {
    if (idPrefix === undefined) return { start: this.#key(kind, '/'), end: this.#key(kind, '0') };
    const start = this.#key(kind, '/', idPrefix);
    return { start, end: prefixEnd(start) ?? this.#key(kind, '0') };
  }

  /** The least key after every key of `kind` (where a skip-scan of kinds goes on). */
  afterKind(kind: string): Buffer {
    return this.#key(kind, '0');
  }

  /** The least key greater than the record key of `id`: ids hold no NUL. */
  afterId(kind: string, id: string): Buffer {
    return this.#key(kind, '/', id, '\0');
  }

  /** (kind, id) of a record key, or undefined for any other key. */
  parseRecord(key: Buffer): { kind: string; id: string } | undefined {
    if (key.length <= this.prefix.length || !key.subarray(0, this.prefix.length).equals(this.prefix)) return undefined;
    const rest = key.subarray(this.prefix.length).toString();
    const slash = rest.indexOf('/');
    const kind = rest.slice(0, slash);
    if (slash < 1 || slash > 64 || !/^[A-Za-z0-9_.-]+$/.test(kind) || slash === rest.length - 1) return undefined;
    return { kind, id: rest.slice(slash + 1) };
  }

  expiry(expiresAt: number, kind: string, id: string): Buffer {
    return this.#key('!x/', expiryText(expiresAt), '/', kind, '/', id);
  }

  /** The end (exclusive) of the index keys of records expired at `now`. */
  expiredBefore(now: number): Buffer {
    return this.#key('!x/', expiryText(now + 1));
  }

  /** (expiry time as in the key, kind, id) of an index key, or undefined for any other key. */
  parseExpiry(key: Buffer): { time: string; kind: string; id: string } | undefined {
    if (!key.subarray(0, this.expiryStart.length).equals(this.expiryStart)) return undefined;
    const rest = key.subarray(this.expiryStart.length).toString();
    const time = rest.slice(0, expiryDigits);
    const record = this.parseRecord(Buffer.concat([this.prefix, Buffer.from(rest.slice(expiryDigits + 1))]));
    return record && /^\d+$/.test(time) ? { time, ...record } : undefined;
  }
}

export function expiryText(expiresAt: number): string {
  return String(Math.min(maxExpiry, Math.max(0, Math.ceil(expiresAt)))).padStart(expiryDigits, '0');
}

/** The least key above every key that starts with `key`, or undefined when there is none (all 0xFF). */
export function prefixEnd(key: Buffer): Buffer | undefined {
  for (let i = key.length - 1; i >= 0; i--) {
    if (key[i]! < 0xff) {
      const end = Buffer.from(key.subarray(0, i + 1));
      end[i]! += 1;
      return end;
    }
  }
  return undefined;
}

/**
 * A record's etcd value: `{"v":VALUE}`, or `{"e":EXPIRES_AT,"v":VALUE}` for one that expires. The JSON
 * text of the value is put in as it is, never parsed and written again.
 */
export function encodeEnvelope(json: string, expiresAt: number | undefined): string {
  return expiresAt === undefined ? `{"v":${json}}` : `{"e":${JSON.stringify(expiresAt)},"v":${json}}`;
}

export interface Envelope {
  readonly value: unknown;
  readonly expiresAt?: number;
}

/** The envelope of an etcd value, or undefined when the value is not one (a foreign key under the prefix). */
export function decodeEnvelope(bytes: Buffer): Envelope | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(bytes.toString());
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null || !('v' in parsed)) return undefined;
  const { v, e } = parsed as { v: unknown; e?: unknown };
  if (e === undefined) return { value: v };
  return typeof e === 'number' ? { value: v, expiresAt: e } : undefined;
}

/** A watched change, shaped as the Store promises (no `value` for a deletion; `expiresAt` only when set). */
export function toChange(kind: string, id: string, revision: number, envelope: Envelope | undefined): StoreChange {
  if (!envelope) return { kind, id, revision };
  return envelope.expiresAt === undefined
    ? { kind, id, revision, value: envelope.value }
    : { kind, id, revision, value: envelope.value, expiresAt: envelope.expiresAt };
}
