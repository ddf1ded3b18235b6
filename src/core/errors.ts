/**
 * Gatehouse's errors: a closed set of codes, each with the HTTP status it maps to.
 * The compiler demands a status for every code; tests assert codes, not message text.
 */
export const errorStatus = {
  // requests Gatehouse will not handle
  ERR_BAD_REQUEST: 400,
  ERR_HEADERS_TOO_LARGE: 431,
  ERR_MISDIRECTED_REQUEST: 421,
  ERR_ROUTE_NOT_FOUND: 404,
  ERR_BODY_TOO_LARGE: 413,
  ERR_PROXY_DESTINATION_FORBIDDEN: 403,
  ERR_METHOD_NOT_ALLOWED: 405,
  // decisions
  ERR_POLICY_DENIED: 403,
  ERR_CERT_MISSING: 403,
  ERR_CERT_UNTRUSTED: 403,
  ERR_CERT_EXPIRED: 403,
  ERR_CERT_NOT_YET_VALID: 403,
  ERR_CERT_REVOKED: 403,
  ERR_CERT_INVALID: 403,
  ERR_CERT_SUBJECT_MISMATCH: 403,
  ERR_LOGIN_NOT_CONFIGURED: 501,
  ERR_NOT_SIGNED_IN: 401,
  ERR_USER_DISABLED: 403,
  ERR_CERT_WRONG_USER: 403,
  ERR_PERMISSION_DENIED: 403,
  // upstreams
  ERR_UPSTREAM_FORBIDDEN: 403,
  ERR_UPSTREAM_UNREACHABLE: 502,
  ERR_UPSTREAM_TLS: 502,
  ERR_UPSTREAM_PROTOCOL: 502,
  ERR_UPSTREAM_TIMEOUT: 504,
  ERR_CLIENT_CLOSED: 499,
  // sign-in
  ERR_IDP_UNAVAILABLE: 502,
  ERR_LOGIN_FAILED: 400,
  ERR_EMAIL_NOT_VERIFIED: 403,
  ERR_DOMAIN_NOT_ALLOWED: 403,
  ERR_HANDOFF_INVALID: 400,
  ERR_RETURN_URL_INVALID: 400,
  ERR_TOKEN_INVALID: 401,
  ERR_CSRF: 403,
  // Gatehouse itself
  ERR_INTERNAL: 500,
  ERR_NOT_READY: 503,
  ERR_CONFIG_INVALID: 500,
  ERR_STORE_CONFLICT: 409,
  ERR_STORE_UNAVAILABLE: 503,
  ERR_STORE_CLOSED: 503,
  ERR_USAGE: 400,
  // people and roles (the directory)
  ERR_FORBIDDEN: 403,
  ERR_NOT_FOUND: 404,
  ERR_CONFLICT: 409,
  // the internal CA
  ERR_CA_NOT_INITIALISED: 503,
} as const satisfies Record<string, number>;

export type ErrorCode = keyof typeof errorStatus;

export function isErrorCode(value: string): value is ErrorCode {
  return Object.hasOwn(errorStatus, value);
}

/** An error with a code from the closed set. `cause` keeps the foreign error it translates. */
export class GatehouseError extends Error {
  readonly code: ErrorCode;
  override readonly name = 'GatehouseError';

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }

  get status(): number {
    return errorStatus[this.code];
  }
}

/**
 * `ERR_STORE_UNAVAILABLE` from a store that can tell what a failed call did: `unchanged` when it surely changed
 * nothing (a read, or a write that failed before it was sent or was refused), `unknown` when a write was sent and
 * not confirmed (it may or may not have been applied).
 */
export class StoreUnavailableError extends GatehouseError {
  readonly outcome: 'unchanged' | 'unknown';

  constructor(message: string, outcome: 'unchanged' | 'unknown', options?: { cause?: unknown }) {
    super('ERR_STORE_UNAVAILABLE', message, options);
    this.outcome = outcome;
  }
}

/**
 * What a client is told of an error: its message, except for a store that could not be reached, whose message
 * names the backend's addresses (for the log and the CLI): a client learns only that nothing was changed (or that
 * the change may or may not have been made).
 */
export function publicMessage(err: GatehouseError): string {
  if (err.code !== 'ERR_STORE_UNAVAILABLE') return err.message;
  if (err instanceof StoreUnavailableError && err.outcome === 'unknown') {
    return "Gatehouse's store did not confirm this change in time (it is unreachable or has lost its quorum): the change may or may not have been made; check before trying again";
  }
  return "Gatehouse's store is unreachable just now, so nothing was changed; try again in a moment";
}

export function statusOf(code: ErrorCode): number {
  return errorStatus[code];
}

/** The message of anything thrown, for one-line reports. */
export function messageOf(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
