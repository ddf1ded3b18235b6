/**
 * Keys derived from `identity.secretsKey` (or, when it is absent, a random key generated once into the store):
 * one key per purpose (HKDF), for MACs over cookies and for encrypting secrets kept in the store.
 */
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { GatehouseError, type Secret } from '../core/index.ts';
import type { Store } from '../store/index.ts';

export class Keyring {
  readonly #root: Buffer;
  readonly #derived = new Map<string, Buffer>();

  private constructor(root: Buffer) {
    this.#root = root;
  }

  static fromSecret(secret: Secret | Buffer): Keyring {
    return new Keyring(Buffer.isBuffer(secret) ? secret : Buffer.from(secret.reveal(), 'utf8'));
  }

  /** The configured key, or the one generated into the store by the first process that needed it. */
  static async open(store: Store, configured: Secret | undefined): Promise<Keyring> {
    if (configured) return Keyring.fromSecret(configured);
    const existing = await store.get<{ key: string }>('meta', 'secrets-key');
    if (existing) return new Keyring(Buffer.from(existing.value.key, 'base64'));
    const key = randomBytes(32);
    try {
      await store.put('meta', 'secrets-key', { key: key.toString('base64') }, { ifRevision: 0 });
      return new Keyring(key);
    } catch (err) {
      if (!(err instanceof GatehouseError && err.code === 'ERR_STORE_CONFLICT')) throw err;
      const won = await store.get<{ key: string }>('meta', 'secrets-key');
      return new Keyring(Buffer.from(won!.value.key, 'base64'));
    }
  }

  #key(purpose: string): Buffer {
    let k = this.#derived.get(purpose);
    if (!k) {
      k = Buffer.from(hkdfSync('sha256', this.#root, 'gatehouse', purpose, 32));
      this.#derived.set(purpose, k);
    }
    return k;
  }

  mac(purpose: string, data: string): string {
    return createHmac('sha256', this.#key(purpose)).update(data).digest('base64url');
  }

  verifyMac(purpose: string, data: string, mac: string): boolean {
    const expected = Buffer.from(this.mac(purpose, data));
    const given = Buffer.from(mac);
    return expected.length === given.length && timingSafeEqual(expected, given);
  }

  encrypt(purpose: string, plaintext: string): string {
    const iv = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', this.#key(`enc:${purpose}`), iv);
    const body = Buffer.concat([c.update(plaintext, 'utf8'), c.final()]);
    return Buffer.concat([iv, c.getAuthTag(), body]).toString('base64url');
  }

  decrypt(purpose: string, sealed: string): string {
    const raw = Buffer.from(sealed, 'base64url');
    const d = createDecipheriv('aes-256-gcm', this.#key(`enc:${purpose}`), raw.subarray(0, 12));
    d.setAuthTag(raw.subarray(12, 28));
    return Buffer.concat([d.update(raw.subarray(28)), d.final()]).toString('utf8');
  }
}
