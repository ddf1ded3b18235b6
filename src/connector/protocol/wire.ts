/**
 * The connector protocol's names and numbers: the paths on the auth host, the HTTP/1.1 upgrade that turns a
 * connector's TLS connection into an HTTP/2 session (Gatehouse the client, the connector the server), and the
 * headers both sides send. Each dial is one HTTP/2 `CONNECT` stream; nothing here is a new framing.
 */

/** `GET` with `Upgrade: gatehouse-connector/1` on the auth host: the connection becomes an HTTP/2 session. */
export const CONNECTOR_PATH = '/.gatehouse/connector';
/** `POST {name, token, csr}` with a one-time enrollment token: answers the certificate chain. */
export const ENROLL_PATH = '/.gatehouse/connector/enroll';
/** `POST {name, csr}` over TLS with the connector's current certificate: answers a new certificate chain. */
export const RENEW_PATH = '/.gatehouse/connector/renew';
export const UPGRADE_PROTOCOL = 'gatehouse-connector/1';

/** Request headers of the upgrade. */
export const NAME_HEADER = 'gatehouse-connector-name';
export const VERSION_HEADER = 'gatehouse-connector-version';
/** `HOST:PORT` the connector dials for every stream (it refuses any other `:authority`) */
export const TARGET_HEADER = 'gatehouse-connector-target';
/** the workers the connector already has a session with (`1,3`): a worker in it declines with 409 */
export const HELD_HEADER = 'gatehouse-connector-workers';
/** Answer headers: which worker took (or declined) the connection and how many there are (`2/4`). */
export const WORKER_HEADER = 'gatehouse-worker';
export const SESSION_HEADER = 'gatehouse-connector-session';
/** On a refused CONNECT stream (status 502): why the connector could not reach its backend. */
export const REASON_HEADER = 'gatehouse-connector-reason';

/** Flow-control windows for the session and each stream: large, so one stream can fill a fast link. */
export const WINDOW_BYTES = 16 * 1024 * 1024;
/** Both sides PING every interval and drop the session when this many go unanswered. */
export const PING_INTERVAL_MS = 10_000;
export const MISSED_PINGS = 3;

/** Connector names: what `connectors:` accepts. */
export const CONNECTOR_NAME = /^[a-z0-9-]+$/;

export interface WorkerSlot {
  readonly id: number;
  readonly count: number;
}

export function formatWorker(w: WorkerSlot): string {
  return `${w.id}/${w.count}`;
}

/** `2/4` → {id 2, count 4}; undefined when malformed. */
export function parseWorker(value: string | string[] | undefined): WorkerSlot | undefined {
  if (typeof value !== 'string') return undefined;
  const m = /^(\d{1,6})\/(\d{1,4})$/.exec(value.trim());
  if (!m) return undefined;
  const id = Number(m[1]);
  const count = Number(m[2]);
  return count >= 1 ? { id, count } : undefined;
}

export function formatHeld(ids: Iterable<number>): string {
  return [...new Set(ids)].sort((a, b) => a - b).join(',');
}

/** `1,3` → {1, 3}; anything that is not a number is ignored. */
export function parseHeld(value: string | string[] | undefined): Set<number> {
  const out = new Set<number>();
  if (typeof value !== 'string') return out;
  for (const part of value.split(',')) {
    const t = part.trim();
    if (/^\d{1,6}$/.test(t)) out.add(Number(t));
  }
  return out;
}
