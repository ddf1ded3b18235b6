/**
 * Sessions, hand-off codes, login attempts and tokens, kept in the store so that every worker and instance
 * sees them, and mirrored in memory so the hot path does not wait on the store.
 *
 * Secrets never reach the store: a session, token or code is a random value given to the client; the store
 * keeps only its SHA-256. Cookies carry the session secret with a MAC over (host, secret), so a cookie made for
 * one host is refused on any other.
 */
import { createHash, randomBytes } from 'node:crypto';
import { GatehouseError } from '../core/index.ts';
import type { Store, StoreMirror } from '../store/index.ts';
import type { Keyring } from './keyring.ts';

export const SESSION_COOKIE = '__Host-gatehouse';

export interface SessionValue {
  readonly user: string;
  readonly groups: readonly string[];
  readonly created: number;
  /** absolute end (ttl) */
  readonly expires: number;
  /** last use, written at most once a minute */
  readonly lastSeen: number;
  /** the ID token, encrypted (for the IdP's end-session endpoint) */
  readonly idToken?: string;
}

export interface Session extends SessionValue {
  /** the store id (SHA-256 of the secret) */
  readonly id: string;
}

export interface TokenValue {
  readonly user: string;
  readonly name: string;
  readonly created: number;
  readonly expires: number;
  readonly kind: 'cli' | 'api';
  /** the IdP groups of the sign-in a CLI token came from (absent for tokens minted from the shell) */
  readonly groups?: readonly string[];
}

export interface Token extends TokenValue {
  readonly id: string;
}

export function sha256(value: string): string {
  return createHash('sha256').update(value).digest('base64url');
}

export function randomSecret(bytes = 32): string {
  return randomBytes(bytes).toString('base64url');
}

/** Parses a Cookie header for one cookie name; the last one wins, like browsers send the most specific first. */
export function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  let found: string | undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() === name) {
      found ??= part.slice(eq + 1).trim();
    }
  }
  return found;
}

/** The Cookie header without Gatehouse's own cookies (undefined when nothing is left). */
export function stripOwnCookies(header: string): string | undefined {
  const kept = header
    .split(';')
    .map((p) => p.trim())
    .filter((p) => p && !p.startsWith('__Host-gatehouse'));
  return kept.length ? kept.join('; ') : undefined;
}

export interface SessionOptions {
  readonly ttlMs: number;
  readonly idleMs: number;
}

export class SessionBook {
  readonly #store: Store;
  readonly #mirror: StoreMirror;
  readonly #keys: Keyring;
  #options: SessionOptions;
  /** when this process last wrote lastSeen, per session */
  readonly #touched = new Map<string, number>();

  constructor(store: Store, mirror: StoreMirror, keys: Keyring, options: SessionOptions) {
    this.#store = store;
    this.#mirror = mirror;
    this.#keys = keys;
    this.#options = options;
  }

  configure(options: SessionOptions): void {
    this.#options = options;
  }

  /** Reads a single-use record and deletes it; of two racing takers only one gets it. */
  async #takeOnce<T>(kind: string, id: string): Promise<T | undefined> {
    const rec = await this.#store.get<T>(kind, id);
    if (!rec) return undefined;
    try {
      if (!(await this.#store.delete(kind, id, { ifRevision: rec.revision }))) return undefined;
    } catch (err) {
      if (err instanceof GatehouseError && err.code === 'ERR_STORE_CONFLICT') return undefined;
      throw err;
    }
    return rec.value;
  }

  // ------------------------------------------------------------------ sessions

  async create(user: string, groups: readonly string[], idToken: string | undefined): Promise<{ secret: string; session: Session }> {
    const secret = randomSecret();
    const id = sha256(secret);
    const now = Date.now();
    const value: SessionValue = {
      user,
      groups,
      created: now,
      expires: now + this.#options.ttlMs,
      lastSeen: now,
      ...(idToken ? { idToken: this.#keys.encrypt('id-token', idToken) } : {}),
    };
    const rec = await this.#store.put('session', id, value, { expiresAt: value.expires, ifRevision: 0 });
    this.#mirror.apply({ kind: 'session', id, revision: rec.revision, value, expiresAt: value.expires });
    return { secret, session: { id, ...value } };
  }

  cookieValue(secret: string, host: string): string {
    return `${secret}.${this.#keys.mac('session-cookie', `${host}\n${secret}`)}`;
  }

  /** The secret in a cookie made for `host`, or undefined when the cookie is malformed or made for another host. */
  secretFromCookie(cookie: string | undefined, host: string): string | undefined {
    if (!cookie) return undefined;
    const dot = cookie.indexOf('.');
    if (dot <= 0) return undefined;
    const secret = cookie.slice(0, dot);
    return this.#keys.verifyMac('session-cookie', `${host}\n${secret}`, cookie.slice(dot + 1)) ? secret : undefined;
  }

  /**
   * The live session for a secret: unexpired, not idle too long, not revoked. Reads memory; the store only for a
   * session memory does not hold yet (made a moment ago by another instance), and only while the store answers,
   * briefly (`StoreMirror.lookup`): with the store down, an unknown session is simply not signed in.
   */
  async find(secret: string): Promise<Session | undefined> {
    const id = sha256(secret);
    const value = await this.#mirror.lookup<SessionValue>('session', id);
    if (!value) return undefined;
    const now = Date.now();
    if (now >= value.expires) return undefined;
    const seen = Math.max(value.lastSeen, this.#touched.get(id) ?? 0);
    if (now - seen >= this.#options.idleMs) return undefined;
    this.#touch(id, value, now);
    return { id, ...value };
  }

  #touch(id: string, value: SessionValue, now: number): void {
    const last = Math.max(value.lastSeen, this.#touched.get(id) ?? 0);
    this.#touched.set(id, now);
    if (now - last < 60_000) return;
    // write-behind: other workers learn of the activity within a minute; a lost write only shortens idle time
    void this.#store
      .get<SessionValue>('session', id)
      .then((rec) => {
        if (!rec) return;
        return this.#store.put('session', id, { ...rec.value, lastSeen: now }, { ifRevision: rec.revision, expiresAt: rec.value.expires });
      })
      .catch(() => undefined);
    if (this.#touched.size > 100_000) this.#touched.clear();
  }

  /** Live sessions, optionally of one user (for listing and revoking; never the secrets). */
  async list(user?: string): Promise<Session[]> {
    const now = Date.now();
    const out: Session[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await this.#store.list<SessionValue>('session', { limit: 500, ...(after ? { after } : {}) });
      for (const r of page) {
        if (r.value.expires > now && (!user || r.value.user === user)) out.push({ id: r.id, ...r.value });
      }
      if (page.length < 500) return out;
      after = page[page.length - 1]!.id;
    }
  }

  async revoke(id: string): Promise<boolean> {
    const ok = await this.#store.delete('session', id);
    this.#mirror.apply({ kind: 'session', id, revision: Number.MAX_SAFE_INTEGER });
    this.#touched.delete(id);
    return ok;
  }

  idToken(session: Session): string | undefined {
    if (!session.idToken) return undefined;
    try {
      return this.#keys.decrypt('id-token', session.idToken);
    } catch {
      return undefined;
    }
  }

  // ------------------------------------------------------------------ hand-off codes

  /** A single-use code that moves a session to one route host; valid for a minute. */
  async handoff(sessionSecret: string, host: string, returnPath: string): Promise<string> {
    const code = randomSecret();
    await this.#store.put(
      'handoff',
      sha256(code),
      { session: this.#keys.encrypt('handoff', sessionSecret), host, returnPath },
      { expiresAt: Date.now() + 60_000, ifRevision: 0 },
    );
    return code;
  }

  /** Consumes a hand-off code for `host`: the session secret and where to go, or undefined (unknown, used, expired, other host). */
  async redeem(code: string, host: string): Promise<{ secret: string; returnPath: string } | undefined> {
    // taken (deleted) before the host is compared: a code tried on the wrong host is spent
    const handoff = await this.#takeOnce<{ session: string; host: string; returnPath: string }>('handoff', sha256(code));
    if (!handoff || handoff.host !== host) return undefined;
    return { secret: this.#keys.decrypt('handoff', handoff.session), returnPath: handoff.returnPath };
  }

  // ------------------------------------------------------------------ sign-out across hosts

  /** Keeps an ID token for a minute so the auth host can end the IdP session after a route host's sign-out. */
  async carryLogout(idToken: string): Promise<string> {
    const code = randomSecret();
    await this.#store.put('logout', sha256(code), { idToken: this.#keys.encrypt('logout', idToken) }, { expiresAt: Date.now() + 60_000, ifRevision: 0 });
    return code;
  }

  async takeLogout(code: string): Promise<string | undefined> {
    const carried = await this.#takeOnce<{ idToken: string }>('logout', sha256(code));
    if (!carried) return undefined;
    try {
      return this.#keys.decrypt('logout', carried.idToken);
    } catch {
      return undefined;
    }
  }

  // ------------------------------------------------------------------ login attempts

  async saveAttempt(state: string, attempt: LoginAttempt): Promise<void> {
    await this.#store.put('login', sha256(state), { ...attempt, verifier: this.#keys.encrypt('login', attempt.verifier) }, {
      expiresAt: Date.now() + 10 * 60_000,
      ifRevision: 0,
    });
  }

  async takeAttempt(state: string): Promise<LoginAttempt | undefined> {
    const attempt = await this.#takeOnce<LoginAttempt>('login', sha256(state));
    return attempt ? { ...attempt, verifier: this.#keys.decrypt('login', attempt.verifier) } : undefined;
  }

  // ------------------------------------------------------------------ tokens

  async issueToken(user: string, name: string, ttlMs: number, kind: 'cli' | 'api', groups: readonly string[] = []): Promise<{ token: string; record: Token }> {
    const token = `gh_${randomSecret()}`;
    const id = sha256(token);
    const now = Date.now();
    const value: TokenValue = { user, name, created: now, expires: now + ttlMs, kind, ...(groups.length ? { groups } : {}) };
    const rec = await this.#store.put('token', id, value, { expiresAt: value.expires, ifRevision: 0 });
    this.#mirror.apply({ kind: 'token', id, revision: rec.revision, value, expiresAt: value.expires });
    return { token, record: { id, ...value } };
  }

  async findToken(token: string): Promise<Token | undefined> {
    if (!token.startsWith('gh_')) return undefined;
    const id = sha256(token);
    const value = await this.#mirror.lookup<TokenValue>('token', id);
    if (!value || Date.now() >= value.expires) return undefined;
    return { id, ...value };
  }

  async revokeToken(id: string): Promise<boolean> {
    const ok = await this.#store.delete('token', id);
    this.#mirror.apply({ kind: 'token', id, revision: Number.MAX_SAFE_INTEGER });
    return ok;
  }

  // ------------------------------------------------------------------ CLI sign-in codes

  async cliCode(user: string, groups: readonly string[], challenge: string, redirectUri: string): Promise<string> {
    const code = randomSecret();
    await this.#store.put('cli-code', sha256(code), { user, groups, challenge, redirectUri }, { expiresAt: Date.now() + 120_000, ifRevision: 0 });
    return code;
  }

  async redeemCliCode(code: string): Promise<CliCode | undefined> {
    return this.#takeOnce<CliCode>('cli-code', sha256(code));
  }
}

export interface CliCode {
  readonly user: string;
  readonly groups: string[];
  readonly challenge: string;
  readonly redirectUri: string;
}

export interface LoginAttempt {
  readonly nonce: string;
  readonly verifier: string;
  /** absolute https URL to return to: a route or the auth host */
  readonly returnTo: string;
  /** SHA-256 of the per-attempt browser cookie, so a stolen state cannot be completed in another browser */
  readonly binding: string;
  /** a CLI sign-in waiting for this login */
  readonly cli?: { readonly challenge: string; readonly redirectUri: string; readonly state: string };
}
