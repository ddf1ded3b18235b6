import { GatehouseError } from '../core/index.ts';
import * as der from './der.ts';
import { encodeName, type SubjectInput } from './distinguished-name.ts';
import { signCertificate } from './certificate.ts';
import { loadIssuer, type CertificateAuthority } from './issuer.ts';
import {
  exportPrivateKeyPem,
  generatePrivateKey,
  loadPrivateKey,
  publicKeyFromInfo,
  publicKeyInfo,
  signerFor,
  signWith,
  verifyWith,
  type KeyAlgorithm,
} from './key.ts';
import { checkOptions } from './options.ts';
import { decodePem, encodePem, looksLikePem } from './pem.ts';
import { checkKind, checkPathLength, type CertificateKind } from './profile.ts';
import { resolveValidity, type ValidityOptions } from './validity.ts';

export interface CreateCsrOptions {
  readonly subject: SubjectInput;
  /** Sign with this key instead of generating one. */
  readonly keyPem?: string;
  /** For a generated key; default `ec-p256`. */
  readonly keyAlgorithm?: KeyAlgorithm;
}

export interface CreatedCsr {
  /** PEM, label `CERTIFICATE REQUEST`. */
  readonly csrPem: string;
  /** PKCS#8 PEM: the key given, re-exported, or the one generated. */
  readonly keyPem: string;
}

/** A PKCS#10 certificate signing request (no attributes; the CA decides every extension). */
export async function createCsr(options: CreateCsrOptions): Promise<CreatedCsr> {
  checkOptions(options, 'createCsr', ['subject', 'keyPem', 'keyAlgorithm']);
  const name = encodeName(options.subject);
  if (options.keyPem !== undefined && options.keyAlgorithm !== undefined) {
    throw new GatehouseError('ERR_USAGE', 'createCsr takes keyPem or keyAlgorithm, not both');
  }
  const key = options.keyPem !== undefined ? loadPrivateKey(options.keyPem, 'keyPem') : await generatePrivateKey(options.keyAlgorithm);
  const signer = signerFor(key);
  const info = der.sequence(der.integer(0), name, publicKeyInfo(key), der.implicit(0, Buffer.alloc(0), true));
  const csr = der.sequence(info, signer.algorithmIdentifier, der.bitString(signWith(signer, info)));
  return { csrPem: encodePem(csr, 'CERTIFICATE REQUEST'), keyPem: exportPrivateKeyPem(key) };
}

export interface SignCsrOptions extends ValidityOptions {
  readonly ca: CertificateAuthority;
  readonly csrPem: string | Buffer;
  readonly kind: CertificateKind;
  /** Replaces the subject the request asks for. */
  readonly subjectOverride?: SubjectInput;
  readonly dnsNames?: readonly string[];
  readonly ipAddresses?: readonly string[];
  /** Default 365 days (3650 for kind `ca`). */
  readonly validityDays?: number;
  /** Only for kind `ca`: basicConstraints pathLenConstraint of the intermediate. */
  readonly pathLength?: number;
}

export interface SignedCsr {
  readonly certPem: string;
  /** Canonical serial (see `normaliseSerial`). */
  readonly serial: string;
}

const signCsrOptions = [
  'ca',
  'csrPem',
  'kind',
  'subjectOverride',
  'dnsNames',
  'ipAddresses',
  'validityDays',
  'notBefore',
  'notAfter',
  'pathLength',
];

/**
 * Issues a certificate for the key in a CSR after checking the CSR's signature. Extensions the
 * CSR requests are ignored: the kind decides them, and SANs come from `dnsNames` / `ipAddresses`.
 * Kind `ca` makes an intermediate CA.
 */
export async function signCsr(options: SignCsrOptions): Promise<SignedCsr> {
  checkOptions(options, 'signCsr', signCsrOptions);
  const kind = checkKind(options.kind);
  const pathLength = checkPathLength(options.pathLength);
  if (pathLength !== undefined && kind !== 'ca') throw new GatehouseError('ERR_USAGE', 'pathLength is only for kind "ca"');
  const issuer = loadIssuer(options.ca);
  const request = readCsr(options.csrPem);
  const subjectName = options.subjectOverride !== undefined ? encodeName(options.subjectOverride, 'subjectOverride') : request.subjectName;
  if (der.children(der.decode(subjectName)).length === 0) {
    throw new GatehouseError('ERR_USAGE', 'the CSR has an empty subject; give subjectOverride');
  }
  const { certDer, serial } = signCertificate(issuer, {
    kind,
    subjectName,
    spki: request.spki,
    dnsNames: options.dnsNames,
    ipAddresses: options.ipAddresses,
    pathLength,
    validity: resolveValidity(options, kind === 'ca' ? 3650 : 365),
  });
  return { certPem: encodePem(certDer, 'CERTIFICATE'), serial };
}

interface CsrFacts {
  readonly subjectName: Buffer;
  readonly spki: Buffer;
}

function readCsr(input: string | Buffer): CsrFacts {
  if (typeof input !== 'string' && !Buffer.isBuffer(input)) throw new GatehouseError('ERR_USAGE', 'csrPem must be a PEM string');
  const [bytes] = looksLikePem(input) ? decodePem(input.toString(), ['CERTIFICATE REQUEST', 'NEW CERTIFICATE REQUEST']) : [input as Buffer];
  if (!bytes) throw new GatehouseError('ERR_CERT_INVALID', 'csrPem holds no PEM CERTIFICATE REQUEST block');
  let valid: boolean;
  let facts: CsrFacts;
  try {
    const [info, algorithm, signature] = der.children(der.expectTag(der.decode(bytes), der.Tag.SEQUENCE, 'a CSR'));
    const [version, subject, spki] = der.children(der.expectTag(info, der.Tag.SEQUENCE, 'a CertificationRequestInfo'));
    if (der.readBigInt(version) !== 0n) throw new der.DerError('unknown CSR version');
    facts = {
      subjectName: der.expectTag(subject, der.Tag.SEQUENCE, 'a subject').bytes,
      spki: der.expectTag(spki, der.Tag.SEQUENCE, 'a public key').bytes,
    };
    valid = verifyWith(algorithm!, info!.bytes, der.readBitStringBytes(signature), publicKeyFromInfo(facts.spki));
  } catch (err) {
    if (err instanceof GatehouseError) throw err;
    throw new GatehouseError('ERR_CERT_INVALID', 'csrPem is not a well-formed PKCS#10 request', { cause: err });
  }
  if (!valid) throw new GatehouseError('ERR_CERT_INVALID', 'the CSR signature does not verify (the request was altered or not signed by its key)');
  return facts;
}
