import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { calculateJwkThumbprint, createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JSONWebKeySet, type JWTPayload } from 'jose';
import { AssertionSigner, Keyring, signingKeyId, signingKeyKind, type AssertionInput, type AssertionSignerOptions } from '../../../src/authn/index.ts';
import { GatehouseError, Logger, type ErrorCode } from '../../../src/core/index.ts';
import { openSqliteStore, type SqliteStore, type Store } from '../../../src/store/index.ts';
import { tempDir } from '../../harness/tmp.ts';

const tmp = tempDir('gatehouse-assertion-');
after(() => tmp.cleanup());
let dbCounter = 0;
const stores: SqliteStore[] = [];
after(async () => {
  for (const s of stores) await s.close().catch(() => undefined);
});

async function freshStore(): Promise<{ store: SqliteStore; path: string }> {
  const path = join(tmp.dir, `db${++dbCounter}`, 'gatehouse.db');
  const store = await openSqliteStore(path);
  stores.push(store);
  return { store, path };
}

async function sameStore(path: string): Promise<SqliteStore> {
  const store = await openSqliteStore(path);
  stores.push(store);
  return store;
}

const keyring = Keyring.fromSecret(Buffer.alloc(32, 7));
const minute = 60_000;
const week = 7 * 24 * 60 * minute;
/**
 * A moment well inside a 7-day period (3 days after its start), not before the real time: the store
 * expires records by the real clock, and the signer sets their expiry by its own.
 */
const t0 = (Math.floor(Date.now() / week) + 1) * week + 3 * 24 * 60 * minute;

/** `store` with some methods replaced (a Proxy: the store's own methods need their real receiver). */
function wrapStore(store: Store, overrides: Partial<Store>): Store {
  return new Proxy(store, {
    get(target, name) {
      if (Object.hasOwn(overrides, name)) return overrides[name as keyof Store];
      const v = Reflect.get(target, name, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

class Clock {
  constructor(public ms: number) {}
  now = (): number => this.ms;
  advance(ms: number): void {
    this.ms += ms;
  }
}

const input: AssertionInput = {
  issuer: 'https://auth.corp.test',
  audience: 'app.corp.test',
  subject: 'user-123',
  email: 'alice@corp.test',
  groups: ['eng', 'ops'],
  roles: ['developers'],
  sessionId: 'sess-1',
  routeName: 'app',
};

const signers: AssertionSigner[] = [];
after(async () => {
  for (const s of signers) await s.close();
});

async function started(options: Partial<AssertionSignerOptions> & { store: Store }, clock?: Clock): Promise<AssertionSigner> {
  const signer = new AssertionSigner({ keyring, now: clock?.now, ...options });
  signers.push(signer);
  await signer.start();
  return signer;
}

async function verify(token: string, jwks: JSONWebKeySet, at: number, expect: { issuer?: string; audience?: string } = {}): Promise<JWTPayload> {
  const { payload } = await jwtVerify(token, createLocalJWKSet(jwks), {
    issuer: expect.issuer ?? input.issuer,
    audience: expect.audience ?? input.audience,
    algorithms: ['ES256'],
    currentDate: new Date(at),
  });
  return payload;
}

function jwksOf(signer: AssertionSigner): JSONWebKeySet {
  return structuredClone(signer.jwks()) as unknown as JSONWebKeySet;
}

function kids(signer: AssertionSigner): string[] {
  return signer.jwks().keys.map((k) => k.kid);
}

/** Waits (without timers: mocked ones would stall it) until `condition` holds. */
async function until(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

function codeOf(err: unknown): ErrorCode | undefined {
  return err instanceof GatehouseError ? err.code : undefined;
}

function rejectsCode(code: ErrorCode): (err: unknown) => boolean {
  return (err) => codeOf(err) === code;
}

describe('AssertionSigner', () => {
  it('signs an ES256 JWT that verifies against its JWKS with the right issuer and audience', async () => {
    const clock = new Clock(t0);
    const { store } = await freshStore();
    const signer = await started({ store }, clock);
    const token = signer.sign(input);

    const header = decodeProtectedHeader(token);
    assert.deepEqual(header, { alg: 'ES256', kid: signer.currentKid(), typ: 'JWT' });

    const payload = await verify(token, jwksOf(signer), clock.ms);
    assert.equal(payload.iss, input.issuer);
    assert.equal(payload.aud, input.audience);
    assert.equal(payload.sub, input.subject);
    assert.equal(payload.email, input.email);
    assert.deepEqual(payload.groups, input.groups);
    assert.deepEqual(payload.roles, input.roles);
    assert.equal(payload.iat, Math.floor(t0 / 1000));
    assert.equal(payload.nbf, payload.iat);
    assert.ok(payload.exp! > payload.iat! && payload.exp! - payload.iat! <= 300, `exp - iat = ${payload.exp! - payload.iat!}`);
    assert.match(String(payload.jti), /^[0-9a-f-]{36}$/);
    assert.deepEqual(Object.keys(payload).sort(), ['aud', 'email', 'exp', 'groups', 'iat', 'iss', 'jti', 'nbf', 'roles', 'sub']);
    assert.ok(!JSON.stringify(payload).includes(input.sessionId), 'the session id stays out of the token');

    await assert.rejects(verify(token, jwksOf(signer), clock.ms, { audience: 'other.corp.test' }), { code: 'ERR_JWT_CLAIM_VALIDATION_FAILED' });
    await assert.rejects(verify(token, jwksOf(signer), clock.ms, { issuer: 'https://evil.test' }), { code: 'ERR_JWT_CLAIM_VALIDATION_FAILED' });
    await assert.rejects(verify(token, jwksOf(signer), clock.ms + 5 * minute + 1000), { code: 'ERR_JWT_EXPIRED' });
  });

  it('honours a shorter lifetime and gives every signed token its own jti', async () => {
    const clock = new Clock(t0);
    const { store } = await freshStore();
    const signer = await started({ store, lifetimeMs: 120_000, maxCachedTokens: 0 }, clock);
    const a = await verify(signer.sign(input), jwksOf(signer), clock.ms);
    const b = await verify(signer.sign(input), jwksOf(signer), clock.ms);
    assert.equal(a.exp! - a.iat!, 120);
    assert.notEqual(a.jti, b.jti);
  });

  it('publishes the current and next keys as public JWKs with RFC 7638 thumbprints as kid', async () => {
    const clock = new Clock(t0);
    const { store } = await freshStore();
    const signer = await started({ store }, clock);
    const { keys } = signer.jwks();
    assert.equal(keys.length, 2);
    assert.equal(keys[0]!.kid, signer.currentKid());
    for (const k of keys) {
      assert.deepEqual(Object.keys(k).sort(), ['alg', 'crv', 'kid', 'kty', 'use', 'x', 'y']);
      assert.equal(k.alg, 'ES256');
      assert.equal(k.use, 'sig');
      assert.equal(k.crv, 'P-256');
      assert.equal(k.kid, await calculateJwkThumbprint({ kty: k.kty, crv: k.crv, x: k.x, y: k.y }, 'sha256'));
    }
    assert.equal(signer.jwksJson(), JSON.stringify(signer.jwks()));
    assert.equal(signer.jwksJson(), signer.jwksJson());

    const period = Math.floor(t0 / week);
    const stored = await store.list<{ kid: string }>(signingKeyKind);
    assert.deepEqual(stored.map((r) => r.id).sort(), [signingKeyId(period), signingKeyId(period + 1)].sort());
    assert.deepEqual(stored.map((r) => r.value.kid).sort(), kids(signer).sort());
    for (const r of stored) assert.ok(r.expiresAt !== undefined && r.expiresAt > clock.ms + week, 'the key records expire, after they stop being needed');
  });

  it('reuses a cached token and signs a fresh one when less than 60 s of its lifetime remain', async () => {
    const clock = new Clock(t0);
    const { store } = await freshStore();
    const signer = await started({ store }, clock);
    const first = signer.sign(input);
    assert.equal(signer.sign({ ...input, groups: [...input.groups] }), first, 'equal claims hit the cache');
    clock.advance(3 * minute);
    assert.equal(signer.sign(input), first, 'still 2 minutes left');
    clock.advance(59_000);
    assert.equal(signer.sign(input), first, '61 s left');
    clock.advance(1000);
    const second = signer.sign(input);
    assert.notEqual(second, first, '60 s left: re-signed');
    const payload = await verify(second, jwksOf(signer), clock.ms);
    assert.equal(payload.iat, Math.floor(clock.ms / 1000));
    assert.equal(signer.sign(input), second);
  });

  it('keys the cache by session, route and audience, and re-signs when the identity claims change', async () => {
    const clock = new Clock(t0);
    const { store } = await freshStore();
    const signer = await started({ store }, clock);
    const base = signer.sign(input);
    const variants = [
      { ...input, sessionId: 'sess-2' },
      { ...input, routeName: 'other' },
      { ...input, audience: 'alias.corp.test' },
      { ...input, roles: ['developers', 'admins'] },
      { ...input, groups: ['eng'] },
      { ...input, email: 'alice@other.test' },
      { ...input, subject: 'user-456' },
      { ...input, issuer: 'https://auth2.corp.test' },
    ];
    for (const v of variants) assert.notEqual(signer.sign(v), base, JSON.stringify(v));
    const changed = { ...input, roles: ['developers', 'admins'] };
    const payload = await verify(signer.sign(changed), jwksOf(signer), clock.ms);
    assert.deepEqual(payload.roles, ['developers', 'admins'], 'a role change shows up at once, not after the cached token ages out');
  });

  it('does not take a caller changing its arrays in place for an unchanged identity', async () => {
    const clock = new Clock(t0);
    const { store } = await freshStore();
    const signer = await started({ store }, clock);
    const roles = ['developers'];
    const first = signer.sign({ ...input, roles });
    roles.push('admins');
    const second = signer.sign({ ...input, roles });
    assert.notEqual(second, first);
    assert.deepEqual((await verify(second, jwksOf(signer), clock.ms)).roles, ['developers', 'admins']);
  });

  it('bounds the cache, evicting the oldest entry', async () => {
    const clock = new Clock(t0);
    const { store } = await freshStore();
    const signer = await started({ store, maxCachedTokens: 2 }, clock);
    const a = signer.sign({ ...input, sessionId: 'a' });
    const b = signer.sign({ ...input, sessionId: 'b' });
    signer.sign({ ...input, sessionId: 'c' });
    assert.equal(signer.sign({ ...input, sessionId: 'b' }), b);
    assert.notEqual(signer.sign({ ...input, sessionId: 'a' }), a, 'a was evicted');
  });

  it('two signers on the same store agree on the keys', async () => {
    const clock = new Clock(t0);
    const { store, path } = await freshStore();
    const other = await sameStore(path);
    const [one, two] = await Promise.all([started({ store }, clock), started({ store: other }, clock)]);
    assert.deepEqual(kids(one), kids(two));
    assert.equal(one.jwksJson(), two.jwksJson());
    assert.equal(one.currentKid(), two.currentKid());
    await verify(one.sign(input), jwksOf(two), clock.ms);
    await verify(two.sign(input), jwksOf(one), clock.ms);
    const third = await started({ store: await sameStore(path) }, clock);
    assert.deepEqual(kids(third), kids(one));
  });

  it('a process that loses the race to create a key reads and uses the winner', async () => {
    const clock = new Clock(t0);
    const { store } = await freshStore();
    const winner = await started({ store }, clock);
    // The loser looked before the winner wrote: its first look finds nothing, so its create-only put conflicts.
    const hidden = new Set<string>();
    const racing = wrapStore(store, {
      get: async <T>(kind: string, id: string) => {
        if (kind === signingKeyKind && !hidden.has(id)) {
          hidden.add(id);
          return undefined;
        }
        return store.get<T>(kind, id);
      },
    });
    const loser = await started({ store: racing }, clock);
    assert.equal(hidden.size, 2);
    assert.deepEqual(kids(loser), kids(winner));
    await verify(loser.sign(input), jwksOf(winner), clock.ms);
  });

  it('rotates by period: the next key becomes current, a new next appears, and the previous one stays for 15 minutes', async () => {
    const clock = new Clock(t0);
    const { store, path } = await freshStore();
    const signer = await started({ store }, clock);
    const [current, next] = kids(signer);
    const before = signer.sign(input);

    // 2 s before the switch: an assertion signed now must outlive the switch.
    const boundary = (Math.floor(t0 / week) + 1) * week;
    clock.ms = boundary - 2000;
    const lastOld = signer.sign({ ...input, sessionId: 'late' });
    assert.equal(decodeProtectedHeader(lastOld).kid, current);

    clock.ms = boundary + 1000;
    const after = signer.sign(input);
    assert.notEqual(after, before, 'the cache does not outlive the key');
    assert.equal(decodeProtectedHeader(after).kid, next, 'the old next key signs, switched without waiting for the store');
    await until(() => kids(signer).length === 3, 'the rotation `sign` started in the background');
    const rotated = kids(signer);
    assert.equal(rotated.length, 3);
    assert.equal(rotated[0], next);
    assert.ok(!rotated.slice(0, 2).includes(current!), 'a new next key');
    assert.equal(rotated[2], current, 'the previous key is still published');

    await verify(lastOld, jwksOf(signer), clock.ms);
    await verify(after, jwksOf(signer), clock.ms);

    // A process that starts now sees the same three keys.
    const late = await started({ store: await sameStore(path) }, clock);
    assert.deepEqual(kids(late), rotated);

    clock.ms = boundary + 15 * minute;
    assert.deepEqual(kids(signer), rotated.slice(0, 2), 'the previous key is gone after 15 minutes');
    assert.deepEqual(kids(late), rotated.slice(0, 2));
    assert.equal(signer.currentKid(), next);
  });

  it('keeps signing after the clock jumps several periods, and catches up with the store', async () => {
    const clock = new Clock(t0);
    const { store, path } = await freshStore();
    const signer = await started({ store }, clock);
    const held = signer.currentKid();
    clock.advance(3 * week);
    const token = signer.sign(input);
    assert.equal(decodeProtectedHeader(token).kid, held, 'the newest key held signs until the right one is loaded');
    await verify(token, jwksOf(signer), clock.ms);
    await until(() => signer.currentKid() !== held, 'the catch-up rotation');
    const fresh = await started({ store: await sameStore(path) }, clock);
    assert.deepEqual(kids(signer), kids(fresh), 'the same keys as a process started now');
    await verify(signer.sign(input), jwksOf(fresh), clock.ms);
  });

  it('the rotation timer loads the next period’s keys at the boundary by itself', async (t) => {
    const clock = new Clock(t0);
    const { store } = await freshStore();
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const signer = await started({ store, rotationMs: 60 * minute }, clock);
    const [, next] = kids(signer);
    const untilBoundary = (Math.floor(t0 / (60 * minute)) + 1) * 60 * minute - t0;
    clock.advance(untilBoundary + 1);
    t.mock.timers.tick(untilBoundary + 1);
    await until(() => kids(signer).length === 3, 'current, new next, previous');
    assert.equal(kids(signer)[0], next);
    assert.equal(signer.currentKid(), next);
  });

  it('keeps the private key out of the store in the clear', async () => {
    const clock = new Clock(t0);
    const { store, path } = await freshStore();
    const signer = await started({ store }, clock);
    signer.sign(input);
    const records = await store.list<{ sealed: string; publicJwk: { x: string } }>(signingKeyKind);
    assert.equal(records.length, 2);
    const dir = join(path, '..');
    const bytes = Buffer.concat(readdirSync(dir).map((f) => readFileSync(join(dir, f))));
    for (const r of records) {
      const { jwk } = JSON.parse(keyring.decrypt('signing-key', r.value.sealed)) as { jwk: { d: string; x: string } };
      assert.ok(bytes.includes(Buffer.from(jwk.x)), 'the scan does see the store contents (public x is in the clear)');
      assert.ok(!bytes.includes(Buffer.from(jwk.d)), 'no private d (base64url) in the database files');
      assert.ok(!bytes.includes(Buffer.from(jwk.d, 'base64url')), 'no private d (raw bytes) in the database files');
      assert.ok(!JSON.stringify(r.value).includes(jwk.d));
    }
  });

  it('rejects a tampered token', async () => {
    const clock = new Clock(t0);
    const { store } = await freshStore();
    const signer = await started({ store }, clock);
    const token = signer.sign(input);
    const [h, p, s] = token.split('.') as [string, string, string];
    const claims = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>;
    const forged = Buffer.from(JSON.stringify({ ...claims, roles: ['root'] })).toString('base64url');
    await assert.rejects(verify(`${h}.${forged}.${s}`, jwksOf(signer), clock.ms), { code: 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED' });
    const flipped = (s[0] === 'A' ? 'B' : 'A') + s.slice(1);
    await assert.rejects(verify(`${h}.${p}.${flipped}`, jwksOf(signer), clock.ms), { code: 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED' });
    const otherStore = (await freshStore()).store;
    const stranger = await started({ store: otherStore }, clock);
    await assert.rejects(verify(token, jwksOf(stranger), clock.ms), { code: 'ERR_JWKS_NO_MATCHING_KEY' });
  });

  it('replaces a key it cannot decrypt (the secrets key changed) and says so', async () => {
    const clock = new Clock(t0);
    const { store } = await freshStore();
    const old = await started({ store }, clock);
    const lines: string[] = [];
    const log = new Logger({ sink: { write: (chunk) => void lines.push(chunk) } });
    const signer = new AssertionSigner({ store, keyring: Keyring.fromSecret(Buffer.alloc(32, 8)), now: clock.now, log });
    signers.push(signer);
    await signer.start();
    log.flush();
    assert.equal(lines.join('').match(/signing_key_unusable/g)?.length, 2);
    assert.equal(kids(signer).filter((k) => kids(old).includes(k)).length, 0);
    await verify(signer.sign(input), jwksOf(signer), clock.ms);
  });

  it('does no I/O in the constructor, and fails clearly before start and after close', async () => {
    const clock = new Clock(t0);
    const { store } = await freshStore();
    let calls = 0;
    const counting = new Proxy(store, {
      get(target, name) {
        const v = Reflect.get(target, name, target) as unknown;
        return typeof v === 'function' ? (...args: unknown[]) => (calls++, (v as (...a: unknown[]) => unknown).apply(target, args)) : v;
      },
    });
    const signer = new AssertionSigner({ store: counting, keyring, now: clock.now });
    assert.equal(calls, 0);
    assert.throws(() => signer.sign(input), rejectsCode('ERR_NOT_READY'));
    assert.throws(() => signer.jwks(), rejectsCode('ERR_NOT_READY'));
    await signer.start();
    assert.ok(calls > 0);
    const before = calls;
    for (let i = 0; i < 50; i++) signer.sign({ ...input, sessionId: `s${i}` });
    signer.jwksJson();
    assert.equal(calls, before, 'signing and serving the JWKS never touch the store');
    await assert.rejects(signer.start(), rejectsCode('ERR_NOT_READY'));
    await signer.close();
    assert.throws(() => signer.sign(input), rejectsCode('ERR_NOT_READY'));
    assert.throws(() => signer.jwksJson(), rejectsCode('ERR_NOT_READY'));
    await assert.rejects(signer.rotate(), rejectsCode('ERR_NOT_READY'));
  });

  it('checks its options at construction', async () => {
    const { store } = await freshStore();
    assert.throws(() => new AssertionSigner({ store, keyring, rotationMS: 1 } as unknown as AssertionSignerOptions), /did you mean "rotationMs"/);
    assert.throws(() => new AssertionSigner({ store, keyring, lifetimeMs: 10 * minute }), TypeError);
    assert.throws(() => new AssertionSigner({ store, keyring, rotationMs: minute }), TypeError);
    assert.throws(() => new AssertionSigner({ store, keyring, maxCachedTokens: -1 }), TypeError);
  });
});
