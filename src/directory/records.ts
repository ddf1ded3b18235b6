/**
 * What the directory keeps in the store: one record type per kind, the ids they live under, and the checks
 * on what callers hand in. Emails are always lower-case here.
 */
import { GatehouseError } from '../core/index.ts';

/** The kinds the directory writes. */
export const USER_KIND = 'user';
export const MEMBERSHIP_KIND = 'membership';
export const ROLE_ADMIN_KIND = 'role-admin';
export const ACCESS_REQUEST_KIND = 'access-request';
export const SERVICE_ACCOUNT_KIND = 'service-account';
export const AUDIT_KIND = 'audit';

/** The kinds the hot path reads from memory: a `StoreMirror` handed to the directory must hold all of them. */
export const DIRECTORY_MIRROR_KINDS: readonly string[] = Object.freeze([USER_KIND, MEMBERSHIP_KIND, ROLE_ADMIN_KIND, SERVICE_ACCOUNT_KIND]);

/** The domain of service-account identities: `NAME@service.gatehouse`. No person signs in with it. */
export const SERVICE_DOMAIN = 'service.gatehouse';

/** Who does something, and from where (the client IP, when known). */
export interface Actor {
  readonly email: string;
  readonly from?: string;
}

/** Kind `user`, id = lower-case email. */
export interface UserRecord {
  readonly email: string;
  /** first sign-in (absent for a user disabled before ever signing in) */
  readonly firstSeen?: number;
  /** last sign-in or request, written at most once a minute per process */
  readonly lastSeen?: number;
  readonly disabled: boolean;
  readonly disabledBy?: string;
  readonly disabledAt?: number;
}

/** Kind `membership`, id `ROLE/EMAIL`. A membership with `expires` is stored with that expiry and ends by itself. */
export interface Membership {
  readonly role: string;
  readonly user: string;
  /** ms since the epoch */
  readonly expires?: number;
  readonly addedBy: string;
  readonly added: number;
  /** `config`: seeded from `roles[].members` (changed by editing the configuration, not through the directory) */
  readonly source?: 'config';
  /** the access request this membership was granted through */
  readonly request?: string;
}

/** Kind `role-admin`, id `ROLE/EMAIL`: a role admin added by a root admin (config `roles[].admins` are not stored). */
export interface RoleAdminRecord {
  readonly role: string;
  readonly user: string;
  readonly addedBy: string;
  readonly added: number;
}

/** A role admin from either source. */
export interface RoleAdmin {
  readonly user: string;
  readonly source: 'config' | 'store';
}

export type AccessRequestStatus = 'pending' | 'approved' | 'declined';

/** Kind `access-request`, id `newId()` (time-ordered). */
export interface AccessRequest {
  readonly id: string;
  readonly user: string;
  readonly role: string;
  readonly reason: string;
  /** requested length of access in ms; absent = without end */
  readonly duration?: number;
  readonly status: AccessRequestStatus;
  readonly created: number;
  readonly decidedBy?: string;
  readonly decidedAt?: number;
  /** for an approval: when the granted membership ends (absent = without end) */
  readonly expires?: number;
}

/** Kind `service-account`, id = name. */
export interface ServiceAccount {
  readonly name: string;
  /** `NAME@service.gatehouse`: the identity its tokens carry and its memberships name */
  readonly identity: string;
  readonly description: string;
  readonly createdBy: string;
  readonly created: number;
}

/** Kind `audit`, id `newId()`: one change, who made it, from where, and the record before and after. */
export interface AuditRecord {
  readonly id: string;
  readonly time: number;
  readonly actor: string;
  /** e.g. `membership.add`, `user.disable`, `access-request.approve` */
  readonly action: string;
  /** `KIND:ID`, e.g. `membership:sre/bob@example.com` */
  readonly target: string;
  readonly from?: string;
  readonly before?: unknown;
  readonly after?: unknown;
}

// ---------------------------------------------------------------------------------------------- ids and checks

const emailPattern = /^[^@\s/]+@[^@\s/]+$/;
const namePattern = /^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$/;

/** The lower-case email, or `ERR_BAD_REQUEST`. */
export function checkEmail(email: string): string {
  const e = typeof email === 'string' ? email.trim().toLowerCase() : '';
  if (!emailPattern.test(e) || e.length > 320) throw new GatehouseError('ERR_BAD_REQUEST', `${JSON.stringify(email)} is not an email address`);
  return e;
}

/** A service-account name: `[a-z0-9-]`, 1–64 characters, or `ERR_BAD_REQUEST`. */
export function checkName(name: string): string {
  if (typeof name !== 'string' || !namePattern.test(name)) {
    throw new GatehouseError('ERR_BAD_REQUEST', `${JSON.stringify(name)} is not a valid name (lower-case letters, digits and "-", up to 64)`);
  }
  return name;
}

/** A length of time in ms: a positive whole number, or `ERR_BAD_REQUEST`. */
export function checkDuration(ms: number | undefined): number | undefined {
  if (ms === undefined) return undefined;
  if (!Number.isSafeInteger(ms) || ms <= 0) throw new GatehouseError('ERR_BAD_REQUEST', `a duration must be a positive number of milliseconds, not ${String(ms)}`);
  return ms;
}

export function pairId(role: string, email: string): string {
  return `${role}/${email}`;
}

export function serviceIdentity(name: string): string {
  return `${name}@${SERVICE_DOMAIN}`;
}

/** The service-account name of a `NAME@service.gatehouse` identity, else undefined. */
export function serviceNameOf(email: string): string | undefined {
  const at = email.lastIndexOf('@');
  return at > 0 && email.slice(at + 1) === SERVICE_DOMAIN ? email.slice(0, at) : undefined;
}
