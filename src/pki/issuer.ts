import { createPublicKey } from 'node:crypto';
import { GatehouseError } from '../core/index.ts';
import * as der from './der.ts';
import { keyIdentifier } from './extension.ts';
import { loadPrivateKey, signerFor, type Signer } from './key.ts';
import { Oid } from './oid.ts';
import { certificateDer, isCaCertificate, readCertificate, type CertificateFields } from './x509.ts';

/** A CA as Gatehouse holds it: its certificate and its private key, both PEM. */
export interface CertificateAuthority {
  readonly certPem: string;
  readonly keyPem: string;
}

/** A CA ready to sign: what issued certificates and CRLs copy from it, and its signer. */
export interface Issuer {
  readonly certificate: CertificateFields;
  /** The CA's subject Name, byte for byte: issued certificates and CRLs name their issuer with it. */
  readonly name: Buffer;
  /** The CA's key identifier, for authorityKeyIdentifier. */
  readonly keyId: Buffer;
  readonly signer: Signer;
}

/** Checks that `ca` is a CA certificate with the private key that belongs to it. */
export function loadIssuer(ca: CertificateAuthority, what = 'ca'): Issuer {
  if (!ca || typeof ca !== 'object') throw new GatehouseError('ERR_USAGE', `${what} must be { certPem, keyPem }`);
  let certificate: CertificateFields;
  try {
    certificate = readCertificate(certificateDer(ca.certPem, `${what}.certPem`));
  } catch (err) {
    if (err instanceof GatehouseError && err.code === 'ERR_USAGE') throw err;
    throw new GatehouseError('ERR_USAGE', `${what}.certPem is not a readable certificate`, { cause: err });
  }
  if (!isCaCertificate(certificate)) {
    throw new GatehouseError('ERR_USAGE', `${what}.certPem is not a CA certificate (basicConstraints cA is not set)`);
  }
  const key = loadPrivateKey(ca.keyPem, `${what}.keyPem`);
  let matches: boolean;
  try {
    matches = createPublicKey({ key: certificate.spki, format: 'der', type: 'spki' }).equals(createPublicKey(key));
  } catch {
    matches = false;
  }
  if (!matches) throw new GatehouseError('ERR_USAGE', `${what}.keyPem is not the private key of ${what}.certPem`);
  const ski = certificate.extensions.get(Oid.subjectKeyIdentifier);
  const keyId = ski ? der.expectTag(der.decode(ski.value), der.Tag.OCTET_STRING, 'a key identifier').content : keyIdentifier(certificate.spki);
  return { certificate, name: certificate.subjectName.bytes, keyId, signer: signerFor(key) };
}
