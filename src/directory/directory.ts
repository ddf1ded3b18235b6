/**
 * The directory: people, role memberships, role admins, access requests and service accounts, kept in the store
 * so every worker and instance sees them. Every change is written in one transaction with its audit record.
 *
 * Roles and their grants come from the configuration (`configure`); who holds them comes from here. The hot path
 * (`rolesFromStore`, `isDisabled`) reads a `StoreMirror` and never waits on the store; everything else is async
 * and authorises its caller itself, so an API can call it directly with the signed-in user as the actor:
 *
 * - root admins (config `identity.admins`) may change anything;
 * - role admins (config `roles[].admins`, or added by a root admin) may add and remove members of their own roles,
 *   and decide access requests for them, and nothing else;
 * - everyone may ask for a role and see their own requests.
 *
 * Refusals are `GatehouseError`s: `ERR_FORBIDDEN`, `ERR_NOT_FOUND` (unknown role, request, account),
 * `ERR_CONFLICT` (a decided request, a membership declared in the configuration), `ERR_BAD_REQUEST`,
 * `ERR_USER_DISABLED` (a disabled actor); a concurrent change to the same record gives `ERR_STORE_CONFLICT`.
 */
import { GatehouseError } from '../core/index.ts';
import type { SessionBook, Token, TokenValue } from '../authn/index.ts';
import { newId, type Store, type StoreMirror, type StoreOp, type StoreRecord } from '../store/index.ts';
import {
  ACCESS_REQUEST_KIND,
  AUDIT_KIND,
  DIRECTORY_MIRROR_KINDS,
  MEMBERSHIP_KIND,
  ROLE_ADMIN_KIND,
  SERVICE_ACCOUNT_KIND,
  SERVICE_DOMAIN,
  USER_KIND,
  checkDuration,
  checkEmail,
  checkName,
  pairId,
  serviceIdentity,
  serviceNameOf,
  type AccessRequest,
  type Actor,
  type AuditRecord,
  type Membership,
  type RoleAdmin,
  type RoleAdminRecord,
  type ServiceAccount,
  type UserRecord,
} from './records.ts';

/** What the directory reads of a configured role (a `RoleConfig` is one). */
export interface DirectoryRole {
  readonly name: string;
  readonly members: readonly string[];
  readonly admins: readonly string[];
}

/** What the directory reads of the configuration. */
export interface DirectorySettings {
  /** root admins: `identity.admins` */
  readonly admins: readonly string[];
  readonly roles: readonly DirectoryRole[];
}

export interface DirectoryOptions {
  readonly store: Store;
  /** a started mirror holding (at least) `DIRECTORY_MIRROR_KINDS`; shared with the rest of the process */
  readonly mirror: StoreMirror;
  readonly sessions: SessionBook;
  /** revokes the device certificates of a disabled user (the internal CA); returns how many */
  readonly revokeCertificates?: ((email: string, by: string) => Promise<number>) | undefined;
  readonly settings: DirectorySettings;
}

/** The actor of changes made by the configuration itself (seeding). */
export const CONFIG_ACTOR: Actor = Object.freeze({ email: 'config' });

/** How long a pending access request waits for a decision, and how long a decided one stays listed. */
export const REQUEST_TTL_MS = 30 * 24 * 3600_000;
const LAST_SEEN_INTERVAL_MS = 60_000;
const MAX_REASON = 1000;
const actionPattern = /^[a-z][a-z0-9-]*(?:\.[a-z][a-z0-9-]*)+$/;
const kindPattern = /^[a-z][a-z0-9-]*$/;
const NO_ROLES: readonly string[] = Object.freeze([]);

interface RoleEntry {
  readonly members: ReadonlySet<string>;
  readonly admins: ReadonlySet<string>;
}

/** One record written (or deleted: `after` undefined) with its audit record. */
interface Change {
  readonly action: string;
  readonly kind: string;
  readonly id: string;
  readonly before: StoreRecord<unknown> | undefined;
  readonly after: unknown;
  readonly expiresAt?: number | undefined;
}

function isConflict(err: unknown): boolean {
  return err instanceof GatehouseError && err.code === 'ERR_STORE_CONFLICT';
}

export class Directory {
  readonly #store: Store;
  readonly #mirror: StoreMirror;
  readonly #sessions: SessionBook;
  readonly #revokeCertificates: ((email: string, by: string) => Promise<number>) | undefined;
  #root: ReadonlySet<string> = new Set();
  #roles: ReadonlyMap<string, RoleEntry> = new Map();
  #roleNames: readonly string[] = [];
  /** when this process last wrote (or decided not to write) a user's lastSeen */
  readonly #touched = new Map<string, number>();

  constructor(options: DirectoryOptions) {
    this.#store = options.store;
    this.#mirror = options.mirror;
    this.#sessions = options.sessions;
    this.#revokeCertificates = options.revokeCertificates;
    this.configure(options.settings);
  }

  /** Takes the roles and admins of a (re)loaded configuration. Run `seed` after it to sync config members. */
  configure(settings: DirectorySettings): void {
    this.#root = new Set(settings.admins.map((a) => a.toLowerCase()));
    const roles = new Map<string, RoleEntry>();
    for (const r of settings.roles) {
      roles.set(r.name, { members: new Set(r.members.map((m) => m.toLowerCase())), admins: new Set(r.admins.map((a) => a.toLowerCase())) });
    }
    this.#roles = roles;
    this.#roleNames = Object.freeze([...roles.keys()]);
  }

  // ------------------------------------------------------------------------------------------ hot path

  /** The configured roles `email` holds through store memberships (unexpired). Memory only. */
  rolesFromStore(email: string): readonly string[] {
    const e = email.toLowerCase();
    let held: string[] | undefined;
    for (const role of this.#roleNames) {
      if (this.#mirror.get<Membership>(MEMBERSHIP_KIND, pairId(role, e)) !== undefined) (held ??= []).push(role);
    }
    return held ?? NO_ROLES;
  }

  /** Whether `email` is disabled (a service identity whose account does not exist counts as disabled). Memory only. */
  isDisabled(email: string): boolean {
    const e = email.toLowerCase();
    const service = serviceNameOf(e);
    if (service !== undefined) return this.#mirror.get(SERVICE_ACCOUNT_KIND, service) === undefined;
    return this.#mirror.get<UserRecord>(USER_KIND, e)?.disabled === true;
  }

  /** Notes a request by `email`: lastSeen is written behind, at most once a minute per process. Never throws. */
  touch(email: string, now = Date.now()): void {
    const e = email.toLowerCase();
    const last = this.#touched.get(e);
    if (last !== undefined && now - last < LAST_SEEN_INTERVAL_MS) return;
    if (this.#touched.size >= 100_000) this.#touched.clear();
    this.#touched.set(e, now);
    const known = this.#mirror.get<UserRecord>(USER_KIND, e);
    if (!known || (known.lastSeen !== undefined && now - known.lastSeen < LAST_SEEN_INTERVAL_MS)) return;
    void this.#store
      .get<UserRecord>(USER_KIND, e)
      .then((rec) => rec && this.#store.put(USER_KIND, e, { ...rec.value, lastSeen: now }, { ifRevision: rec.revision }))
      .catch(() => undefined); // a lost write only makes lastSeen older
  }

  // ------------------------------------------------------------------------------------------ authority

  isRoot(email: string): boolean {
    return this.#root.has(email.toLowerCase());
  }

  /** Whether `email` administers `role` (config `admins` or a stored role admin); root admins are not included. */
  isRoleAdmin(role: string, email: string): boolean {
    const e = email.toLowerCase();
    const entry = this.#roles.get(role);
    if (!entry) return false;
    return entry.admins.has(e) || this.#mirror.get(ROLE_ADMIN_KIND, pairId(role, e)) !== undefined;
  }

  /** Whether `email` may add and remove members of `role` and decide its access requests. */
  mayManage(role: string, email: string): boolean {
    return this.#roles.has(role) && (this.isRoot(email) || this.isRoleAdmin(role, email));
  }

  /** The configured roles whose members `email` may manage (all for a root admin). */
  managedRoles(email: string): readonly string[] {
    if (this.isRoot(email)) return this.#roleNames;
    return this.#roleNames.filter((r) => this.isRoleAdmin(r, email));
  }

  /** The configured role names, in configuration order. */
  get roleNames(): readonly string[] {
    return this.#roleNames;
  }

  // ------------------------------------------------------------------------------------------ users

  /**
   * A sign-in by `email`: creates the user when new (audited as `user.create`), else updates lastSeen. Returns the
   * record, so the caller can refuse a disabled user. Service identities cannot sign in (`ERR_DOMAIN_NOT_ALLOWED`).
   */
  async recordSignIn(email: string, from?: string): Promise<UserRecord> {
    const e = checkEmail(email);
    if (serviceNameOf(e) !== undefined) throw new GatehouseError('ERR_DOMAIN_NOT_ALLOWED', `accounts of ${SERVICE_DOMAIN} may not sign in`);
    for (let attempt = 0; ; attempt++) {
      const cur = await this.#store.get<UserRecord>(USER_KIND, e);
      const now = Date.now();
      try {
        this.#touched.set(e, now);
        if (!cur) {
          const value: UserRecord = { email: e, firstSeen: now, lastSeen: now, disabled: false };
          await this.#commit({ email: e, ...(from ? { from } : {}) }, [{ action: 'user.create', kind: USER_KIND, id: e, before: undefined, after: value }]);
          return value;
        }
        const value: UserRecord = { ...cur.value, firstSeen: cur.value.firstSeen ?? now, lastSeen: now };
        await this.#store.put(USER_KIND, e, value, { ifRevision: cur.revision });
        await this.#afterWrite([{ action: 'user.seen', kind: USER_KIND, id: e, before: cur, after: value }]);
        return value;
      } catch (err) {
        if (isConflict(err) && attempt < 3) continue;
        throw err;
      }
    }
  }

  async user(email: string): Promise<UserRecord | undefined> {
    return (await this.#store.get<UserRecord>(USER_KIND, checkEmail(email)))?.value;
  }

  /** Every user, ordered by email. */
  async users(): Promise<UserRecord[]> {
    return (await this.#listAll<UserRecord>(USER_KIND)).map((r) => r.value);
  }

  /**
   * Root only: marks `email` disabled (every route refuses it from the next request on, in every process), then
   * revokes all its sessions, tokens and device certificates. Creates the user when never seen. Returns how many
   * were revoked.
   */
  async disable(email: string, actor: Actor): Promise<{ sessions: number; tokens: number; certificates: number }> {
    const who = this.#requireRoot(actor, 'disable users');
    const e = checkEmail(email);
    if (serviceNameOf(e) !== undefined) throw new GatehouseError('ERR_BAD_REQUEST', 'a service account is deleted, not disabled');
    if (e === who.email) throw new GatehouseError('ERR_CONFLICT', 'you cannot disable yourself');
    const cur = await this.#store.get<UserRecord>(USER_KIND, e);
    if (!cur?.value.disabled) {
      const value: UserRecord = { ...(cur?.value ?? { email: e }), disabled: true, disabledBy: who.email, disabledAt: Date.now() };
      await this.#commit(who, [{ action: 'user.disable', kind: USER_KIND, id: e, before: cur, after: value }]);
    }
    const revoked = await this.#revokeAll(e);
    const certificates = this.#revokeCertificates ? await this.#revokeCertificates(e, who.email) : 0;
    return { ...revoked, certificates };
  }

  /** Root only: lets a disabled user in again (their old sessions and tokens stay revoked). */
  async enable(email: string, actor: Actor): Promise<UserRecord | undefined> {
    const who = this.#requireRoot(actor, 'enable users');
    const e = checkEmail(email);
    const cur = await this.#store.get<UserRecord>(USER_KIND, e);
    if (!cur?.value.disabled) return cur?.value;
    const { disabledBy: _by, disabledAt: _at, ...rest } = cur.value;
    const value: UserRecord = { ...rest, disabled: false };
    await this.#commit(who, [{ action: 'user.enable', kind: USER_KIND, id: e, before: cur, after: value }]);
    return value;
  }

  /** The live tokens of `email` (any kind), or of everyone when `email` is left out; never their secrets. */
  async tokensOf(email?: string): Promise<Token[]> {
    const e = email?.toLowerCase();
    const now = Date.now();
    return (await this.#listAll<TokenValue>('token'))
      .filter((r) => (e === undefined || r.value.user.toLowerCase() === e) && r.value.expires > now)
      .map((r) => ({ id: r.id, ...r.value }));
  }

  async #revokeAll(email: string): Promise<{ sessions: number; tokens: number }> {
    let sessions = 0;
    for (const s of await this.#sessions.list()) {
      if (s.user.toLowerCase() === email && (await this.#sessions.revoke(s.id))) sessions++;
    }
    let tokens = 0;
    for (const t of await this.tokensOf(email)) if (await this.#sessions.revokeToken(t.id)) tokens++;
    return { sessions, tokens };
  }

  // ------------------------------------------------------------------------------------------ memberships

  /** The members of `role` (unexpired), config-seeded ones included, ordered by email. Anyone signed in may list. */
  async members(role: string): Promise<Membership[]> {
    this.#role(role);
    return (await this.#listAll<Membership>(MEMBERSHIP_KIND, `${role}/`)).map((r) => r.value);
  }

  /** The unexpired store memberships of `email` in configured roles. Memory only. */
  membershipsOf(email: string): Membership[] {
    const e = email.toLowerCase();
    const out: Membership[] = [];
    for (const role of this.#roleNames) {
      const m = this.#mirror.get<Membership>(MEMBERSHIP_KIND, pairId(role, e));
      if (m) out.push(m);
    }
    return out;
  }

  /**
   * Root or that role's admins: makes `email` a member of `role`, until `expires` (ms since the epoch) when given.
   * Replaces an earlier membership from the store; a membership declared in the configuration is `ERR_CONFLICT`.
   */
  async addMember(role: string, email: string, options: { expires?: number | undefined; actor: Actor }): Promise<Membership> {
    const who = this.#requireManager(options.actor, role);
    const user = checkEmail(email);
    const { expires } = options;
    if (expires !== undefined && (!Number.isSafeInteger(expires) || expires <= Date.now())) {
      throw new GatehouseError('ERR_BAD_REQUEST', 'expires must be a time in the future (ms since the epoch)');
    }
    const service = serviceNameOf(user);
    if (service !== undefined && (await this.#store.get(SERVICE_ACCOUNT_KIND, service)) === undefined) {
      throw new GatehouseError('ERR_NOT_FOUND', `there is no service account ${service}`);
    }
    const id = pairId(role, user);
    const cur = await this.#store.get<Membership>(MEMBERSHIP_KIND, id);
    if (cur?.value.source === 'config') throw new GatehouseError('ERR_CONFLICT', `${user} is a member of ${role} by the configuration`);
    const value: Membership = { role, user, ...(expires !== undefined ? { expires } : {}), addedBy: who.email, added: Date.now() };
    await this.#commit(who, [{ action: 'membership.add', kind: MEMBERSHIP_KIND, id, before: cur, after: value, expiresAt: expires }]);
    return value;
  }

  /** Root or that role's admins: ends a membership; false when there was none. */
  async removeMember(role: string, email: string, actor: Actor): Promise<boolean> {
    const who = this.#requireManager(actor, role);
    const user = checkEmail(email);
    const id = pairId(role, user);
    const cur = await this.#store.get<Membership>(MEMBERSHIP_KIND, id);
    if (!cur) return false;
    if (cur.value.source === 'config') throw new GatehouseError('ERR_CONFLICT', `${user} is a member of ${role} by the configuration: remove them there`);
    await this.#commit(who, [{ action: 'membership.remove', kind: MEMBERSHIP_KIND, id, before: cur, after: undefined }]);
    return true;
  }

  /**
   * Writes the configuration's `members` as memberships marked `source: 'config'` and removes config memberships
   * the configuration no longer lists. Idempotent; safe to run from several processes at once.
   */
  async seed(): Promise<{ added: number; removed: number }> {
    const want = new Map<string, { role: string; user: string }>();
    for (const [role, entry] of this.#roles) for (const user of entry.members) want.set(pairId(role, user), { role, user });
    const existing = new Map((await this.#listAll<Membership>(MEMBERSHIP_KIND)).map((r) => [r.id, r]));
    let added = 0;
    let removed = 0;
    const attempt = async (change: Change): Promise<boolean> => {
      try {
        await this.#commit(CONFIG_ACTOR, [change]);
        return true;
      } catch (err) {
        if (isConflict(err)) return false; // another process seeded (or changed) it first
        throw err;
      }
    };
    for (const [id, { role, user }] of want) {
      const cur = existing.get(id);
      if (cur?.value.source === 'config' && cur.expiresAt === undefined) continue;
      const value: Membership = { role, user, addedBy: CONFIG_ACTOR.email, added: Date.now(), source: 'config' };
      if (await attempt({ action: 'membership.add', kind: MEMBERSHIP_KIND, id, before: cur, after: value })) added++;
    }
    for (const [id, cur] of existing) {
      if (cur.value.source !== 'config' || want.has(id)) continue;
      if (await attempt({ action: 'membership.remove', kind: MEMBERSHIP_KIND, id, before: cur, after: undefined })) removed++;
    }
    return { added, removed };
  }

  // ------------------------------------------------------------------------------------------ role admins

  /** The admins of `role`: from the configuration and added by root admins. */
  async roleAdmins(role: string): Promise<RoleAdmin[]> {
    const entry = this.#role(role);
    const out: RoleAdmin[] = [...entry.admins].map((user) => ({ user, source: 'config' as const }));
    for (const r of await this.#listAll<RoleAdminRecord>(ROLE_ADMIN_KIND, `${role}/`)) {
      if (!entry.admins.has(r.value.user)) out.push({ user: r.value.user, source: 'store' });
    }
    return out;
  }

  /** Root only: `email` may manage the members of `role`. */
  async addRoleAdmin(role: string, email: string, actor: Actor): Promise<RoleAdmin> {
    const who = this.#requireRoot(actor, 'add role admins');
    const entry = this.#role(role);
    const user = checkEmail(email);
    if (entry.admins.has(user)) return { user, source: 'config' };
    const id = pairId(role, user);
    const cur = await this.#store.get<RoleAdminRecord>(ROLE_ADMIN_KIND, id);
    if (cur) return { user, source: 'store' };
    const value: RoleAdminRecord = { role, user, addedBy: who.email, added: Date.now() };
    await this.#commit(who, [{ action: 'role-admin.add', kind: ROLE_ADMIN_KIND, id, before: undefined, after: value }]);
    return { user, source: 'store' };
  }

  /** Root only: false when `email` was no stored admin of `role`; a config admin is `ERR_CONFLICT`. */
  async removeRoleAdmin(role: string, email: string, actor: Actor): Promise<boolean> {
    const who = this.#requireRoot(actor, 'remove role admins');
    const entry = this.#role(role);
    const user = checkEmail(email);
    if (entry.admins.has(user)) throw new GatehouseError('ERR_CONFLICT', `${user} is an admin of ${role} by the configuration: remove them there`);
    const id = pairId(role, user);
    const cur = await this.#store.get<RoleAdminRecord>(ROLE_ADMIN_KIND, id);
    if (!cur) return false;
    await this.#commit(who, [{ action: 'role-admin.remove', kind: ROLE_ADMIN_KIND, id, before: cur, after: undefined }]);
    return true;
  }

  // ------------------------------------------------------------------------------------------ access requests

  /**
   * `user` asks for `role` with a reason, optionally for `duration` ms. One pending request per user and role:
   * asking again returns the pending one. A pending request lapses after `REQUEST_TTL_MS`.
   */
  async requestAccess(user: Actor, role: string, reason: string, duration?: number): Promise<AccessRequest> {
    const who = this.#actor(user);
    this.#role(role);
    const why = typeof reason === 'string' ? reason.trim() : '';
    if (!why || why.length > MAX_REASON) throw new GatehouseError('ERR_BAD_REQUEST', `a reason of 1–${MAX_REASON} characters is required`);
    const d = checkDuration(duration);
    const open = (await this.requestsOf(who.email)).find((r) => r.status === 'pending' && r.role === role);
    if (open) return open;
    const now = Date.now();
    const value: AccessRequest = { id: newId(), user: who.email, role, reason: why, ...(d !== undefined ? { duration: d } : {}), status: 'pending', created: now };
    await this.#commit(who, [
      { action: 'access-request.create', kind: ACCESS_REQUEST_KIND, id: value.id, before: undefined, after: value, expiresAt: now + REQUEST_TTL_MS },
    ]);
    return value;
  }

  async accessRequest(id: string): Promise<AccessRequest | undefined> {
    return (await this.#store.get<AccessRequest>(ACCESS_REQUEST_KIND, id))?.value;
  }

  /** The requests `email` made (pending and recently decided), oldest first. */
  async requestsOf(email: string): Promise<AccessRequest[]> {
    const e = email.toLowerCase();
    return (await this.#listAll<AccessRequest>(ACCESS_REQUEST_KIND)).map((r) => r.value).filter((r) => r.user === e);
  }

  /** The pending requests `actor` may decide: every one for a root admin, those of their roles for a role admin. */
  async pendingFor(actor: Actor): Promise<AccessRequest[]> {
    const who = this.#actor(actor);
    const roles = new Set(this.managedRoles(who.email));
    if (roles.size === 0) return [];
    return (await this.#listAll<AccessRequest>(ACCESS_REQUEST_KIND)).map((r) => r.value).filter((r) => r.status === 'pending' && roles.has(r.role));
  }

  /**
   * Root or the role's admins: grants the role, for `duration` ms when given (else the requested duration, else
   * without end). An existing membership that lasts longer is kept.
   */
  async approve(id: string, actor: Actor, duration?: number): Promise<AccessRequest> {
    const { who, cur } = await this.#decidable(id, actor);
    const now = Date.now();
    const d = checkDuration(duration) ?? cur.value.duration;
    const expires = d !== undefined ? now + d : undefined;
    const { role, user } = cur.value;
    const decided: AccessRequest = { ...cur.value, status: 'approved', decidedBy: who.email, decidedAt: now, ...(expires !== undefined ? { expires } : {}) };
    const changes: Change[] = [
      { action: 'access-request.approve', kind: ACCESS_REQUEST_KIND, id, before: cur, after: decided, expiresAt: now + REQUEST_TTL_MS },
    ];
    const mid = pairId(role, user);
    const held = await this.#store.get<Membership>(MEMBERSHIP_KIND, mid);
    const longer = held && (held.value.expires === undefined || (expires !== undefined && held.value.expires >= expires));
    if (!longer) {
      const m: Membership = { role, user, ...(expires !== undefined ? { expires } : {}), addedBy: who.email, added: now, request: id };
      changes.push({ action: 'membership.add', kind: MEMBERSHIP_KIND, id: mid, before: held, after: m, expiresAt: expires });
    }
    await this.#commit(who, changes);
    return decided;
  }

  /** Root or the role's admins: refuses the request. */
  async decline(id: string, actor: Actor): Promise<AccessRequest> {
    const { who, cur } = await this.#decidable(id, actor);
    const now = Date.now();
    const decided: AccessRequest = { ...cur.value, status: 'declined', decidedBy: who.email, decidedAt: now };
    await this.#commit(who, [{ action: 'access-request.decline', kind: ACCESS_REQUEST_KIND, id, before: cur, after: decided, expiresAt: now + REQUEST_TTL_MS }]);
    return decided;
  }

  async #decidable(id: string, actor: Actor): Promise<{ who: Actor; cur: StoreRecord<AccessRequest> }> {
    const who = this.#actor(actor);
    const cur = typeof id === 'string' && id ? await this.#store.get<AccessRequest>(ACCESS_REQUEST_KIND, id) : undefined;
    if (!cur) throw new GatehouseError('ERR_NOT_FOUND', `there is no access request ${JSON.stringify(id)}`);
    this.#requireManager(who, cur.value.role);
    if (cur.value.status !== 'pending') throw new GatehouseError('ERR_CONFLICT', `the access request was already ${cur.value.status}`);
    return { who, cur };
  }

  // ------------------------------------------------------------------------------------------ service accounts

  /** Root only: a service account `NAME@service.gatehouse`, which holds roles through memberships. */
  async createServiceAccount(name: string, actor: Actor, options: { description?: string } = {}): Promise<ServiceAccount> {
    const who = this.#requireRoot(actor, 'create service accounts');
    const n = checkName(name);
    const cur = await this.#store.get<ServiceAccount>(SERVICE_ACCOUNT_KIND, n);
    if (cur) throw new GatehouseError('ERR_CONFLICT', `the service account ${n} exists`);
    const value: ServiceAccount = { name: n, identity: serviceIdentity(n), description: options.description ?? '', createdBy: who.email, created: Date.now() };
    await this.#commit(who, [{ action: 'service-account.create', kind: SERVICE_ACCOUNT_KIND, id: n, before: undefined, after: value }]);
    return value;
  }

  async serviceAccounts(): Promise<ServiceAccount[]> {
    return (await this.#listAll<ServiceAccount>(SERVICE_ACCOUNT_KIND)).map((r) => r.value);
  }

  /** Root only: deletes the account with its memberships, and revokes its tokens. False when there was none. */
  async deleteServiceAccount(name: string, actor: Actor): Promise<boolean> {
    const who = this.#requireRoot(actor, 'delete service accounts');
    const n = checkName(name);
    const cur = await this.#store.get<ServiceAccount>(SERVICE_ACCOUNT_KIND, n);
    if (!cur) return false;
    const identity = serviceIdentity(n);
    const changes: Change[] = [{ action: 'service-account.delete', kind: SERVICE_ACCOUNT_KIND, id: n, before: cur, after: undefined }];
    for (const m of await this.#listAll<Membership>(MEMBERSHIP_KIND)) {
      if (m.value.user === identity) changes.push({ action: 'membership.remove', kind: MEMBERSHIP_KIND, id: m.id, before: m, after: undefined });
    }
    await this.#commit(who, changes);
    await this.#revokeAll(identity);
    return true;
  }

  /** Root only: an API token for a service account (`SessionBook.issueToken`, kind `api`); the secret is returned once. */
  async issueServiceToken(name: string, actor: Actor, options: { tokenName: string; ttlMs: number }): Promise<{ token: string; record: Token }> {
    const who = this.#requireRoot(actor, 'issue service-account tokens');
    const n = checkName(name);
    if (!(await this.#store.get(SERVICE_ACCOUNT_KIND, n))) throw new GatehouseError('ERR_NOT_FOUND', `there is no service account ${n}`);
    const ttl = checkDuration(options.ttlMs);
    if (ttl === undefined) throw new GatehouseError('ERR_BAD_REQUEST', 'a token needs a ttl');
    const issued = await this.#sessions.issueToken(serviceIdentity(n), options.tokenName, ttl, 'api');
    await this.#commit(who, [{ action: 'token.issue', kind: 'token', id: issued.record.id, before: undefined, after: issued.record }], { auditOnly: true });
    return issued;
  }

  // ------------------------------------------------------------------------------------------ audit

  /** Audit records, newest first: at most `limit` (1–1000), none older than `since` (ms), before the id `before`. */
  async audit(since?: number, limit = 100, before?: string): Promise<AuditRecord[]> {
    const n = Math.min(Math.max(1, Math.floor(limit)), 1000);
    const page = await this.#store.list<AuditRecord>(AUDIT_KIND, { reverse: true, limit: n, ...(before ? { after: before } : {}) });
    const out: AuditRecord[] = [];
    for (const r of page) {
      if (since !== undefined && r.value.time < since) break;
      out.push(r.value);
    }
    return out;
  }

  /**
   * Writes the audit record of a change the directory does not make itself (a session revoked, a personal token
   * issued or revoked): `actor` did `action` to `KIND:ID`, from `actor.from`. A disabled actor is refused. Never
   * hand it a secret: the record is kept as given.
   */
  async appendAudit(actor: Actor, change: { action: string; kind: string; id: string; before?: unknown; after?: unknown }): Promise<AuditRecord> {
    const who = this.#actor(actor);
    const { action, kind, id } = change;
    if (typeof action !== 'string' || !actionPattern.test(action)) {
      throw new GatehouseError('ERR_BAD_REQUEST', `${JSON.stringify(action)} is not an audit action (e.g. token.revoke)`);
    }
    if (typeof kind !== 'string' || !kindPattern.test(kind) || typeof id !== 'string' || !id) {
      throw new GatehouseError('ERR_BAD_REQUEST', 'an audit record needs the kind and id of what changed');
    }
    const record: AuditRecord = {
      id: newId(),
      time: Date.now(),
      actor: who.email,
      action,
      target: `${kind}:${id}`,
      ...(who.from ? { from: who.from } : {}),
      ...(change.before !== undefined ? { before: change.before } : {}),
      ...(change.after !== undefined ? { after: change.after } : {}),
    };
    await this.#store.put(AUDIT_KIND, record.id, record, { ifRevision: 0 });
    return record;
  }

  // ------------------------------------------------------------------------------------------ internals

  #role(role: string): RoleEntry {
    const entry = this.#roles.get(role);
    if (!entry) throw new GatehouseError('ERR_NOT_FOUND', `there is no role ${JSON.stringify(role)}`);
    return entry;
  }

  /** The actor with a lower-case email; a disabled actor may do nothing. */
  #actor(actor: Actor): Actor {
    const email = checkEmail(actor.email);
    if (this.isDisabled(email)) throw new GatehouseError('ERR_USER_DISABLED', `${email} is disabled`);
    return actor.from ? { email, from: actor.from } : { email };
  }

  #requireRoot(actor: Actor, what: string): Actor {
    const who = this.#actor(actor);
    if (!this.isRoot(who.email)) throw new GatehouseError('ERR_FORBIDDEN', `only root admins may ${what}`);
    return who;
  }

  #requireManager(actor: Actor, role: string): Actor {
    const who = this.#actor(actor);
    this.#role(role);
    if (!this.mayManage(role, who.email)) throw new GatehouseError('ERR_FORBIDDEN', `${who.email} may not manage the members of ${role}`);
    return who;
  }

  /** Writes the changes (each conditional on the revision read) and one audit record each, in one transaction. */
  async #commit(actor: Actor, changes: readonly Change[], options: { auditOnly?: boolean } = {}): Promise<void> {
    const time = Date.now();
    const ops: StoreOp[] = [];
    for (const c of changes) {
      if (!options.auditOnly) {
        const ifRevision = c.before?.revision ?? 0;
        if (c.after === undefined) ops.push({ op: 'delete', kind: c.kind, id: c.id, ifRevision });
        else ops.push({ op: 'put', kind: c.kind, id: c.id, value: c.after, options: { ifRevision, ...(c.expiresAt !== undefined ? { expiresAt: c.expiresAt } : {}) } });
      }
      const id = newId();
      const record: AuditRecord = {
        id,
        time,
        actor: actor.email,
        action: c.action,
        target: `${c.kind}:${c.id}`,
        ...(actor.from ? { from: actor.from } : {}),
        ...(c.before ? { before: c.before.value } : {}),
        ...(c.after !== undefined ? { after: c.after } : {}),
      };
      ops.push({ op: 'put', kind: AUDIT_KIND, id, value: record, options: { ifRevision: 0 } });
    }
    await this.#store.transact(ops);
    if (!options.auditOnly) await this.#afterWrite(changes);
  }

  /** Makes this process's mirror see its own writes at once (the feed delivers them to the others). */
  async #afterWrite(changes: readonly Change[]): Promise<void> {
    if (!changes.some((c) => DIRECTORY_MIRROR_KINDS.includes(c.kind))) return;
    if (this.#store.catchUp) return this.#store.catchUp();
    for (const c of changes) {
      if (!DIRECTORY_MIRROR_KINDS.includes(c.kind)) continue;
      const rec = await this.#store.get(c.kind, c.id);
      this.#mirror.apply(
        rec ? { kind: c.kind, id: c.id, revision: rec.revision, value: rec.value, ...(rec.expiresAt !== undefined ? { expiresAt: rec.expiresAt } : {}) } : { kind: c.kind, id: c.id, revision: Number.MAX_SAFE_INTEGER },
      );
    }
  }

  async #listAll<T>(kind: string, prefix?: string): Promise<StoreRecord<T>[]> {
    const out: StoreRecord<T>[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await this.#store.list<T>(kind, { limit: 500, ...(prefix ? { prefix } : {}), ...(after ? { after } : {}) });
      out.push(...page);
      if (page.length < 500) return out;
      after = page[page.length - 1]!.id;
    }
  }
}
