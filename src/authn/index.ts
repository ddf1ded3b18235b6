export {
  ClientCertificates,
  subjectFields,
  nameKey,
  formatDn,
  type RevocationSource,
} from './client-certificate.ts';
export { RevocationLists, dnFields, splitPemCertificates } from './revocation-lists.ts';
