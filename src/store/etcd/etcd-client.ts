/**
 * A small client for etcd's v3 API through its JSON gateway (`POST /v3/kv/range`, `/v3/kv/txn`,
 * `/v3/watch`…), served by every etcd member on its client port: JSON bodies with base64 keys and
 * values and 64-bit integers as strings; a watch is one streamed response of newline-separated JSON.
 *
 * Several endpoints: calls go to the last one that answered and move on to the next when it fails.
 * A read (or anything safe to send twice) moves on after any failure of the transport or an
 * "unavailable" answer; a write moves on only when it surely never reached etcd (the connection was
 * refused or never made) or etcd said it has no leader, since a write that timed out may have been
 * applied. Every call has one deadline across all its attempts, and no attempt takes more than a quarter of
 * it: a member that holds a request without answering (a follower that has not yet noticed its leader died)
 * leaves time to ask the others again once they have elected a new leader, or for the caller to find out
 * whether a write was applied.
 */
import { Agent, request, type Dispatcher } from 'undici';

export interface EtcdClientOptions {
  /** Origins (`http(s)://host:port`) of etcd members. */
  readonly endpoints: readonly string[];
  /** PEM texts: the CA that signed the members' certificates; the client certificate and key. */
  readonly tls?: { readonly ca?: string; readonly cert?: string; readonly key?: string };
  /** How long a connection may take to open, in ms. */
  readonly dialTimeout: number;
  /** The deadline of one call, in ms, across every endpoint it tries. */
  readonly requestTimeout: number;
}

/** gRPC status codes etcd answers with (through the gateway's `code`). */
export const grpcCode = { deadlineExceeded: 4, outOfRange: 11, unavailable: 14, resourceExhausted: 8, invalidArgument: 3 } as const;

/** A failed call: etcd's answer (`grpcCode`, `status`) or a failure of the transport (`cause`). */
export class EtcdCallError extends Error {
  override readonly name = 'EtcdCallError';
  readonly endpoint: string;
  readonly grpcCode: number | undefined;
  /** The request surely never reached etcd. */
  readonly unsent: boolean;

  constructor(message: string, details: { endpoint: string; grpcCode?: number; unsent?: boolean }, options?: { cause?: unknown }) {
    super(message, options);
    this.endpoint = details.endpoint;
    this.grpcCode = details.grpcCode;
    this.unsent = details.unsent ?? false;
  }
}

export interface CallOptions {
  /** Safe to send again after a failure that may have reached etcd. Default true. */
  readonly idempotent?: boolean;
  /** This call's deadline in ms (default the client's `requestTimeout`). */
  readonly timeout?: number;
}

/** The shortest time one attempt of a call is given (ms), however short the call's deadline. */
const attemptFloor = 1000;

/** How long a watch stream may stay silent before it is taken for dead and opened again. */
const watchSilence = 11 * 60_000;

/** Connection failures: the request was never written. */
const unsentCodes = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT', 'EPROTO']);

function errorCode(err: unknown): string | undefined {
  const e = err as { code?: unknown; cause?: { code?: unknown }; errors?: Array<{ code?: unknown }> } | undefined;
  const code = e?.code ?? e?.errors?.[0]?.code ?? e?.cause?.code;
  return typeof code === 'string' ? code : undefined;
}

function isUnsent(err: unknown): boolean {
  const code = errorCode(err);
  if (code === undefined) return false;
  // TLS handshake failures (an untrusted or refused certificate) happen before any request is written
  return unsentCodes.has(code) || /^ERR_(SSL|TLS)_|CERT|SIGNATURE|ISSUER/.test(code);
}

function describe(err: unknown): string {
  const code = errorCode(err);
  const message = err instanceof Error ? err.message || err.name : String(err);
  return code && !message.includes(code) ? `${message} (${code})` : message;
}

export class EtcdClient {
  readonly #endpoints: readonly string[];
  readonly #agent: Agent;
  readonly #requestTimeout: number;
  /** The endpoint calls go to first: the last that answered. */
  #current = 0;

  constructor(options: EtcdClientOptions) {
    this.#endpoints = options.endpoints;
    this.#requestTimeout = options.requestTimeout;
    const tls = options.tls ?? {};
    this.#agent = new Agent({
      connect: { timeout: options.dialTimeout, ...(tls.ca ? { ca: tls.ca } : {}), ...(tls.cert ? { cert: tls.cert } : {}), ...(tls.key ? { key: tls.key } : {}) },
      keepAliveTimeout: 30_000,
    });
  }

  get endpoints(): readonly string[] {
    return this.#endpoints;
  }

  /** POSTs `body` to `path` (`/v3/kv/range`…) and returns the parsed answer. */
  async call<T>(path: string, body: unknown, options: CallOptions = {}): Promise<T> {
    const idempotent = options.idempotent ?? true;
    const timeout = options.timeout ?? this.#requestTimeout;
    const deadline = Date.now() + timeout;
    const text = JSON.stringify(body);
    // Every endpoint once; a lone endpoint twice, as a kept-alive connection may have died since its last use.
    // While a member says the cluster has no leader (an election after a member was lost), says its leader
    // changed, or holds a request past its attempt's time, the round is tried again after a short pause until
    // the deadline: the cluster will have a leader in a moment. When every member refuses connections the call
    // fails at once.
    const attempts = Math.max(2, this.#endpoints.length);
    let last: EtcdCallError | undefined;
    for (let round = 0; ; round++) {
      /** per member, by its last attempt of the round: it may have a leader in a moment (it did not refuse the connection) */
      const alive = new Map<number, boolean>();
      // each member once per round, from the one calls go to now (other calls move that on as they fail)
      const start = this.#current;
      for (let attempt = 0; attempt < attempts; attempt++) {
        const left = deadline - Date.now();
        if (left <= 0) break;
        const index = (start + attempt) % this.#endpoints.length;
        const endpoint = this.#endpoints[index]!;
        try {
          const answer = await this.#post(endpoint, path, text, Math.min(left, Math.max(attemptFloor, Math.ceil(timeout / 4))));
          this.#current = index;
          return answer as T;
        } catch (err) {
          last = err as EtcdCallError;
          const noLeader = /no leader|not capable/.test(last.message);
          // a member that answers "unavailable" (leader changed) or holds a request without answering may be one
          // that has not yet noticed its leader died: only members that refuse connections are surely down
          alive.set(index, noLeader || !last.unsent);
          const retry = idempotent ? retryableRead(last) : last.unsent || noLeader;
          if (!retry) throw last;
          this.failed(endpoint); // the next call starts at the next member
        }
      }
      const left = deadline - Date.now();
      if (![...alive.values()].includes(true) || left <= 50) break;
      await new Promise((r) => setTimeout(r, Math.min(50 * 2 ** round, 400, left - 25)));
    }
    throw last ?? new EtcdCallError(`etcd did not answer within ${timeout} ms`, { endpoint: this.#endpoints[this.#current]! });
  }

  async #post(endpoint: string, path: string, text: string, timeout: number): Promise<unknown> {
    let response: Dispatcher.ResponseData;
    try {
      response = await request(`${endpoint}${path}`, {
        dispatcher: this.#agent,
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: text,
        signal: AbortSignal.timeout(timeout),
        headersTimeout: timeout,
        bodyTimeout: timeout,
      });
    } catch (err) {
      throw new EtcdCallError(`etcd at ${endpoint} failed: ${describe(err)}`, { endpoint, unsent: isUnsent(err) }, { cause: err });
    }
    let answer: unknown;
    try {
      answer = await response.body.json();
    } catch (err) {
      throw new EtcdCallError(`etcd at ${endpoint} sent an unreadable answer (HTTP ${response.statusCode}): ${describe(err)}`, { endpoint }, { cause: err });
    }
    if (response.statusCode !== 200) throw answerError(endpoint, response.statusCode, answer);
    return answer;
  }

  /**
   * Opens a watch stream (one `create_request`) on the current endpoint, moving on to the next ones while
   * they cannot be reached, and yields each `result`. Ends when etcd ends the stream; throws an
   * `EtcdCallError` when it fails. `signal` cancels it.
   */
  async *watch(create: unknown, signal: AbortSignal): AsyncGenerator<WatchResult> {
    const text = JSON.stringify({ create_request: create });
    let response: Dispatcher.ResponseData | undefined;
    let endpoint = '';
    let last: EtcdCallError | undefined;
    for (let attempt = 0; attempt < this.#endpoints.length && !response; attempt++) {
      const index = (this.#current + attempt) % this.#endpoints.length;
      endpoint = this.#endpoints[index]!;
      try {
        response = await request(`${endpoint}/v3/watch`, {
          dispatcher: this.#agent,
          method: 'POST',
          // etcd ends the watch when its member loses the leader, instead of going quiet
          headers: { 'content-type': 'application/json', 'grpc-metadata-hasleader': 'true' },
          body: text,
          // the stream lasts until `signal`; only its answer's headers have a deadline (the connection has dialTimeout)
          signal,
          headersTimeout: this.#requestTimeout,
          // etcd sends a progress note on a quiet watch every 10 minutes (by default): a longer silence is a dead connection
          bodyTimeout: watchSilence,
        });
        this.#current = index;
      } catch (err) {
        last = new EtcdCallError(`etcd at ${endpoint} failed: ${describe(err)}`, { endpoint, unsent: isUnsent(err) }, { cause: err });
        if (signal.aborted) throw last;
      }
    }
    if (!response) throw last!;
    const body = response.body;
    const onAbort = () => body.destroy();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      if (response.statusCode !== 200) throw answerError(endpoint, response.statusCode, await body.json().catch(() => undefined));
      let pending = '';
      for await (const chunk of body as AsyncIterable<Buffer>) {
        pending += chunk.toString();
        let newline: number;
        while ((newline = pending.indexOf('\n')) >= 0) {
          const line = pending.slice(0, newline).trim();
          pending = pending.slice(newline + 1);
          if (line) yield parseWatchLine(endpoint, line);
        }
      }
      if (pending.trim()) yield parseWatchLine(endpoint, pending.trim());
    } catch (err) {
      if (err instanceof EtcdCallError) throw err;
      throw new EtcdCallError(`the watch on etcd at ${endpoint} failed: ${describe(err)}`, { endpoint }, { cause: err });
    } finally {
      signal.removeEventListener('abort', onAbort);
      body.destroy();
    }
  }

  /** Moves calls on from an endpoint that failed outside `call` (a watch). */
  failed(endpoint: string): void {
    if (this.#endpoints[this.#current] === endpoint) this.#current = (this.#current + 1) % this.#endpoints.length;
  }

  /** Drops every connection now (open watches fail). */
  async destroy(): Promise<void> {
    await this.#agent.destroy();
  }
}

function retryableRead(err: EtcdCallError): boolean {
  return err.grpcCode === undefined || err.grpcCode === grpcCode.unavailable || err.grpcCode === grpcCode.deadlineExceeded;
}

function answerError(endpoint: string, status: number, answer: unknown): EtcdCallError {
  const a = (answer ?? {}) as { error?: unknown; message?: unknown; code?: unknown };
  const message = typeof a.message === 'string' ? a.message : typeof a.error === 'string' ? a.error : `HTTP ${status}`;
  const code = typeof a.code === 'number' ? a.code : undefined;
  return new EtcdCallError(`etcd at ${endpoint} answered: ${message}`, { endpoint, ...(code !== undefined ? { grpcCode: code } : {}) });
}

/** One message of a watch stream, as the gateway writes it (64-bit numbers as strings). */
export interface WatchResult {
  readonly header?: { readonly revision?: string };
  readonly created?: boolean;
  readonly canceled?: boolean;
  readonly compact_revision?: string;
  readonly cancel_reason?: string;
  readonly events?: ReadonlyArray<{ readonly type?: 'PUT' | 'DELETE'; readonly kv?: EtcdKv }>;
}

export interface EtcdKv {
  readonly key: string;
  readonly value?: string;
  readonly mod_revision?: string;
  readonly create_revision?: string;
  readonly version?: string;
}

function parseWatchLine(endpoint: string, line: string): WatchResult {
  let message: { result?: WatchResult; error?: { message?: string; grpc_code?: number; code?: number } };
  try {
    message = JSON.parse(line) as typeof message;
  } catch (err) {
    throw new EtcdCallError(`the watch on etcd at ${endpoint} sent an unreadable line`, { endpoint }, { cause: err });
  }
  if (message.error) {
    const code = message.error.grpc_code ?? message.error.code;
    throw new EtcdCallError(`the watch on etcd at ${endpoint} failed: ${message.error.message ?? 'unknown error'}`, {
      endpoint,
      ...(typeof code === 'number' ? { grpcCode: code } : {}),
    });
  }
  const result = message.result ?? {};
  if (result.canceled && !(Number(result.compact_revision) > 0)) {
    // etcd's member lost its leader, or is shutting down: watch again, elsewhere
    throw new EtcdCallError(`etcd at ${endpoint} ended the watch: ${result.cancel_reason || 'canceled'}`, { endpoint, grpcCode: grpcCode.unavailable });
  }
  return result;
}
