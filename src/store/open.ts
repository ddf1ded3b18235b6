import { resolve } from 'node:path';
import { openEtcdStore } from './etcd/etcd-store.ts';
import { openSqliteStore } from './sqlite/sqlite-store.ts';
import type { Store } from './store.ts';

/** The `store` section of the configuration: exactly one backend. */
export interface StoreConfig {
  sqlite?: { path: string };
  etcd?: { endpoints: readonly string[]; prefix?: string; tls?: { ca?: string; cert?: string; key?: string } };
}

/** Opens the configured store; relative paths (the SQLite file, etcd's TLS files) are taken from `baseDir` (the config file's folder). */
export async function openStore(config: StoreConfig, baseDir: string): Promise<Store> {
  if (config.sqlite !== undefined && config.etcd !== undefined) throw new TypeError('the store configuration names two backends; choose sqlite or etcd');
  if (config.etcd !== undefined) {
    const { tls, ...rest } = config.etcd;
    const files = tls && Object.fromEntries(Object.entries(tls).map(([name, file]) => [name, file === undefined ? undefined : resolve(baseDir, file)]));
    return openEtcdStore({ ...rest, ...(files ? { tls: files } : {}) });
  }
  if (config.sqlite === undefined) throw new TypeError('the store configuration names no backend (sqlite or etcd)');
  return openSqliteStore(resolve(baseDir, config.sqlite.path));
}
