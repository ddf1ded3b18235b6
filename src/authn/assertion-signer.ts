/**
 * The `X-Gatehouse-Jwt-Assertion` header and the keys behind `/.well-known/jwks.json`.
 *
 * Keys are ES256 (P-256) pairs kept in the store (kind `signing-key`), one per rotation period:
 * period p = floor(now / rotationMs) has the record `p-<p>`, created once by whichever process
 * gets there first (a create-only put; the losers read the winner), so every process signs with
 * the same key without talking to the others. The private key is stored sealed with the keyring
 * (purpose `signing-key`), never in the clear. The key of the current period signs; the JWKS
 * publishes it and the next period's key (so verifiers that cache the JWKS already know the key
 * that will sign after the switch), and for 15 minutes after a switch the previous key too (so
 * assertions signed just before the switch still verify).
 *
 * Signing is synchronous and never touches the store: keys are loaded at `start` and on rotation
 * (a timer at each period boundary, and whenever `sign` or `jwks` notices the period changed).
 * Tokens are cached per (session, route, audience) and reused until less than 60 s of their
 * lifetime remain, as long as the identity claims are unchanged.
 */
import { createHash, createPrivateKey, generateKeyPair, randomUUID, sign as signBytes, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import { GatehouseError, messageOf, type Logger } from '../core/index.ts';
import type { Store, StoreRecord } from '../store/index.ts';
import type { Keyring } from './keyring.ts';

/** The store kind of the signing keys, and the keyring purpose their private halves are sealed with. */
export const signingKeyKind = 'signing-key';
const sealPurpose = 'signing-key';

const minute = 60_000;
const defaultRotationMs = 7 * 24 * 60 * minute;
const maxLifetimeMs = 5 * minute;
/** How long after a switch the previous key stays in the JWKS. */
const previousKeyGraceMs = 15 * minute;
/** A cached token is re-signed once less than this much of its lifetime remains. */
const refreshBeforeMs = minute;
/** The timer looks at the store at least this often (it also fires at each period boundary). */
const maxCheckIntervalMs = 60 * minute;
/** After a failed rotation the timer tries again this soon; `sign` retries no more often either. */
const retryMs = 30_000;
const defaultMaxCachedTokens = 10_000;

const generateKeyPairAsync = promisify(generateKeyPair);

export interface AssertionSignerOptions {
  readonly store: Store;
  readonly keyring: Keyring;
  /** The length of one key period in milliseconds; at least 15 minutes. Default 7 days. */
  readonly rotationMs?: number;
  /** How long an assertion is valid (`exp - iat`), 1 s to 5 minutes. Default 5 minutes. */
  readonly lifetimeMs?: number;
  /** How many tokens the cache keeps (oldest evicted first); `0` turns the cache off. Default 10 000. */
  readonly maxCachedTokens?: number;
  /** The clock, in milliseconds since the epoch (tests inject one). Default `Date.now`. */
  readonly now?: () => number;
  readonly log?: Logger;
}

/** What one assertion says, and what it is cached under (`sessionId`, `routeName`, `audience`). */
export interface AssertionInput {
  /** `iss`: `https://AUTHHOST`. */
  readonly issuer: string;
  /** `aud`: the route host. */
  readonly audience: string;
  readonly subject: string;
  readonly email: string;
  readonly groups: readonly string[];
  readonly roles: readonly string[];
  /** Only a cache key: never put in the token. */
  readonly sessionId: string;
  /** Only a cache key: never put in the token. */
  readonly routeName: string;
}

/** A public key as published in the JWKS. */
export interface PublicSigningJwk {
  readonly kty: 'EC';
  readonly crv: 'P-256';
  readonly x: string;
  readonly y: string;
  readonly kid: string;
  readonly alg: 'ES256';
  readonly use: 'sig';
}

export interface Jwks {
  readonly keys: readonly PublicSigningJwk[];
}

/** The stored record. `kid` and `publicJwk` are for people reading the store; the sealed part is what counts. */
interface StoredSigningKey {
  readonly v: 1;
  readonly alg: 'ES256';
  readonly period: number;
  readonly kid: string;
  readonly publicJwk: { kty: 'EC'; crv: 'P-256'; x: string; y: string };
  /** `keyring.encrypt('signing-key', JSON.stringify({ period, jwk }))` with the private JWK. */
  readonly sealed: string;
}

type PrivateEcJwk = {
  kty: 'EC';
  crv: 'P-256';
  x: string;
  y: string;
  d: string;
};

interface SigningKey {
  readonly period: number;
  readonly kid: string;
  readonly publicJwk: PublicSigningJwk;
  readonly privateKey: KeyObject;
  /** The base64url JOSE header, ready to sign with. */
  readonly encodedHeader: string;
}

/** The keys in use, swapped whole when the period changes. */
interface KeyState {
  readonly period: number;
  readonly current: SigningKey;
  readonly next: SigningKey | undefined;
  readonly previous: SigningKey | undefined;
  readonly withPrevious: { readonly jwks: Jwks; readonly json: string };
  readonly withoutPrevious: { readonly jwks: Jwks; readonly json: string };
}

interface CachedToken {
  readonly token: string;
  /** ms: the token is re-signed from then on */
  readonly refreshAt: number;
  /** ms: `iat`; a clock that went back before it gets a fresh token */
  readonly issuedAt: number;
  readonly issuer: string;
  readonly subject: string;
  readonly email: string;
  readonly groups: readonly string[];
  readonly roles: readonly string[];
}

/** The record id of period `period`'s key. */
export function signingKeyId(period: number): string {
  return `p-${period}`;
}

/** RFC 7638 thumbprint (SHA-256, base64url) of a P-256 public key. */
export function ecJwkThumbprint(jwk: { crv: string; x: string; y: string }): string {
  const canonical = `{"crv":${JSON.stringify(jwk.crv)},"kty":"EC","x":${JSON.stringify(jwk.x)},"y":${JSON.stringify(jwk.y)}}`;
  return createHash('sha256').update(canonical).digest('base64url');
}

const knownOptions = ['store', 'keyring', 'rotationMs', 'lifetimeMs', 'maxCachedTokens', 'now', 'log'] as const;

function checkOptions(options: AssertionSignerOptions): void {
  if (typeof options !== 'object' || options === null) throw new TypeError('AssertionSigner options must be an object');
  for (const key of Object.keys(options)) {
    if ((knownOptions as readonly string[]).includes(key)) continue;
    const near = knownOptions.find((k) => k.toLowerCase().slice(0, 4) === key.toLowerCase().slice(0, 4));
    throw new TypeError(`unknown AssertionSigner option "${key}"${near ? ` (did you mean "${near}"?)` : ''}; known: ${knownOptions.join(', ')}`);
  }
  if (!options.store) throw new TypeError('AssertionSigner needs a store');
  if (!options.keyring) throw new TypeError('AssertionSigner needs a keyring');
  const int = (name: string, value: number | undefined, min: number, max: number): void => {
    if (value === undefined) return;
    if (!Number.isSafeInteger(value) || value < min || value > max) {
      throw new TypeError(`AssertionSigner option ${name} must be an integer from ${min} to ${max} (got ${String(value)})`);
    }
  };
  int('rotationMs', options.rotationMs, previousKeyGraceMs, Number.MAX_SAFE_INTEGER);
  int('lifetimeMs', options.lifetimeMs, 1000, maxLifetimeMs);
  int('maxCachedTokens', options.maxCachedTokens, 0, 10_000_000);
  if (options.now !== undefined && typeof options.now !== 'function') throw new TypeError('AssertionSigner option now must be a function');
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function isConflict(err: unknown): boolean {
  return err instanceof GatehouseError && err.code === 'ERR_STORE_CONFLICT';
}

function publishedJwks(keys: readonly (SigningKey | undefined)[]): { jwks: Jwks; json: string } {
  const seen = new Set<string>();
  const list: PublicSigningJwk[] = [];
  for (const k of keys) {
    if (!k || seen.has(k.kid)) continue;
    seen.add(k.kid);
    list.push(k.publicJwk);
  }
  const jwks: Jwks = Object.freeze({ keys: Object.freeze(list) });
  return { jwks, json: JSON.stringify(jwks) };
}

function buildState(period: number, current: SigningKey, next: SigningKey | undefined, previous: SigningKey | undefined): KeyState {
  return {
    period,
    current,
    next,
    previous,
    withPrevious: publishedJwks([current, next, previous]),
    withoutPrevious: publishedJwks([current, next]),
  };
}

export class AssertionSigner {
  readonly #store: Store;
  readonly #keyring: Keyring;
  readonly #rotationMs: number;
  readonly #lifetimeSeconds: number;
  readonly #refreshBeforeMs: number;
  readonly #maxCached: number;
  readonly #now: () => number;
  readonly #log: Logger | undefined;

  #state: KeyState | undefined;
  readonly #tokens = new Map<string, CachedToken>();
  #phase: 'new' | 'starting' | 'running' | 'closed' = 'new';
  #timer: NodeJS.Timeout | undefined;
  #inflight: { period: number; promise: Promise<void> } | undefined;
  /** ms before which `sign`/`jwks` do not start another rotation after a failure */
  #retryAfter = 0;
  /** the period for which a missing key was last reported */
  #reportedMissing = -1;

  constructor(options: AssertionSignerOptions) {
    checkOptions(options);
    this.#store = options.store;
    this.#keyring = options.keyring;
    this.#rotationMs = options.rotationMs ?? defaultRotationMs;
    const lifetimeMs = options.lifetimeMs ?? maxLifetimeMs;
    this.#lifetimeSeconds = Math.floor(lifetimeMs / 1000);
    this.#refreshBeforeMs = Math.min(refreshBeforeMs, Math.floor(lifetimeMs / 2));
    this.#maxCached = options.maxCachedTokens ?? defaultMaxCachedTokens;
    this.#now = options.now ?? Date.now;
    this.#log = options.log;
  }

  /** Loads (creating when absent) the keys of this period and the next, and starts the rotation timer. */
  async start(): Promise<void> {
    if (this.#phase !== 'new') throw new GatehouseError('ERR_NOT_READY', `assertion signer cannot start: it is ${this.#phase}`);
    this.#phase = 'starting';
    try {
      await this.rotate();
    } catch (err) {
      if (!this.#isClosed()) this.#phase = 'new'; // may be started again
      throw err;
    }
    if (this.#isClosed()) return; // closed while starting
    this.#phase = 'running';
    this.#schedule(this.#untilNextCheck());
  }

  /** Stops the timer and waits for a rotation in flight. Later calls to `sign` and `jwks` fail. */
  async close(): Promise<void> {
    this.destroy();
    await this.#inflight?.promise.catch(() => undefined);
  }

  #isClosed(): boolean {
    return this.#phase === 'closed';
  }

  /** Stops the timer now. Later calls to `sign` and `jwks` fail. */
  destroy(): void {
    this.#phase = 'closed';
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#tokens.clear();
  }

  /**
   * Makes sure the keys of the current period and the next exist in the store and are loaded
   * (the timer and `sign` call it by themselves; exposed for tests and for an operator's "rotate
   * now"). Concurrent calls for the same period share one run.
   */
  rotate(): Promise<void> {
    if (this.#phase === 'closed') return Promise.reject(new GatehouseError('ERR_NOT_READY', 'assertion signer is closed'));
    const period = this.#periodOf(this.#now());
    const running = this.#inflight;
    if (running?.period === period) return running.promise;
    // A run for another period finishes first (so states install in order), then this one.
    const promise = (running ? running.promise.catch(() => undefined) : Promise.resolve())
      .then(() => this.#load(period))
      .finally(() => {
        if (this.#inflight?.promise === promise) this.#inflight = undefined;
      });
    this.#inflight = { period, promise };
    return promise;
  }

  /** A compact JWT for the upstream, from the cache when a fresh enough one exists. Synchronous; no store access. */
  sign(input: AssertionInput): string {
    const now = this.#now();
    const state = this.#stateAt(now);
    const cacheKey = `${input.sessionId}\n${input.routeName}\n${input.audience}`;
    const hit = this.#maxCached > 0 ? this.#tokens.get(cacheKey) : undefined;
    if (
      hit &&
      now < hit.refreshAt &&
      now >= hit.issuedAt &&
      hit.issuer === input.issuer &&
      hit.subject === input.subject &&
      hit.email === input.email &&
      sameList(hit.groups, input.groups) &&
      sameList(hit.roles, input.roles)
    ) {
      return hit.token;
    }
    const iat = Math.floor(now / 1000);
    const exp = iat + this.#lifetimeSeconds;
    const token = this.#signWith(state.current, {
      iss: input.issuer,
      aud: input.audience,
      sub: input.subject,
      email: input.email,
      groups: input.groups,
      roles: input.roles,
      iat,
      nbf: iat,
      exp,
      jti: randomUUID(),
    });
    if (this.#maxCached > 0) {
      if (hit) this.#tokens.delete(cacheKey);
      else if (this.#tokens.size >= this.#maxCached) this.#tokens.delete(this.#tokens.keys().next().value as string);
      this.#tokens.set(cacheKey, {
        token,
        refreshAt: exp * 1000 - this.#refreshBeforeMs,
        issuedAt: iat * 1000,
        issuer: input.issuer,
        subject: input.subject,
        email: input.email,
        // copies: a caller that later changes its arrays in place must not make a stale token look current
        groups: [...input.groups],
        roles: [...input.roles],
      });
    }
    return token;
  }

  /** The public keys: current, next, and the previous one for 15 minutes after a switch. */
  jwks(): Jwks {
    return this.#published().jwks;
  }

  /** `jwks()` as JSON text, computed once per key change: serve it as is. */
  jwksJson(): string {
    return this.#published().json;
  }

  /** The `kid` that signs now (for logs and the dashboard). */
  currentKid(): string {
    return this.#stateAt(this.#now()).current.kid;
  }

  #published(): { jwks: Jwks; json: string } {
    const now = this.#now();
    const state = this.#stateAt(now);
    const inGrace = state.previous !== undefined && now < this.#periodStart(this.#periodOf(now)) + previousKeyGraceMs;
    return inGrace ? state.withPrevious : state.withoutPrevious;
  }

  #periodOf(ms: number): number {
    return Math.floor(ms / this.#rotationMs);
  }

  #periodStart(period: number): number {
    return period * this.#rotationMs;
  }

  /** The state for `now`, switching to the next key by itself when its period has begun. */
  #stateAt(now: number): KeyState {
    const state = this.#state;
    if (!state || this.#phase === 'closed') {
      throw new GatehouseError('ERR_NOT_READY', this.#phase === 'closed' ? 'assertion signer is closed' : 'assertion signer has not started');
    }
    const period = this.#periodOf(now);
    if (period === state.period) return state;
    if (state.next && state.next.period === period) {
      const switched = buildState(period, state.next, undefined, state.current);
      this.#install(switched);
      this.#rotateInBackground(now);
      return switched;
    }
    // The key for this period is not loaded (the store was unreachable for a whole period, or the
    // clock jumped): keep signing with the newest key held, which this JWKS still publishes.
    if (this.#reportedMissing !== period) {
      this.#reportedMissing = period;
      this.#log?.warn('signing_key_missing', { period, signingWith: state.current.kid });
    }
    this.#rotateInBackground(now);
    return state;
  }

  #rotateInBackground(now: number): void {
    if (now < this.#retryAfter || this.#inflight?.period === this.#periodOf(now)) return;
    this.rotate().catch((err: unknown) => {
      this.#retryAfter = this.#now() + retryMs;
      this.#log?.warn('signing_key_rotation_failed', { error: messageOf(err) });
    });
  }

  #install(state: KeyState): void {
    const before = this.#state;
    if (this.#phase === 'closed') return;
    if (before && state.period < before.period) return; // a slow rotation finished after a newer one
    this.#state = state;
    if (before && before.current.kid !== state.current.kid) {
      this.#tokens.clear();
      this.#log?.info('signing_key_rotated', { period: state.period, kid: state.current.kid, previousKid: before.current.kid });
    }
  }

  async #load(period: number): Promise<void> {
    if (this.#phase === 'closed') throw new GatehouseError('ERR_NOT_READY', 'assertion signer is closed');
    const [current, next] = await Promise.all([this.#ensure(period), this.#ensure(period + 1)]);
    let previous: SigningKey | undefined;
    if (this.#now() < this.#periodStart(period) + previousKeyGraceMs) previous = this.#held(period - 1) ?? (await this.#find(period - 1));
    this.#install(buildState(period, current, next, previous));
  }

  /** The key of `period` if this process holds it already (keys never change once written). */
  #held(period: number): SigningKey | undefined {
    const state = this.#state;
    if (!state) return undefined;
    for (const k of [state.current, state.next, state.previous]) if (k?.period === period) return k;
    return undefined;
  }

  /** The key of `period` from the store, or `undefined` when absent or unusable. */
  async #find(period: number): Promise<SigningKey | undefined> {
    const record = await this.#store.get<StoredSigningKey>(signingKeyKind, signingKeyId(period));
    return record ? this.#open(record, period) : undefined;
  }

  /** The key of `period`, created in the store when absent; every process ends up with the same one. */
  async #ensure(period: number): Promise<SigningKey> {
    const held = this.#held(period);
    if (held) return held;
    const id = signingKeyId(period);
    const existing = await this.#store.get<StoredSigningKey>(signingKeyKind, id);
    if (existing) {
      const opened = this.#open(existing, period);
      if (opened) return opened;
      // Sealed with another secrets key (identity.secretsKey changed) or damaged: nobody here can
      // sign with it, so it is replaced, only if nobody replaced it first.
      this.#log?.warn('signing_key_unusable', { id, action: 'replacing it' });
    }
    const { stored, key } = await this.#generate(period);
    // Kept until no process can need it: it is current in `period`, previous for a while after.
    const expiresAt = this.#periodStart(period + 2) + previousKeyGraceMs;
    try {
      await this.#store.put(signingKeyKind, id, stored, { ifRevision: existing?.revision ?? 0, expiresAt });
      this.#log?.info('signing_key_created', { id, kid: key.kid });
      return key;
    } catch (err) {
      if (!isConflict(err)) throw err;
    }
    const winner = await this.#store.get<StoredSigningKey>(signingKeyKind, id);
    const opened = winner && this.#open(winner, period);
    if (!opened) throw new GatehouseError('ERR_INTERNAL', `signing key ${id}: another process wrote a key this process cannot read (is identity.secretsKey the same everywhere?)`);
    return opened;
  }

  async #generate(period: number): Promise<{ stored: StoredSigningKey; key: SigningKey }> {
    const { privateKey } = await generateKeyPairAsync('ec', { namedCurve: 'P-256' });
    const jwk = privateKey.export({ format: 'jwk' }) as PrivateEcJwk;
    const kid = ecJwkThumbprint(jwk);
    const stored: StoredSigningKey = {
      v: 1,
      alg: 'ES256',
      period,
      kid,
      publicJwk: { kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y },
      sealed: this.#keyring.encrypt(sealPurpose, JSON.stringify({ period, jwk })),
    };
    return { stored, key: this.#keyFrom(period, jwk, privateKey) };
  }

  /** The key in a record, checked: sealed by our keyring, for this period, a P-256 key. `undefined` otherwise. */
  #open(record: StoreRecord<StoredSigningKey>, period: number): SigningKey | undefined {
    try {
      const opened = JSON.parse(this.#keyring.decrypt(sealPurpose, record.value.sealed)) as { period: number; jwk: PrivateEcJwk };
      const jwk = opened.jwk;
      if (opened.period !== period || jwk.kty !== 'EC' || jwk.crv !== 'P-256') return undefined;
      return this.#keyFrom(period, jwk, createPrivateKey({ key: jwk, format: 'jwk' }));
    } catch (err) {
      this.#log?.debug('signing_key_unreadable', { id: record.id, error: messageOf(err) });
      return undefined;
    }
  }

  #keyFrom(period: number, jwk: PrivateEcJwk, privateKey: KeyObject): SigningKey {
    const kid = ecJwkThumbprint(jwk);
    const publicJwk: PublicSigningJwk = Object.freeze({ kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y, kid, alg: 'ES256', use: 'sig' });
    const encodedHeader = Buffer.from(JSON.stringify({ alg: 'ES256', kid, typ: 'JWT' })).toString('base64url');
    return { period, kid, publicJwk, privateKey, encodedHeader };
  }

  #signWith(key: SigningKey, claims: Record<string, unknown>): string {
    const input = `${key.encodedHeader}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
    const signature = signBytes('sha256', Buffer.from(input), { key: key.privateKey, dsaEncoding: 'ieee-p1363' });
    return `${input}.${signature.toString('base64url')}`;
  }

  #untilNextCheck(): number {
    const now = this.#now();
    const untilBoundary = this.#periodStart(this.#periodOf(now) + 1) - now;
    return Math.max(1000, Math.min(untilBoundary + 1, maxCheckIntervalMs));
  }

  #schedule(delay: number): void {
    if (this.#phase !== 'running') return;
    this.#timer = setTimeout(() => void this.#tick(), delay);
    this.#timer.unref();
  }

  async #tick(): Promise<void> {
    let delay: number;
    try {
      await this.rotate();
      delay = this.#untilNextCheck();
    } catch (err) {
      this.#log?.warn('signing_key_rotation_failed', { error: messageOf(err) });
      delay = retryMs;
    }
    this.#schedule(delay);
  }
}
