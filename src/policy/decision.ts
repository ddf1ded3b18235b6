/**
 * Decisions are pure: facts in, a decision with its reason out. All I/O happens before (gathering facts)
 * or after (rendering the answer and the log line).
 */
import type { ErrorCode } from '../core/index.ts';
import type { CompiledRoute } from './compiled-policy.ts';

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

/** A route as configured (the shape of `routes[]` in the file). `evaluate` compiles it on first use, without role grants. */
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

/** The signed-in user, as the session says. */
export interface UserFacts {
  /** compared case-insensitively */
  readonly email: string;
  /** IdP groups */
  readonly groups: readonly string[];
  /** the roles the user holds: `CompiledPolicy.rolesFor(email, groups, rolesFromStore)` */
  readonly roles: readonly string[];
  readonly disabled?: boolean;
}

/** What is known about the user a client certificate was issued to (`CertificateFacts.user`). */
export interface CertificateUserFacts {
  /** `CompiledPolicy.rolesFor(certificate.user, [], rolesFromStore)` */
  readonly roles: readonly string[];
  readonly disabled?: boolean;
}

/**
 * Everything a decision needs. Every optional fact fails closed when left out: no user is "not signed in",
 * no admins is "nobody is a root admin", a route given as configuration has no role grants.
 */
export interface Facts {
  /** the route's compiled rules (`CompiledPolicy.route(name)`), or its configuration (allow lists only) */
  readonly route: CompiledRoute | RouteRules;
  /** compared upper-case */
  readonly method: string;
  /** the NORMALISED path (no query): `evaluate` does not normalise; the proxy does, once, and forwards the same path */
  readonly path: string;
  readonly certificate: CertificateFacts;
  /** whether sign-in is configured at all */
  readonly loginAvailable: boolean;
  /** the signed-in user; undefined = not signed in */
  readonly user?: UserFacts;
  /** root administrators (lower-case emails) */
  readonly admins?: ReadonlySet<string>;
  /** roles and status of `certificate.user`, for `auth: certificate` routes */
  readonly certificateUser?: CertificateUserFacts;
}

export interface Allow {
  readonly allow: true;
  readonly rule: string;
}

export interface Deny {
  readonly allow: false;
  readonly code: ErrorCode;
  readonly reason: string;
}

export type Decision = Allow | Deny;

/** One rule `explain` looked at, in order, and whether it matched (for auth checks: whether it passed). */
export interface Consideration {
  readonly rule: string;
  readonly matched: boolean;
}

export interface Explanation {
  readonly decision: Decision;
  readonly considered: readonly Consideration[];
}
