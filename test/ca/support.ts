import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Keyring } from '../../src/authn/index.ts';
import { InternalCa } from '../../src/ca/index.ts';
import { GatehouseError, type ErrorCode } from '../../src/core/index.ts';
import { openSqliteStore, type SqliteStore } from '../../src/store/index.ts';

export { makeTempDir, openssl, run, revokedSerialsInText, listenLocal, type TempDir } from '../pki/support.ts';

/** The secrets key every test CA is sealed with (as if `identity.secretsKey` were configured). */
export const SECRET = Buffer.alloc(32, 7);

export interface CaWorld {
  readonly store: SqliteStore;
  readonly ca: InternalCa;
  readonly keyring: Keyring;
}

/** Store connections and CA services to close after the tests of a file. */
export class Worlds {
  readonly #open: CaWorld[] = [];

  /** A started CA service over the SQLite file `path` (a new connection each call: as another process would). */
  async open(path: string, options: { secret?: Buffer; secretsKeyConfigured?: boolean; deviceSubject?: { O?: string; OU?: string } } = {}): Promise<CaWorld> {
    const store = await openSqliteStore(path, { pollInterval: 20 });
    const keyring = Keyring.fromSecret(options.secret ?? SECRET);
    const ca = new InternalCa({
      store,
      keyring,
      secretsKeyConfigured: options.secretsKeyConfigured ?? true,
      ...(options.deviceSubject ? { deviceSubject: options.deviceSubject } : {}),
    });
    await ca.start();
    const world = { store, ca, keyring };
    this.#open.push(world);
    return world;
  }

  async closeAll(): Promise<void> {
    for (const w of this.#open.splice(0)) {
      w.ca.close();
      await w.store.close().catch(() => undefined);
    }
  }
}

export function dbPath(dir: string, name: string): string {
  return join(dir, name, 'gatehouse.db');
}

export async function refused(promise: Promise<unknown> | (() => unknown), code: ErrorCode): Promise<void> {
  const check = (err: unknown): boolean => {
    assert.ok(err instanceof GatehouseError, String(err));
    assert.equal(err.code, code, err.message);
    return true;
  };
  if (typeof promise === 'function') assert.throws(promise, check);
  else await assert.rejects(promise, check);
}

/** Polls `check` every 10 ms for up to `ms`. */
export async function eventually(check: () => boolean | Promise<boolean>, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`not true within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** An external root CA made with the real openssl, as a company CA would be. */
export async function opensslRoot(dir: { path: string; write(name: string, text: string): Promise<string> }, openssl: (...args: string[]) => Promise<string>, name = 'Corp Root'): Promise<{ cert: string; key: string }> {
  const key = join(dir.path, `${name.replace(/\W/g, '-')}.key`);
  const cert = join(dir.path, `${name.replace(/\W/g, '-')}.crt`);
  await openssl(
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert,
    '-subj', `/O=Corp/CN=${name}`, '-days', '30',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  );
  return { cert, key };
}
