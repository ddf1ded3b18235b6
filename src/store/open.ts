import { resolve } from 'node:path';
import { GatehouseError } from '../core/index.ts';
import { openSqliteStore } from './sqlite/sqlite-store.ts';
import type { Store } from './store.ts';

/** The `store` section of the configuration: exactly one backend. */
export interface StoreConfig {
  sqlite?: { path: string };
  etcd?: unknown;
}

/** Opens the configured store; a relative SQLite path is taken from `baseDir` (the config file's folder). */
export async function openStore(config: StoreConfig, baseDir: string): Promise<Store> {
  if (config.etcd !== undefined) throw new GatehouseError('ERR_STORE_UNAVAILABLE', 'the etcd store is not available yet');
  if (config.sqlite === undefined) throw new TypeError('the store configuration names no backend (sqlite or etcd)');
  return openSqliteStore(resolve(baseDir, config.sqlite.path));
}
