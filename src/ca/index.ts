/**
 * The internal certificate authority over the store: the CA itself (root, intermediate or imported, its key sealed
 * with the keyring), device, connector and server certificates, revocation and the CRL.
 */
export {
  InternalCa,
  renewalTime,
  serverCertificateId,
  type CaInfo,
  type ImportCaOptions,
  type InstanceCertificate,
  type InitOptions,
  type InitResult,
  type InternalCaOptions,
  type IssueRequest,
  type IssuedCertificate,
  type ListFilter,
  type ServerCertificate,
} from './internal-ca.ts';
export { CA_COMMON_NAME, DEFAULT_ORGANISATION } from './ca-material.ts';
export {
  CA_ID,
  CA_KIND,
  CA_MIRROR_KINDS,
  CERTIFICATE_KIND,
  DEFAULT_DAYS,
  MAX_DAYS,
  SERVER_CERTIFICATE_KIND,
  instanceHost,
  keyProtectionFor,
  type ActiveCaRecord,
  type CaMode,
  type CaRecord,
  type CertificateRecord,
  type IssuedKind,
  type KeyProtection,
  type PendingCaRecord,
  type Revocation,
  type ServerCertificateRecord,
} from './records.ts';
