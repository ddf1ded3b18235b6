/**
 * DER, the distinguished encoding of ASN.1: just what X.509, PKCS#10 and PKCS#12 need.
 * Writers return the complete encoding of one value; readers walk a buffer without copying.
 * Only low tag numbers (< 31) and definite lengths are handled: nothing in these formats needs more.
 */

export const Tag = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  NUMERIC_STRING: 0x12,
  PRINTABLE_STRING: 0x13,
  T61_STRING: 0x14,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  VISIBLE_STRING: 0x1a,
  UNIVERSAL_STRING: 0x1c,
  BMP_STRING: 0x1e,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

/** Malformed DER. Public operations translate it into a `GatehouseError` at their boundary. */
export class DerError extends Error {
  override readonly name = 'DerError';
}

// ---------------------------------------------------------------------------------------------
// writing

export function encodeTlv(tag: number, content: Uint8Array): Buffer {
  const n = content.length;
  const lengthBytes = n < 0x80 ? 0 : n < 0x100 ? 1 : n < 0x10000 ? 2 : n < 0x1000000 ? 3 : 4;
  const out = Buffer.allocUnsafe(2 + lengthBytes + n);
  out[0] = tag;
  if (lengthBytes === 0) out[1] = n;
  else {
    out[1] = 0x80 | lengthBytes;
    out.writeUIntBE(n, 2, lengthBytes);
  }
  out.set(content, 2 + lengthBytes);
  return out;
}

export function sequence(...items: Uint8Array[]): Buffer {
  return sequenceOf(items);
}

/** A SEQUENCE OF a list too long to spread into arguments (a CRL with many entries). */
export function sequenceOf(items: readonly Uint8Array[]): Buffer {
  return encodeTlv(Tag.SEQUENCE, Buffer.concat(items));
}

/** A SET OF: DER wants the encoded members in ascending byte order. */
export function setOf(...items: Buffer[]): Buffer {
  return encodeTlv(Tag.SET, Buffer.concat([...items].sort(Buffer.compare)));
}

/** A non-negative INTEGER from a bigint, a safe integer or its unsigned big-endian bytes. */
export function integer(value: bigint | number | Uint8Array): Buffer {
  let bytes: Buffer;
  if (value instanceof Uint8Array) bytes = Buffer.from(value);
  else {
    const n = BigInt(value);
    if (n < 0n) throw new DerError('negative integers are not written');
    const hex = n.toString(16);
    bytes = Buffer.from(hex.length % 2 ? `0${hex}` : hex, 'hex');
  }
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0) start++;
  bytes = bytes.subarray(start);
  if (bytes.length === 0) bytes = Buffer.from([0]);
  if (bytes[0]! & 0x80) bytes = Buffer.concat([Buffer.from([0]), bytes]);
  return encodeTlv(Tag.INTEGER, bytes);
}

const oidCache = new Map<string, Buffer>();

export function oid(dotted: string): Buffer {
  const cached = oidCache.get(dotted);
  if (cached) return cached;
  if (!/^[0-2](?:\.\d+)+$/.test(dotted)) throw new DerError(`"${dotted}" is not an object identifier`);
  const arcs = dotted.split('.').map((a) => BigInt(a));
  const bytes: number[] = [];
  const push = (arc: bigint): void => {
    const groups = [Number(arc & 0x7fn)];
    for (let rest = arc >> 7n; rest > 0n; rest >>= 7n) groups.unshift(Number(rest & 0x7fn) | 0x80);
    bytes.push(...groups);
  };
  push(arcs[0]! * 40n + arcs[1]!);
  for (const arc of arcs.slice(2)) push(arc);
  const encoded = encodeTlv(Tag.OID, Buffer.from(bytes));
  oidCache.set(dotted, encoded);
  return encoded;
}

export function octetString(bytes: Uint8Array): Buffer {
  return encodeTlv(Tag.OCTET_STRING, bytes);
}

export function bitString(bytes: Uint8Array, unusedBits = 0): Buffer {
  return encodeTlv(Tag.BIT_STRING, Buffer.concat([Buffer.from([unusedBits]), bytes]));
}

export function nullValue(): Buffer {
  return Buffer.from([Tag.NULL, 0]);
}

export function boolean(value: boolean): Buffer {
  return Buffer.from([Tag.BOOLEAN, 1, value ? 0xff : 0]);
}

export function utf8String(text: string): Buffer {
  return encodeTlv(Tag.UTF8_STRING, Buffer.from(text, 'utf8'));
}

export function printableString(text: string): Buffer {
  return encodeTlv(Tag.PRINTABLE_STRING, Buffer.from(text, 'latin1'));
}

export function ia5String(text: string): Buffer {
  return encodeTlv(Tag.IA5_STRING, Buffer.from(text, 'latin1'));
}

/** UTF-16 big-endian, as PKCS#12 friendly names and passwords are written. */
export function bmpBytes(text: string): Buffer {
  return Buffer.from(text, 'utf16le').swap16();
}

export function bmpString(text: string): Buffer {
  return encodeTlv(Tag.BMP_STRING, bmpBytes(text));
}

const two = (n: number): string => (n < 10 ? `0${n}` : `${n}`);

/** RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050; whole seconds, in UTC. */
export function time(date: Date): Buffer {
  const year = date.getUTCFullYear();
  if (Number.isNaN(year) || year < 0 || year > 9999) throw new DerError('time out of range');
  const rest = `${two(date.getUTCMonth() + 1)}${two(date.getUTCDate())}${two(date.getUTCHours())}${two(date.getUTCMinutes())}${two(date.getUTCSeconds())}Z`;
  if (year >= 1950 && year < 2050) return encodeTlv(Tag.UTC_TIME, Buffer.from(`${two(year % 100)}${rest}`, 'latin1'));
  return encodeTlv(Tag.GENERALIZED_TIME, Buffer.from(`${String(year).padStart(4, '0')}${rest}`, 'latin1'));
}

/** `[n] EXPLICIT`: a constructed context tag wrapping a complete encoding. */
export function explicit(n: number, inner: Uint8Array): Buffer {
  return encodeTlv(0xa0 | n, inner);
}

/** `[n] IMPLICIT`: a context tag replacing the tag of `content`'s type. */
export function implicit(n: number, content: Uint8Array, constructed = false): Buffer {
  return encodeTlv((constructed ? 0xa0 : 0x80) | n, content);
}

// ---------------------------------------------------------------------------------------------
// reading

/** One decoded value: its tag byte, its content, and the whole encoding (header included). */
export interface Tlv {
  readonly tag: number;
  readonly content: Buffer;
  readonly bytes: Buffer;
}

/** Where the value at `offset` starts and ends, without building anything: for long lists. */
export interface Header {
  readonly tag: number;
  readonly contentStart: number;
  readonly end: number;
}

export function readHeader(buf: Buffer, offset: number): Header {
  if (offset + 2 > buf.length) throw new DerError('truncated');
  const tag = buf[offset]!;
  if ((tag & 0x1f) === 0x1f) throw new DerError('high tag numbers are not DER this module reads');
  let length = buf[offset + 1]!;
  let header = 2;
  if (length & 0x80) {
    const count = length & 0x7f;
    if (count === 0 || count > 4) throw new DerError('unsupported length');
    if (offset + 2 + count > buf.length) throw new DerError('truncated');
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + buf[offset + 2 + i]!;
    header += count;
  }
  const end = offset + header + length;
  if (end > buf.length) throw new DerError('truncated');
  return { tag, contentStart: offset + header, end };
}

function readAt(buf: Buffer, offset: number): { tlv: Tlv; end: number } {
  const { tag, contentStart, end } = readHeader(buf, offset);
  return { tlv: { tag, content: buf.subarray(contentStart, end), bytes: buf.subarray(offset, end) }, end };
}

/** Decodes exactly one value filling `buf`. */
export function decode(buf: Buffer): Tlv {
  const { tlv, end } = readAt(buf, 0);
  if (end !== buf.length) throw new DerError('trailing data');
  return tlv;
}

/** The values inside a constructed value, in order. */
export function children(node: Tlv): Tlv[] {
  if (!(node.tag & 0x20)) throw new DerError(`tag 0x${node.tag.toString(16)} is not constructed`);
  const out: Tlv[] = [];
  for (let offset = 0; offset < node.content.length; ) {
    const { tlv, end } = readAt(node.content, offset);
    out.push(tlv);
    offset = end;
  }
  return out;
}

export function expectTag(node: Tlv | undefined, tag: number, what: string): Tlv {
  if (!node || node.tag !== tag) throw new DerError(`expected ${what}`);
  return node;
}

export function readOid(node: Tlv | undefined): string {
  const { content } = expectTag(node, Tag.OID, 'an object identifier');
  const arcs: bigint[] = [];
  let value = 0n;
  for (const byte of content) {
    value = (value << 7n) | BigInt(byte & 0x7f);
    if (!(byte & 0x80)) {
      if (arcs.length === 0) {
        const first = value < 80n ? value / 40n : 2n;
        arcs.push(first, value - first * 40n);
      } else arcs.push(value);
      value = 0n;
    }
  }
  if (content.length === 0 || content[content.length - 1]! & 0x80) throw new DerError('bad object identifier');
  return arcs.join('.');
}

/** The unsigned big-endian bytes of an INTEGER, without the sign-padding zero byte. */
export function readUnsigned(node: Tlv | undefined): Buffer {
  const { content } = expectTag(node, Tag.INTEGER, 'an integer');
  if (content.length === 0) throw new DerError('empty integer');
  let start = 0;
  while (start < content.length - 1 && content[start] === 0) start++;
  return content.subarray(start);
}

export function readBigInt(node: Tlv | undefined): bigint {
  const bytes = readUnsigned(node);
  return BigInt(`0x${bytes.toString('hex') || '0'}`);
}

/** The bytes of a BIT STRING that has no unused bits (keys, signatures). */
export function readBitStringBytes(node: Tlv | undefined): Buffer {
  const { content } = expectTag(node, Tag.BIT_STRING, 'a bit string');
  if (content.length === 0) throw new DerError('empty bit string');
  return content.subarray(1);
}

/** Any of the string types a directory name may use, as a JavaScript string. */
export function readString(node: Tlv): string {
  const { tag, content } = node;
  switch (tag) {
    case Tag.UTF8_STRING:
      return content.toString('utf8');
    case Tag.PRINTABLE_STRING:
    case Tag.IA5_STRING:
    case Tag.NUMERIC_STRING:
    case Tag.VISIBLE_STRING:
    case Tag.T61_STRING:
      return content.toString('latin1');
    case Tag.BMP_STRING:
      return Buffer.from(content).swap16().toString('utf16le');
    case Tag.UNIVERSAL_STRING: {
      let s = '';
      for (let i = 0; i + 3 < content.length; i += 4) s += String.fromCodePoint(content.readUInt32BE(i));
      return s;
    }
    default:
      throw new DerError(`tag 0x${tag.toString(16)} is not a string`);
  }
}

const timePattern = /^(\d{2}|\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(?:\.(\d+))?Z$/;

export function readTime(node: Tlv | undefined): Date {
  if (!node || (node.tag !== Tag.UTC_TIME && node.tag !== Tag.GENERALIZED_TIME)) throw new DerError('expected a time');
  const m = timePattern.exec(node.content.toString('latin1'));
  const utc = node.tag === Tag.UTC_TIME;
  if (!m || m[1]!.length !== (utc ? 2 : 4)) throw new DerError('bad time');
  let year = Number(m[1]);
  if (utc) year += year < 50 ? 2000 : 1900;
  const ms = m[7] ? Math.floor(Number(`0.${m[7]}`) * 1000) : 0;
  return new Date(Date.UTC(year, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]), ms));
}
