/**
 * Gatehouse's certificate toolkit: data in, data out (PEM strings, DER buffers), no files, no store.
 * Keys are ECDSA P-256 unless `keyAlgorithm: 'rsa-2048'`; keys are written as PKCS#8 PEM.
 * Serials are canonical everywhere: upper-case hex, two digits per byte, no leading zero byte,
 * no colons (what OpenSSL and Node print); `normaliseSerial` converts any other spelling.
 */
export { createCa, type CreateCaOptions, type CreatedCa } from './certificate-authority.ts';
export {
  issueCertificate,
  parseCertificate,
  type CertificateInfo,
  type IssueCertificateOptions,
  type IssuedCertificate,
} from './certificate.ts';
export { createCsr, signCsr, type CreateCsrOptions, type CreatedCsr, type SignCsrOptions, type SignedCsr } from './certificate-request.ts';
export { createCrl, parseCrl, type CreateCrlOptions, type CrlInfo, type RevokedCertificate } from './crl.ts';
export { encodePkcs12, type EncodePkcs12Options } from './pkcs12.ts';
export {
  subjectFromNodePeer,
  type NodePeerSubject,
  type Subject,
  type SubjectAttribute,
  type SubjectInput,
} from './distinguished-name.ts';
export { canonicalSerialFromNode, normaliseSerial } from './serial.ts';
export type { CertificateAuthority } from './issuer.ts';
export type { KeyAlgorithm } from './key.ts';
export type { CertificateKind } from './profile.ts';
