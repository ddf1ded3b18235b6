import { GatehouseError } from '../core/index.ts';
import * as der from './der.ts';
import { Oid } from './oid.ts';

/** The attributes Gatehouse names by their short name; any other attribute is keyed by its dotted OID. */
export type SubjectAttribute = 'C' | 'ST' | 'L' | 'O' | 'OU' | 'CN' | 'emailAddress';

/** A subject to write: short names (or dotted OIDs), each with one value or several. */
export type SubjectInput = { readonly [K in SubjectAttribute]?: string | readonly string[] } & {
  readonly [oid: string]: string | readonly string[] | undefined;
};

/**
 * A subject as read from a certificate or from Node's peer certificate: attribute → values,
 * in certificate order. Objects have no prototype, so `subject.constructor` is `undefined`.
 */
export type Subject = Record<string, string[]>;

/** A prototype-less record (a literal `__proto__: null` is quicker to build than `Object.create(null)`). */
function emptySubject(): Subject {
  return { __proto__: null } as unknown as Subject;
}

const attributeOids: Record<SubjectAttribute, string> = {
  C: Oid.countryName,
  ST: Oid.stateOrProvinceName,
  L: Oid.localityName,
  O: Oid.organizationName,
  OU: Oid.organizationalUnitName,
  CN: Oid.commonName,
  emailAddress: Oid.emailAddress,
};
/** The order attributes are written in, most general first (as `openssl req` does). */
const writeOrder = Object.keys(attributeOids) as SubjectAttribute[];
const shortNames = new Map<string, string>(Object.entries(attributeOids).map(([name, oid]) => [oid, name]));
const dottedOid = /^[0-2](?:\.(?:0|[1-9]\d*))+$/;

const spellings: Record<string, SubjectAttribute> = {
  commonname: 'CN',
  organization: 'O',
  organizationname: 'O',
  organisation: 'O',
  organizationalunit: 'OU',
  organizationalunitname: 'OU',
  country: 'C',
  countryname: 'C',
  state: 'ST',
  stateorprovincename: 'ST',
  locality: 'L',
  localityname: 'L',
  email: 'emailAddress',
  e: 'emailAddress',
  mail: 'emailAddress',
};

function hintFor(key: string): string {
  const lower = key.toLowerCase();
  const known = writeOrder.find((name) => name.toLowerCase() === lower) ?? spellings[lower];
  return known ? ` (did you mean ${known}?)` : ` (use ${writeOrder.join(', ')} or a dotted OID)`;
}

function valuesOf(value: string | readonly string[] | undefined, where: string): readonly string[] {
  const list = typeof value === 'string' ? [value] : (value ?? []);
  if (!Array.isArray(list)) throw new GatehouseError('ERR_USAGE', `${where} must be a string or an array of strings`);
  for (const v of list) {
    if (typeof v !== 'string' || v === '' || v.includes('\0')) {
      throw new GatehouseError('ERR_USAGE', `${where} values must be non-empty strings`);
    }
  }
  return list;
}

function attributeValue(name: string, value: string, where: string): Buffer {
  if (name === 'C') {
    if (!/^[A-Za-z]{2}$/.test(value)) throw new GatehouseError('ERR_USAGE', `${where} must be a two-letter country code`);
    return der.printableString(value);
  }
  if (name === 'emailAddress') {
    if (!/^[\x21-\x7e]+@[\x21-\x7e]+$/.test(value)) throw new GatehouseError('ERR_USAGE', `${where} "${value}" is not an ASCII e-mail address`);
    return der.ia5String(value);
  }
  return der.utf8String(value);
}

/**
 * Encodes a Name: known attributes first in the order C, ST, L, O, OU, CN, emailAddress,
 * then dotted-OID attributes in the order given; each value its own RDN. Strings are written
 * as `openssl req` writes them: C PrintableString, emailAddress IA5String, the rest UTF8String.
 */
export function encodeName(subject: SubjectInput, what = 'subject'): Buffer {
  if (subject === null || typeof subject !== 'object') throw new GatehouseError('ERR_USAGE', `${what} must be an object`);
  for (const key of Object.keys(subject)) {
    if (!Object.hasOwn(attributeOids, key) && !dottedOid.test(key)) {
      throw new GatehouseError('ERR_USAGE', `${what}.${key} is not a subject attribute${hintFor(key)}`);
    }
  }
  const keys = [...writeOrder.filter((k) => Object.hasOwn(subject, k)), ...Object.keys(subject).filter((k) => dottedOid.test(k))];
  const rdns: Buffer[] = [];
  for (const key of keys) {
    const oid = attributeOids[key as SubjectAttribute] ?? key;
    const name = shortNames.get(oid) ?? key;
    for (const value of valuesOf(subject[key], `${what}.${key}`)) {
      rdns.push(der.setOf(der.sequence(der.oid(oid), attributeValue(name, value, `${what}.${key}`))));
    }
  }
  if (rdns.length === 0) throw new GatehouseError('ERR_USAGE', `${what} needs at least one attribute (e.g. CN)`);
  return der.sequence(...rdns);
}

/** A decoded Name: the attribute map and its RFC 4514 string (most specific RDN first). */
export interface DecodedName {
  readonly subject: Subject;
  readonly dn: string;
}

export function decodeName(node: der.Tlv): DecodedName {
  const subject = emptySubject();
  const rdnStrings: string[] = [];
  for (const rdn of der.children(der.expectTag(node, der.Tag.SEQUENCE, 'a name'))) {
    const parts: string[] = [];
    for (const atv of der.children(der.expectTag(rdn, der.Tag.SET, 'a relative distinguished name'))) {
      const [type, value] = der.children(der.expectTag(atv, der.Tag.SEQUENCE, 'an attribute'));
      const oid = der.readOid(type);
      if (!value) throw new der.DerError('attribute without a value');
      const key = shortNames.get(oid) ?? oid;
      let text: string;
      let dnValue: string;
      try {
        text = der.readString(value);
        dnValue = escapeDnValue(text);
      } catch {
        text = `#${value.bytes.toString('hex')}`; // RFC 4514 2.4: a value of another type, as hex DER
        dnValue = text;
      }
      (subject[key] ??= []).push(text);
      parts.push(`${key}=${dnValue}`);
    }
    rdnStrings.push(parts.join('+'));
  }
  return { subject, dn: rdnStrings.reverse().join(',') };
}

/** RFC 4514 2.4 escaping; control characters as `\XX`, other characters (UTF-8 included) as they are. */
export function escapeDnValue(value: string): string {
  let out = '';
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    const code = c.charCodeAt(0);
    const edge = (i === 0 && (c === ' ' || c === '#')) || (i === value.length - 1 && c === ' ');
    if (edge || '\\"+,;<>'.includes(c)) out += `\\${c}`;
    else if (code < 0x20 || code === 0x7f) out += `\\${code.toString(16).padStart(2, '0').toUpperCase()}`;
    else out += c;
  }
  return out;
}

/**
 * OpenSSL's short names for attributes outside Gatehouse's seven, which Node's peer certificate
 * uses as keys; translated to dotted OIDs so both sides produce the same `Subject`.
 * A name OpenSSL knows but this table does not stays as Node spells it.
 */
const nodeNames = new Map<string, string>([
  ['SN', '2.5.4.4'],
  ['serialNumber', '2.5.4.5'],
  ['street', '2.5.4.9'],
  ['title', '2.5.4.12'],
  ['description', '2.5.4.13'],
  ['businessCategory', '2.5.4.15'],
  ['postalCode', '2.5.4.17'],
  ['name', '2.5.4.41'],
  ['GN', '2.5.4.42'],
  ['initials', '2.5.4.43'],
  ['generationQualifier', '2.5.4.44'],
  ['x500UniqueIdentifier', '2.5.4.45'],
  ['dnQualifier', '2.5.4.46'],
  ['pseudonym', '2.5.4.65'],
  ['role', '2.5.4.72'],
  ['organizationIdentifier', '2.5.4.97'],
  ['UID', '0.9.2342.19200300.100.1.1'],
  ['DC', '0.9.2342.19200300.100.1.25'],
  ['unstructuredName', '1.2.840.113549.1.9.2'],
  ['jurisdictionL', '1.3.6.1.4.1.311.60.2.1.1'],
  ['jurisdictionST', '1.3.6.1.4.1.311.60.2.1.2'],
  ['jurisdictionC', '1.3.6.1.4.1.311.60.2.1.3'],
]);

/** The part of Node's `tls.PeerCertificate` this module reads (an empty `{}` when there is no certificate). */
export interface NodePeerSubject {
  readonly subject?: object | null;
}

/**
 * Maps the subject of `socket.getPeerCertificate()` (values a string, or an array when an
 * attribute repeats) to the `Subject` that `parseCertificate` gives for the same certificate.
 * On the hot path: one pass over the keys, no parsing. No certificate gives an empty subject.
 */
export function subjectFromNodePeer(cert: NodePeerSubject): Subject {
  const out = emptySubject();
  const subject = cert?.subject as Record<string, unknown> | null | undefined;
  if (!subject) return out;
  for (const key of Object.keys(subject)) {
    // Node gives each attribute once: a string, or an array when it repeats.
    const value = subject[key];
    const name = nodeNames.get(key) ?? key;
    if (typeof value === 'string') out[name] = [value];
    else if (Array.isArray(value)) out[name] = value.filter((v): v is string => typeof v === 'string');
  }
  return out;
}
