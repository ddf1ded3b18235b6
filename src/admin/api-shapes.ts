/**
 * What the JSON API shows of the records it reads: times as ISO strings, durations as text (`8h`), `null` for
 * what is not set (every field is always there), and never a secret (no token or session secret, no encrypted
 * ID token).
 */
import { formatDuration } from '../core/index.ts';
import type { Session, Token } from '../authn/index.ts';
import type { AccessRequest, AuditRecord, Membership, RoleAdmin, ServiceAccount, UserRecord } from '../directory/index.ts';
import type { CertificateRecord } from '../ca/index.ts';
import type { ConnectorSessionFacts, TunnelFacts } from './options.ts';

export function isoTime(ms: number): string;
export function isoTime(ms: number | undefined): string | null;
export function isoTime(ms: number | undefined): string | null {
  return ms === undefined ? null : new Date(ms).toISOString();
}

export function durationText(ms: number | undefined): string | null {
  return ms === undefined ? null : formatDuration(ms);
}

export function membershipJson(m: Membership) {
  return {
    role: m.role,
    user: m.user,
    expires: isoTime(m.expires),
    addedBy: m.addedBy,
    added: isoTime(m.added),
    source: m.source === 'config' ? ('config' as const) : ('store' as const),
    request: m.request ?? null,
  };
}

export function roleAdminJson(role: string, a: RoleAdmin) {
  return { role, user: a.user, source: a.source };
}

export function accessRequestJson(r: AccessRequest) {
  return {
    id: r.id,
    user: r.user,
    role: r.role,
    reason: r.reason,
    duration: durationText(r.duration),
    status: r.status,
    created: isoTime(r.created),
    decidedBy: r.decidedBy ?? null,
    decidedAt: isoTime(r.decidedAt),
    expires: isoTime(r.expires),
  };
}

export function userJson(u: UserRecord, roles: readonly string[]) {
  return {
    email: u.email,
    firstSeen: isoTime(u.firstSeen),
    lastSeen: isoTime(u.lastSeen),
    disabled: u.disabled,
    disabledBy: u.disabledBy ?? null,
    disabledAt: isoTime(u.disabledAt),
    roles,
  };
}

/** What a session is, without its encrypted ID token: for answers and audit records. */
export function sessionFacts(s: Session) {
  return { id: s.id, user: s.user, created: s.created, expires: s.expires, lastSeen: s.lastSeen };
}

export function sessionJson(s: Session, current: boolean) {
  return { id: s.id, user: s.user, created: isoTime(s.created), expires: isoTime(s.expires), lastSeen: isoTime(s.lastSeen), current };
}

export function tokenJson(t: Token) {
  return { id: t.id, user: t.user, name: t.name, kind: t.kind, created: isoTime(t.created), expires: isoTime(t.expires) };
}

export function serviceAccountJson(a: ServiceAccount, roles: readonly string[]) {
  return { name: a.name, identity: a.identity, description: a.description, createdBy: a.createdBy, created: isoTime(a.created), roles };
}

/** A certificate the internal CA issued, without its fingerprint and CA serial (`gatehouse ca list --json` has them). */
export function certificateJson(c: CertificateRecord) {
  return {
    serial: c.serial,
    kind: c.kind,
    user: c.user ?? null,
    connector: c.connector ?? null,
    device: c.device,
    subject: c.subject,
    notBefore: isoTime(c.notBefore),
    notAfter: isoTime(c.notAfter),
    issuedBy: c.issuedBy,
    issued: isoTime(c.issued),
    revoked: c.revoked ? { at: isoTime(c.revoked.at), by: c.revoked.by, reason: c.revoked.reason ?? null } : null,
  };
}

/** A connector's live session, from its presence record. */
export function connectorSessionJson(s: ConnectorSessionFacts) {
  return { session: s.session, address: s.address, version: s.version, target: s.target, worker: s.worker, instance: s.instance ?? null, serial: s.serial, since: isoTime(s.since), streams: s.streams };
}

/** An open TCP tunnel: who, which route, from where, since when, and its bytes as of its owner's last refresh. */
export function tunnelJson(t: TunnelFacts) {
  return {
    id: t.id,
    user: t.user ?? null,
    route: t.route,
    host: t.host,
    client: t.client,
    via: t.via,
    device: t.device ?? null,
    since: isoTime(t.since),
    bytesIn: t.bytesIn,
    bytesOut: t.bytesOut,
  };
}

/** `before` and `after` are the records as stored (their times in ms since the epoch), null when there was none. */
export function auditJson(a: AuditRecord) {
  return {
    id: a.id,
    time: isoTime(a.time),
    actor: a.actor,
    action: a.action,
    target: a.target,
    from: a.from ?? null,
    before: a.before ?? null,
    after: a.after ?? null,
  };
}
