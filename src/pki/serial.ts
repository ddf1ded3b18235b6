import { randomBytes } from 'node:crypto';
import { GatehouseError } from '../core/index.ts';

/**
 * Certificate serial numbers, in one canonical form everywhere in Gatehouse:
 * upper-case hex, two digits per byte, no leading zero bytes, no separators; zero is `00`.
 * It is exactly what `openssl x509 -serial`, `openssl crl -text` and Node's
 * `PeerCertificate.serialNumber` / `X509Certificate.serialNumber` print,
 * so comparing against any of them needs no conversion.
 */

const canonicalPattern = /^(?:[0-9A-F]{2})+$/;

/** Accepts any spelling: `0x` prefix, colons or spaces between bytes, either case, leading zeros. */
export function normaliseSerial(input: string): string {
  const serial = toCanonical(input);
  if (serial === null) {
    throw new GatehouseError('ERR_USAGE', `${JSON.stringify(input)} is not a serial number (expected hex, e.g. 4F:1A:... or 4f1a...)`);
  }
  return serial;
}

/**
 * Node's `peer.serialNumber` is already canonical for every well-formed certificate,
 * so this is one regular-expression test on the hot path; anything else is normalised.
 */
export function canonicalSerialFromNode(serialNumber: string): string {
  if (canonicalPattern.test(serialNumber) && !serialNumber.startsWith('00')) return serialNumber;
  const serial = toCanonical(serialNumber);
  if (serial === null) throw new GatehouseError('ERR_CERT_INVALID', 'the peer certificate has no readable serial number');
  return serial;
}

function toCanonical(input: string): string | null {
  if (typeof input !== 'string') return null;
  let hex = input.trim().replace(/^0x/i, '').replace(/[\s:]/g, '');
  if (hex === '' || !/^[0-9a-fA-F]+$/.test(hex)) return null;
  hex = hex.replace(/^0+/, '').toUpperCase();
  if (hex === '') return '00';
  return hex.length % 2 ? `0${hex}` : hex;
}

/** The canonical form of an INTEGER's content bytes from `start` to `end` (sign padding skipped). */
export function serialFromBytes(bytes: Buffer, start = 0, end = bytes.length): string {
  while (start < end - 1 && bytes[start] === 0) start++;
  return start < end ? bytes.toString('hex', start, end).toUpperCase() : '00';
}

/** The unsigned bytes of a canonical serial, for `der.integer`. */
export function serialToBytes(serial: string): Buffer {
  return Buffer.from(normaliseSerial(serial), 'hex');
}

/**
 * A fresh random serial: 16 bytes with the top bits fixed at `01`, so every serial is positive,
 * exactly 32 hex digits and needs no sign padding; 126 bits are random.
 */
export function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x3f) | 0x40;
  return bytes.toString('hex').toUpperCase();
}
