import { GatehouseError } from '../core/index.ts';
import * as der from './der.ts';
import { signWith, type Signer } from './key.ts';
import { Oid } from './oid.ts';
import { decodePem, looksLikePem } from './pem.ts';
import { serialFromBytes, serialToBytes } from './serial.ts';

/** The X.509 certificate structure (RFC 5280 4.1): reading one, and building and signing one. */

export interface ExtensionValue {
  readonly critical: boolean;
  readonly value: Buffer;
}

export interface CertificateFields {
  readonly der: Buffer;
  readonly tbs: Buffer;
  readonly serial: string;
  readonly issuerName: der.Tlv;
  readonly subjectName: der.Tlv;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly spki: Buffer;
  readonly extensions: ReadonlyMap<string, ExtensionValue>;
  readonly signatureAlgorithm: der.Tlv;
  readonly signature: Buffer;
}

/** Reads the first certificate from PEM text (label `CERTIFICATE`) or DER bytes. */
export function certificateDer(input: string | Buffer, what: string): Buffer {
  if (typeof input !== 'string' && !Buffer.isBuffer(input)) {
    throw new GatehouseError('ERR_USAGE', `${what} must be a PEM string or DER bytes`);
  }
  if (!looksLikePem(input)) return input as Buffer;
  const [first] = decodePem(input.toString(), ['CERTIFICATE']);
  if (!first) throw new GatehouseError('ERR_CERT_INVALID', `${what} holds no PEM CERTIFICATE block`);
  return first;
}

export function readCertificate(bytes: Buffer): CertificateFields {
  const [tbsNode, signatureAlgorithm, signatureValue] = der.children(der.expectTag(der.decode(bytes), der.Tag.SEQUENCE, 'a certificate'));
  const fields = der.children(der.expectTag(tbsNode, der.Tag.SEQUENCE, 'a TBSCertificate'));
  let i = fields[0]?.tag === 0xa0 ? 1 : 0; // [0] EXPLICIT version, absent for v1
  const serial = serialFromBytes(der.readUnsigned(fields[i++]));
  i++; // signature AlgorithmIdentifier, repeated outside
  const issuerName = der.expectTag(fields[i++], der.Tag.SEQUENCE, 'an issuer name');
  const [notBefore, notAfter] = der.children(der.expectTag(fields[i++], der.Tag.SEQUENCE, 'a validity'));
  const subjectName = der.expectTag(fields[i++], der.Tag.SEQUENCE, 'a subject name');
  const spki = der.expectTag(fields[i++], der.Tag.SEQUENCE, 'a public key').bytes;
  const extensions = new Map<string, ExtensionValue>();
  for (const field of fields.slice(i)) {
    if (field.tag !== 0xa3) continue; // issuer/subject unique IDs
    const [list] = der.children(field);
    for (const ext of der.children(der.expectTag(list, der.Tag.SEQUENCE, 'extensions'))) {
      const parts = der.children(ext);
      const critical = parts.length === 3 && parts[1]!.tag === der.Tag.BOOLEAN && parts[1]!.content[0] !== 0;
      const value = der.expectTag(parts[parts.length - 1], der.Tag.OCTET_STRING, 'an extension value').content;
      extensions.set(der.readOid(parts[0]), { critical, value });
    }
  }
  return {
    der: bytes,
    tbs: tbsNode!.bytes,
    serial,
    issuerName,
    subjectName,
    notBefore: der.readTime(notBefore),
    notAfter: der.readTime(notAfter),
    spki,
    extensions,
    signatureAlgorithm: der.expectTag(signatureAlgorithm, der.Tag.SEQUENCE, 'a signature algorithm'),
    signature: der.readBitStringBytes(signatureValue),
  };
}

export interface CertificateTemplate {
  readonly serial: string;
  readonly issuerName: Buffer;
  readonly subjectName: Buffer;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly spki: Buffer;
  readonly extensions: readonly Buffer[];
}

/** A v3 certificate: the TBSCertificate signed by `signer`, as DER. */
export function buildCertificate(t: CertificateTemplate, signer: Signer): Buffer {
  const tbs = der.sequence(
    der.explicit(0, der.integer(2)),
    der.integer(serialToBytes(t.serial)),
    signer.algorithmIdentifier,
    t.issuerName,
    der.sequence(der.time(t.notBefore), der.time(t.notAfter)),
    t.subjectName,
    t.spki,
    der.explicit(3, der.sequence(...t.extensions)),
  );
  return der.sequence(tbs, signer.algorithmIdentifier, der.bitString(signWith(signer, tbs)));
}

/** Reads the basicConstraints cA flag; false when the extension is absent. */
export function isCaCertificate(fields: CertificateFields): boolean {
  const bc = fields.extensions.get(Oid.basicConstraints);
  if (!bc) return false;
  const [first] = der.children(der.decode(bc.value));
  return first?.tag === der.Tag.BOOLEAN && first.content[0] !== 0;
}
