import { encodeName, type SubjectInput } from './distinguished-name.ts';
import { keyIdentifier } from './extension.ts';
import { exportPrivateKeyPem, generatePrivateKey, publicKeyInfo, signerFor, type KeyAlgorithm } from './key.ts';
import { checkOptions } from './options.ts';
import { encodePem } from './pem.ts';
import { checkPathLength, profileExtensions } from './profile.ts';
import { randomSerial } from './serial.ts';
import { resolveValidity, type ValidityOptions } from './validity.ts';
import { buildCertificate } from './x509.ts';

export interface CreateCaOptions extends ValidityOptions {
  readonly subject: SubjectInput;
  /** Default 3650 days. */
  readonly validityDays?: number;
  /** basicConstraints pathLenConstraint: how many intermediate CAs may follow; unlimited when absent. */
  readonly pathLength?: number;
  /** Default `ec-p256`. */
  readonly keyAlgorithm?: KeyAlgorithm;
}

export interface CreatedCa {
  readonly certPem: string;
  readonly keyPem: string;
  /** Canonical serial (see `normaliseSerial`). */
  readonly serial: string;
}

const createCaOptions = ['subject', 'validityDays', 'pathLength', 'keyAlgorithm', 'notBefore', 'notAfter'];

/** A new self-signed root CA with a fresh key. */
export async function createCa(options: CreateCaOptions): Promise<CreatedCa> {
  checkOptions(options, 'createCa', createCaOptions);
  const name = encodeName(options.subject);
  const validity = resolveValidity(options, 3650);
  const pathLength = checkPathLength(options.pathLength);
  const key = await generatePrivateKey(options.keyAlgorithm);
  const spki = publicKeyInfo(key);
  const serial = randomSerial();
  const extensions = profileExtensions({ kind: 'ca', spki, authorityKeyId: keyIdentifier(spki), pathLength });
  const cert = buildCertificate({ serial, issuerName: name, subjectName: name, spki, extensions, ...validity }, signerFor(key));
  return { certPem: encodePem(cert, 'CERTIFICATE'), keyPem: exportPrivateKeyPem(key), serial };
}
