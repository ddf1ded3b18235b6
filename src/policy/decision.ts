/**
 * Decisions are pure: facts in, a decision with its reason out. All I/O happens before (gathering facts)
 * or after (rendering the answer and the log line).
 */
import type { ErrorCode } from '../core/index.ts';

export type AuthMode = 'login' | 'certificate' | 'login+certificate' | 'public';

/** What the TLS layer and the trust settings say about the client certificate. */
export type CertificateStatus = 'missing' | 'valid' | 'untrusted' | 'expired' | 'not-yet-valid' | 'revoked' | 'invalid';

export interface CertificateFacts {
  readonly status: CertificateStatus;
  /** subject fields by short name (CN, OU, O, emailAddress…), each possibly repeated */
  readonly subject?: Readonly<Record<string, readonly string[]>>;
  readonly subjectDn?: string;
  readonly serial?: string;
  /** the user the certificate was issued to, when known */
  readonly user?: string;
  /** why it is not valid (the TLS verification error) */
  readonly detail?: string;
}

export interface RouteRules {
  readonly name: string;
  readonly auth: AuthMode;
  readonly allow?: {
    readonly roles: readonly string[];
    readonly users: readonly string[];
    readonly domains: readonly string[];
    readonly certificateSubject?: Readonly<Record<string, string | readonly string[]>>;
  };
}

export interface Facts {
  readonly route: RouteRules;
  readonly method: string;
  /** normalised path */
  readonly path: string;
  readonly certificate: CertificateFacts;
  /** whether sign-in is configured at all */
  readonly loginAvailable: boolean;
}

export type Decision =
  | { readonly allow: true; readonly rule: string }
  | { readonly allow: false; readonly code: ErrorCode; readonly reason: string };
