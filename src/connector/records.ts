/**
 * What the connector hub keeps in the store. Presence: kind `connector`, id `NAME/SESSIONID`, refreshed while
 * the session lives (its expiry follows) and deleted when it ends, so any worker or instance can list who is
 * connected, and another instance can relay to the one holding it (`peer`). Enrollment tokens: kind `connector-enrollment`, id = SHA-256 of the token (never the token), for an
 * hour, taken once.
 */
export const PRESENCE_KIND = 'connector';
export const ENROLLMENT_KIND = 'connector-enrollment';
/** How long a one-time enrollment token is valid. */
export const ENROLLMENT_TTL_MS = 60 * 60 * 1000;
/** The prefix that makes an enrollment token recognisable (in logs, in a secret scanner). */
export const ENROLLMENT_TOKEN_PREFIX = 'ghc_';

/** Kind `connector`, id `NAME/SESSIONID`: one live session of a connector. */
export interface ConnectorPresence {
  readonly name: string;
  readonly session: string;
  /** the connector's address as the front door saw it */
  readonly address: string;
  readonly version: string;
  readonly target: string;
  /** the serial of the certificate it presented */
  readonly serial: string;
  /** ms since the epoch */
  readonly since: number;
  /** streams open at the last refresh */
  readonly streams: number;
  /** the worker holding the session (`id/count`) */
  readonly worker: string;
  /** the Gatehouse instance holding the session (its id) */
  readonly instance?: string;
  /** where the other instances reach that instance's peer listener (`https://HOST:PORT`), when it has one */
  readonly peer?: string;
}

/** Kind `connector-enrollment`, id = hex SHA-256 of the token. */
export interface EnrollmentRecord {
  readonly name: string;
  readonly created: number;
  readonly createdBy: string;
  readonly expires: number;
}
