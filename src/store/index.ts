export type {
  DeleteOptions,
  ListOptions,
  PutOptions,
  Store,
  StoreChange,
  StoreOp,
  StoreRecord,
  StoreResync,
  StoreWatcher,
} from './store.ts';
export { newId, idTime } from './id.ts';
export { openStore, type StoreConfig } from './open.ts';
export { openSqliteStore, type SqliteStore, type SqliteStoreOptions } from './sqlite/sqlite-store.ts';
export { openEtcdStore, type EtcdStore, type EtcdStoreOptions } from './etcd/etcd-store.ts';
export { StoreMirror, type StoreMirrorOptions } from './mirror.ts';
