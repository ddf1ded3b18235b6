export {
  ClientCertificates,
  subjectFields,
  nameKey,
  formatDn,
  dnFields,
  type RevocationSource,
  type InternalTrust,
  type ClientCertificateOptions,
} from './client-certificate.ts';
export { RevocationLists, splitPemCertificates } from './revocation-lists.ts';
export { Keyring } from './keyring.ts';
export { OidcClient, type OidcSettings, type SignedIn } from './oidc.ts';
export {
  SessionBook,
  SESSION_COOKIE,
  readCookie,
  stripOwnCookies,
  sha256,
  randomSecret,
  type Session,
  type SessionValue,
  type Token,
  type TokenValue,
  type LoginAttempt,
  type SessionOptions,
} from './sessions.ts';
export { AssertionSigner, ecJwkThumbprint, signingKeyId, signingKeyKind, type AssertionInput, type AssertionSignerOptions, type Jwks, type PublicSigningJwk } from './assertion-signer.ts';
