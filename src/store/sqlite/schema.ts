import type Database from 'better-sqlite3';
import { GatehouseError } from '../../core/index.ts';

/**
 * The SQLite layout, version 1 (`PRAGMA user_version`).
 *
 * - `records`: the live state, one row per (kind, id), `value` JSON text.
 * - `changes`: the change log watchers poll, one row per changed record, keyed by revision.
 *   Pruned from the oldest end; `meta.compacted` is the highest revision that may be missing.
 * - `meta`: `revision` (the store-wide counter, one step per write transaction) and `compacted`.
 */
export const schemaVersion = 1;

const createV1 = `
  CREATE TABLE records (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    value TEXT NOT NULL,
    revision INTEGER NOT NULL,
    expires_at INTEGER,
    PRIMARY KEY (kind, id)
  ) WITHOUT ROWID;
  CREATE INDEX records_expires_at ON records (expires_at) WHERE expires_at IS NOT NULL;
  CREATE TABLE changes (
    revision INTEGER NOT NULL,
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    value TEXT,
    expires_at INTEGER,
    at INTEGER NOT NULL,
    PRIMARY KEY (revision, kind, id)
  ) WITHOUT ROWID;
  CREATE INDEX changes_at ON changes (at);
  CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
  INSERT INTO meta (key, value) VALUES ('revision', 0), ('compacted', 0);
`;

/** Creates the tables in a new database; checks the version of an existing one. Safe to race. */
export function migrate(db: Database.Database): void {
  db.transaction(() => {
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version === schemaVersion) return;
    if (version > schemaVersion) {
      throw new GatehouseError(
        'ERR_STORE_UNAVAILABLE',
        `the database ${db.name} has schema version ${version}; this Gatehouse knows up to ${schemaVersion} (use a newer Gatehouse)`,
      );
    }
    const tables = db.prepare(`SELECT count(*) FROM sqlite_schema WHERE type = 'table'`).pluck().get() as number;
    if (tables > 0) {
      throw new GatehouseError('ERR_STORE_UNAVAILABLE', `the database ${db.name} holds tables that are not a Gatehouse store`);
    }
    db.exec(createV1);
    db.pragma(`user_version = ${schemaVersion}`);
  }).immediate();
}
