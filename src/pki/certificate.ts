import { createHash } from 'node:crypto';
import { GatehouseError } from '../core/index.ts';
import * as der from './der.ts';
import { decodeName, encodeName, type Subject, type SubjectInput } from './distinguished-name.ts';
import { loadIssuer, type CertificateAuthority, type Issuer } from './issuer.ts';
import { exportPrivateKeyPem, generatePrivateKey, publicKeyInfo, type KeyAlgorithm } from './key.ts';
import { checkOptions } from './options.ts';
import { encodePem } from './pem.ts';
import { checkKind, profileExtensions, type CertificateKind } from './profile.ts';
import { randomSerial } from './serial.ts';
import { resolveValidity, type Validity, type ValidityOptions } from './validity.ts';
import { buildCertificate, certificateDer, readCertificate } from './x509.ts';

export interface IssueCertificateOptions extends ValidityOptions {
  readonly ca: CertificateAuthority;
  readonly subject: SubjectInput;
  readonly kind: 'client' | 'server' | 'peer';
  readonly dnsNames?: readonly string[];
  readonly ipAddresses?: readonly string[];
  /** Default 365 days. `notBefore` / `notAfter` may be given instead, in the past too. */
  readonly validityDays?: number;
  /** Default `ec-p256`. */
  readonly keyAlgorithm?: KeyAlgorithm;
}

export interface IssuedCertificate {
  readonly certPem: string;
  readonly keyPem: string;
  /** Canonical serial (see `normaliseSerial`). */
  readonly serial: string;
}

const issueOptions = ['ca', 'subject', 'kind', 'dnsNames', 'ipAddresses', 'validityDays', 'notBefore', 'notAfter', 'keyAlgorithm'];

/** A new key pair and a certificate for it, signed by `ca`. */
export async function issueCertificate(options: IssueCertificateOptions): Promise<IssuedCertificate> {
  checkOptions(options, 'issueCertificate', issueOptions);
  const kind = checkKind(options.kind, ['client', 'server', 'peer']);
  const issuer = loadIssuer(options.ca);
  const subjectName = encodeName(options.subject);
  const validity = resolveValidity(options, 365);
  const key = await generatePrivateKey(options.keyAlgorithm);
  const { certDer, serial } = signCertificate(issuer, {
    kind,
    subjectName,
    spki: publicKeyInfo(key),
    dnsNames: options.dnsNames,
    ipAddresses: options.ipAddresses,
    validity,
  });
  return { certPem: encodePem(certDer, 'CERTIFICATE'), keyPem: exportPrivateKeyPem(key), serial };
}

export interface CertificateRequestFacts {
  readonly kind: CertificateKind;
  readonly subjectName: Buffer;
  readonly spki: Buffer;
  readonly dnsNames?: readonly string[] | undefined;
  readonly ipAddresses?: readonly string[] | undefined;
  readonly pathLength?: number | undefined;
  readonly validity: Validity;
}

/** Signs a certificate for a public key; shared by `issueCertificate` and `signCsr`. */
export function signCertificate(issuer: Issuer, facts: CertificateRequestFacts): { certDer: Buffer; serial: string } {
  const serial = randomSerial();
  const emailAddresses = decodeName(der.decode(facts.subjectName)).subject.emailAddress ?? [];
  const extensions = profileExtensions({
    kind: facts.kind,
    spki: facts.spki,
    authorityKeyId: issuer.keyId,
    emailAddresses,
    dnsNames: facts.dnsNames,
    ipAddresses: facts.ipAddresses,
    pathLength: facts.pathLength,
  });
  const certDer = buildCertificate(
    { serial, issuerName: issuer.name, subjectName: facts.subjectName, spki: facts.spki, extensions, ...facts.validity },
    issuer.signer,
  );
  return { certDer, serial };
}

export interface CertificateInfo {
  /** Canonical serial (see `normaliseSerial`). */
  readonly serial: string;
  /** Attributes by short name (C, ST, L, O, OU, CN, emailAddress) or dotted OID; values in certificate order. */
  readonly subject: Subject;
  /** RFC 4514, most specific first: `CN=alice,OU=eng,O=Acme,C=US`. */
  readonly subjectDn: string;
  readonly issuerDn: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** SHA-256 of the DER, as Node's `fingerprint256` prints it: `AB:CD:…`. */
  readonly fingerprint256: string;
}

/** Reads the first certificate of PEM text (or DER bytes). */
export function parseCertificate(pem: string | Buffer): CertificateInfo {
  const bytes = certificateDer(pem, 'certificate');
  try {
    const fields = readCertificate(bytes);
    const subject = decodeName(fields.subjectName);
    return {
      serial: fields.serial,
      subject: subject.subject,
      subjectDn: subject.dn,
      issuerDn: decodeName(fields.issuerName).dn,
      notBefore: fields.notBefore,
      notAfter: fields.notAfter,
      fingerprint256: fingerprint(bytes),
    };
  } catch (err) {
    throw new GatehouseError('ERR_CERT_INVALID', 'not a well-formed X.509 certificate', { cause: err });
  }
}

function fingerprint(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex').toUpperCase().replace(/(..)(?!$)/g, '$1:');
}
