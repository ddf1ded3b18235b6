import { createPublicKey } from 'node:crypto';
import { GatehouseError } from '../core/index.ts';
import * as der from './der.ts';
import { decodeName } from './distinguished-name.ts';
import * as ext from './extension.ts';
import { loadIssuer, type CertificateAuthority } from './issuer.ts';
import { signWith, verifyWith } from './key.ts';
import { Oid } from './oid.ts';
import { checkOptions } from './options.ts';
import { decodePem, encodePem, looksLikePem } from './pem.ts';
import { normaliseSerial, serialFromBytes } from './serial.ts';
import { certificateDer, readCertificate, type CertificateFields } from './x509.ts';

export interface RevokedCertificate {
  /** Any spelling `normaliseSerial` accepts. */
  readonly serial: string;
  readonly revokedAt: Date;
}

export interface CreateCrlOptions {
  readonly ca: CertificateAuthority;
  readonly revoked: readonly RevokedCertificate[];
  /** Default now. */
  readonly thisUpdate?: Date;
  /** Default `thisUpdate` + 7 days. Node and OpenSSL reject a CRL past its nextUpdate. */
  readonly nextUpdate?: Date;
  /**
   * The cRLNumber extension; must grow with each CRL a CA issues. Default: `thisUpdate` in
   * whole seconds since 1970, which grows as long as CRLs are not issued twice in one second.
   */
  readonly crlNumber?: bigint | number;
}

const createCrlOptions = ['ca', 'revoked', 'thisUpdate', 'nextUpdate', 'crlNumber'];
const week = 7 * 86_400_000;

function checkDate(value: unknown, what: string): Date {
  if (!(value instanceof Date) || Number.isNaN(value.getTime())) throw new GatehouseError('ERR_USAGE', `${what} must be a valid Date`);
  return value;
}

/**
 * A v2 CRL signed by `ca`, PEM with label `X509 CRL` (what Node's TLS `crl` option and
 * `openssl crl` read), carrying authorityKeyIdentifier and cRLNumber. A serial listed twice
 * appears once, with its first revocation date.
 */
export async function createCrl(options: CreateCrlOptions): Promise<string> {
  checkOptions(options, 'createCrl', createCrlOptions);
  const issuer = loadIssuer(options.ca);
  const thisUpdate = options.thisUpdate === undefined ? new Date() : checkDate(options.thisUpdate, 'thisUpdate');
  const nextUpdate = options.nextUpdate === undefined ? new Date(thisUpdate.getTime() + week) : checkDate(options.nextUpdate, 'nextUpdate');
  if (nextUpdate <= thisUpdate) throw new GatehouseError('ERR_USAGE', 'nextUpdate must be later than thisUpdate');
  const number = options.crlNumber ?? Math.floor(thisUpdate.getTime() / 1000);
  if ((typeof number !== 'bigint' && !Number.isSafeInteger(number)) || number < 0) {
    throw new GatehouseError('ERR_USAGE', `crlNumber must be a non-negative integer, not ${String(number)}`);
  }
  if (!Array.isArray(options.revoked)) throw new GatehouseError('ERR_USAGE', 'revoked must be an array of { serial, revokedAt }');

  const entries: Buffer[] = [];
  const seen = new Set<string>();
  options.revoked.forEach((entry: RevokedCertificate | undefined, i) => {
    const serial = normaliseSerial(entry?.serial as string);
    const revokedAt = checkDate(entry?.revokedAt, `revoked[${i}].revokedAt`);
    if (seen.has(serial)) return;
    seen.add(serial);
    entries.push(der.sequence(der.integer(Buffer.from(serial, 'hex')), der.time(revokedAt)));
  });

  const tbs = der.sequence(
    der.integer(1), // v2
    issuer.signer.algorithmIdentifier,
    issuer.name,
    der.time(thisUpdate),
    der.time(nextUpdate),
    ...(entries.length > 0 ? [der.sequenceOf(entries)] : []), // an empty list is left out, not written empty
    der.explicit(0, der.sequence(ext.authorityKeyIdentifier(issuer.keyId), ext.crlNumber(BigInt(number)))),
  );
  const crl = der.sequence(tbs, issuer.signer.algorithmIdentifier, der.bitString(signWith(issuer.signer, tbs)));
  return encodePem(crl, 'X509 CRL');
}

export interface CrlInfo {
  /** RFC 4514, like `parseCertificate`'s DNs. */
  readonly issuerDn: string;
  readonly thisUpdate: Date;
  readonly nextUpdate?: Date;
  /** The cRLNumber extension, when present. */
  readonly crlNumber?: bigint;
  /** Canonical serials (see `normaliseSerial`). */
  readonly revoked: ReadonlySet<string>;
  /**
   * True when `caCertPem` issued this CRL: its subject is the CRL's issuer, its key usage (if
   * stated) allows cRLSign, and its key verifies the signature. Expiry is not judged here.
   */
  verify(caCertPem: string | Buffer): Promise<boolean>;
}

/** Reads a CRL: PEM (label `X509 CRL`) or DER, as a string or bytes. */
export function parseCrl(pemOrDer: string | Buffer): CrlInfo {
  if (typeof pemOrDer !== 'string' && !Buffer.isBuffer(pemOrDer)) throw new GatehouseError('ERR_USAGE', 'parseCrl expects PEM text or DER bytes');
  const [bytes] = looksLikePem(pemOrDer) ? decodePem(pemOrDer.toString(), ['X509 CRL']) : [pemOrDer as Buffer];
  if (!bytes) throw new GatehouseError('ERR_CERT_INVALID', 'no PEM X509 CRL block found');
  try {
    return readCrl(bytes);
  } catch (err) {
    if (err instanceof GatehouseError) throw err;
    throw new GatehouseError('ERR_CERT_INVALID', 'not a well-formed X.509 CRL', { cause: err });
  }
}

function readCrl(bytes: Buffer): CrlInfo {
  const [tbsNode, outerAlgorithm, signatureValue] = der.children(der.expectTag(der.decode(bytes), der.Tag.SEQUENCE, 'a CRL'));
  const tbs = der.expectTag(tbsNode, der.Tag.SEQUENCE, 'a TBSCertList');
  const fields = der.children(tbs);
  let i = fields[0]?.tag === der.Tag.INTEGER ? 1 : 0; // version, absent for v1
  const innerAlgorithm = der.expectTag(fields[i++], der.Tag.SEQUENCE, 'a signature algorithm');
  const issuerName = der.expectTag(fields[i++], der.Tag.SEQUENCE, 'an issuer name');
  const thisUpdate = der.readTime(fields[i++]);
  let nextUpdate: Date | undefined;
  if (fields[i]?.tag === der.Tag.UTC_TIME || fields[i]?.tag === der.Tag.GENERALIZED_TIME) nextUpdate = der.readTime(fields[i++]);
  const revoked = new Set<string>();
  if (fields[i]?.tag === der.Tag.SEQUENCE) {
    // CRLs can list many thousands of serials: walk offsets rather than decode each entry.
    const list = fields[i++]!.content;
    for (let offset = 0; offset < list.length; ) {
      const entry = der.readHeader(list, offset);
      const serial = der.readHeader(list, entry.contentStart);
      if (entry.tag !== der.Tag.SEQUENCE || serial.tag !== der.Tag.INTEGER || serial.end > entry.end || serial.end === serial.contentStart) {
        throw new der.DerError('bad revoked certificate entry');
      }
      revoked.add(serialFromBytes(list, serial.contentStart, serial.end));
      offset = entry.end;
    }
  }
  let crlNumber: bigint | undefined;
  if (fields[i]?.tag === 0xa0) {
    const [list] = der.children(fields[i]!);
    for (const extension of der.children(der.expectTag(list, der.Tag.SEQUENCE, 'extensions'))) {
      const parts = der.children(extension);
      if (der.readOid(parts[0]) !== Oid.crlNumber) continue;
      crlNumber = der.readBigInt(der.decode(der.expectTag(parts[parts.length - 1], der.Tag.OCTET_STRING, 'a CRL number').content));
    }
  }
  const algorithm = der.expectTag(outerAlgorithm, der.Tag.SEQUENCE, 'a signature algorithm');
  const signature = der.readBitStringBytes(signatureValue);
  const issuerDn = decodeName(issuerName).dn;

  const verify = async (caCertPem: string | Buffer): Promise<boolean> => {
    let ca: CertificateFields;
    try {
      ca = readCertificate(certificateDer(caCertPem, 'caCertPem'));
    } catch (err) {
      if (err instanceof GatehouseError) throw err;
      throw new GatehouseError('ERR_CERT_INVALID', 'caCertPem is not a well-formed certificate', { cause: err });
    }
    const sameIssuer = ca.subjectName.bytes.equals(issuerName.bytes) || decodeName(ca.subjectName).dn.toLowerCase() === issuerDn.toLowerCase();
    if (!sameIssuer || !innerAlgorithm.bytes.equals(algorithm.bytes) || !allowsCrlSigning(ca)) return false;
    return verifyWith(algorithm, tbs.bytes, signature, createPublicKey({ key: ca.spki, format: 'der', type: 'spki' }));
  };

  return { issuerDn, thisUpdate, ...(nextUpdate && { nextUpdate }), ...(crlNumber !== undefined && { crlNumber }), revoked, verify };
}

/** keyUsage, when present, must include cRLSign (bit 6). */
function allowsCrlSigning(ca: CertificateFields): boolean {
  const usage = ca.extensions.get(Oid.keyUsage);
  if (!usage) return true;
  const bits = der.expectTag(der.decode(usage.value), der.Tag.BIT_STRING, 'key usage').content;
  return ((bits[1] ?? 0) & 0x02) !== 0;
}
