import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import { GatehouseError } from '../core/index.ts';
import * as der from './der.ts';
import { Oid } from './oid.ts';

/** X.509 v3 extensions (RFC 5280 4.2), each returned as a complete `Extension` encoding. */

export function encodeExtension(oid: string, critical: boolean, value: Buffer): Buffer {
  return critical
    ? der.sequence(der.oid(oid), der.boolean(true), der.octetString(value))
    : der.sequence(der.oid(oid), der.octetString(value));
}

export function basicConstraints(ca: boolean, pathLength?: number): Buffer {
  const parts: Buffer[] = [];
  if (ca) parts.push(der.boolean(true));
  if (ca && pathLength !== undefined) parts.push(der.integer(pathLength));
  return encodeExtension(Oid.basicConstraints, true, der.sequence(...parts));
}

const keyUsageBits = {
  digitalSignature: 0,
  nonRepudiation: 1,
  keyEncipherment: 2,
  dataEncipherment: 3,
  keyAgreement: 4,
  keyCertSign: 5,
  cRLSign: 6,
} as const;
export type KeyUsage = keyof typeof keyUsageBits;

/** A named-bit BIT STRING: as few bytes as the highest set bit needs, unused bits counted. */
export function keyUsage(usages: readonly KeyUsage[]): Buffer {
  const bits = usages.map((u) => keyUsageBits[u]);
  const highest = Math.max(...bits);
  const bytes = Buffer.alloc((highest >> 3) + 1);
  for (const bit of bits) bytes[bit >> 3]! |= 0x80 >> (bit & 7);
  return encodeExtension(Oid.keyUsage, true, der.bitString(bytes, 7 - (highest & 7)));
}

export function extendedKeyUsage(oids: readonly string[]): Buffer {
  return encodeExtension(Oid.extKeyUsage, false, der.sequence(...oids.map((o) => der.oid(o))));
}

/** RFC 5280 4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits. */
export function keyIdentifier(spki: Buffer): Buffer {
  const [, bits] = der.children(der.decode(spki));
  return createHash('sha1').update(der.readBitStringBytes(bits)).digest();
}

export function subjectKeyIdentifier(keyId: Buffer): Buffer {
  return encodeExtension(Oid.subjectKeyIdentifier, false, der.octetString(keyId));
}

export function authorityKeyIdentifier(keyId: Buffer): Buffer {
  return encodeExtension(Oid.authorityKeyIdentifier, false, der.sequence(der.implicit(0, keyId)));
}

export function crlNumber(n: bigint): Buffer {
  return encodeExtension(Oid.crlNumber, false, der.integer(n));
}

export interface AltNames {
  readonly dns?: readonly string[];
  readonly ip?: readonly string[];
  readonly email?: readonly string[];
}

/** The SAN extension, or null when there are no names. Checks each name and says which is wrong. */
export function subjectAltName(names: AltNames): Buffer | null {
  const general: Buffer[] = [];
  for (const email of names.email ?? []) {
    if (typeof email !== 'string' || !/^[\x21-\x7e]+@[\x21-\x7e]+$/.test(email)) {
      throw new GatehouseError('ERR_USAGE', `"${String(email)}" is not an ASCII e-mail address`);
    }
    general.push(der.implicit(1, Buffer.from(email, 'latin1')));
  }
  for (const dns of names.dns ?? []) general.push(der.implicit(2, Buffer.from(checkDnsName(dns), 'latin1')));
  for (const ip of names.ip ?? []) general.push(der.implicit(7, parseIpAddress(ip)));
  if (general.length === 0) return null;
  return encodeExtension(Oid.subjectAltName, false, der.sequence(...general));
}

const label = '[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?';
const dnsPattern = new RegExp(`^(?:\\*\\.)?${label}(?:\\.${label})*$`);

/** A host name, optionally with a whole-label wildcard on the left (`*.localhost`). ASCII only (use punycode). */
function checkDnsName(name: string): string {
  if (typeof name !== 'string' || name.length > 253 || !dnsPattern.test(name)) {
    throw new GatehouseError('ERR_USAGE', `"${String(name)}" is not a DNS name (use e.g. app.example.com or *.example.com)`);
  }
  return name;
}

export function parseIpAddress(text: string): Buffer {
  const version = typeof text === 'string' && !text.includes('%') ? isIP(text) : 0;
  if (version === 4) return Buffer.from(text.split('.').map(Number));
  if (version === 6) {
    // An embedded IPv4 tail (::ffff:192.0.2.1) becomes two hex groups, then both halves around :: are read.
    const hex = text.replace(/(\d+)\.(\d+)\.(\d+)\.(\d+)$/, (_m, a: string, b: string, c: string, d: string) =>
      `${((Number(a) << 8) | Number(b)).toString(16)}:${((Number(c) << 8) | Number(d)).toString(16)}`,
    );
    const groupsOf = (s: string | undefined): number[] => (s ? s.split(':').map((g) => parseInt(g, 16)) : []);
    const halves = hex.split('::');
    const front = groupsOf(halves[0]);
    const back = groupsOf(halves[1]);
    const gap = halves.length > 1 ? 8 - front.length - back.length : 0;
    const out = Buffer.alloc(16);
    [...front, ...new Array<number>(gap).fill(0), ...back].forEach((g, i) => out.writeUInt16BE(g, i * 2));
    return out;
  }
  throw new GatehouseError('ERR_USAGE', `"${String(text)}" is not an IP address`);
}
