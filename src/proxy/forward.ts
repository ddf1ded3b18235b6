/**
 * Forwarding one request to its upstream with undici's dispatcher: bodies stream both ways with
 * backpressure, the body limit holds for chunked bodies too, and every failure maps to a status in one place
 * (`classifyUpstreamError`).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { GatehouseError, type ErrorCode } from '../core/index.ts';
import type { UpstreamDispatcher } from './upstream-pool.ts';
import { clientResponseHeaders } from './headers.ts';
import { rewriteResponseHeaders } from './rewrite-redirects.ts';

export interface ForwardTimeouts {
  /** ms to open the connection (TLS included); applied by the pool, see `UpstreamPool.dispatcherFor` */
  readonly connect: number;
  /** ms the upstream may leave the request body unaccepted */
  readonly send: number;
  /** ms to wait for the response head after the request is sent, and between two pieces of the response body */
  readonly read: number;
}

export interface ForwardRequest {
  readonly dispatcher: UpstreamDispatcher;
  readonly method: string;
  /** path and query as forwarded (the normalised path) */
  readonly path: string;
  /** flat raw headers ([name, value, …]) with exactly one Host, which is what the upstream sees */
  readonly headers: string[];
  readonly timeouts: ForwardTimeouts;
  readonly maxBodySize: number;
  readonly requestId: string;
  /** rewrite Location & co. from these upstream names to https://publicHost */
  readonly rewrite: { readonly names: ReadonlySet<string>; readonly publicHost: string } | undefined;
}

/** Filled in as the exchange goes on, so whoever logs the request at its end sees the final numbers. */
export interface ForwardResult {
  /** the status sent to the client (0 when nothing was sent) */
  status: number;
  code: ErrorCode | undefined;
  message: string | undefined;
  bytesIn: number;
  bytesOut: number;
  upstreamMs: number;
}

type TimeoutPhase = 'connect' | 'send' | 'read';

function timeoutMessage(phase: TimeoutPhase, ms: number | undefined): string {
  const what = phase === 'connect' ? 'accept the connection' : phase === 'send' ? 'accept the request body' : 'answer';
  return `the upstream did not ${what}${ms === undefined ? ' in time' : ` within ${ms} ms`}`;
}

export class UpstreamTimeoutError extends Error {
  readonly code = 'EGATEHOUSE_TIMEOUT';
  constructor(readonly phase: TimeoutPhase, ms: number) {
    super(timeoutMessage(phase, ms));
  }
}

/** The request could not go on: the client left or its body grew past the limit (never shown to anyone). */
class ExchangeStopped extends Error {
  readonly code = 'EGATEHOUSE_STOPPED';
}

const tlsCodes = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_GET_ISSUER_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'CERT_SIGNATURE_FAILURE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'ERR_SSL_WRONG_VERSION_NUMBER',
  'EPROTO',
]);

/** undici's own timeouts, by our phase (its headers and body timeouts both carry our `read`). */
const undiciTimeouts: Record<string, TimeoutPhase> = {
  UND_ERR_CONNECT_TIMEOUT: 'connect',
  UND_ERR_HEADERS_TIMEOUT: 'read',
  UND_ERR_BODY_TIMEOUT: 'read',
};

/** Codes for an upstream that broke HTTP besides llhttp's `HPE_*`: undici's, and Node refusing a response header. */
const protocolCodes = new Set(['UND_ERR_RES_CONTENT_LENGTH_MISMATCH', 'UND_ERR_HEADERS_OVERFLOW', 'UND_ERR_RES_EXCEEDED_MAX_SIZE', 'ERR_INVALID_CHAR']);

/**
 * The one place where upstream failures become statuses (502 by default, 504 on timeout). Node's errors
 * (from `node:http`, `net`, `tls`, our lookup) and undici's (`UND_ERR_*`) alike; `timeouts` only words the message.
 */
export function classifyUpstreamError(err: unknown, timeouts?: ForwardTimeouts): { code: ErrorCode; message: string } {
  const e = err as NodeJS.ErrnoException;
  const c = e?.code ?? '';
  if (err instanceof UpstreamTimeoutError) return { code: 'ERR_UPSTREAM_TIMEOUT', message: err.message };
  // a dial through a connector (`Dialer`) says what went wrong in our own terms
  if (err instanceof GatehouseError) return { code: err.code, message: err.message };
  const phase = undiciTimeouts[c];
  if (phase) return { code: 'ERR_UPSTREAM_TIMEOUT', message: timeoutMessage(phase, timeouts?.[phase]) };
  if (c === 'EGATEHOUSE_FORBIDDEN_ADDRESS') return { code: 'ERR_UPSTREAM_FORBIDDEN', message: e.message };
  if (c === 'ETIMEDOUT') return { code: 'ERR_UPSTREAM_TIMEOUT', message: 'the upstream connection timed out' };
  if (tlsCodes.has(c) || c.startsWith('ERR_SSL') || c.startsWith('ERR_TLS')) {
    return { code: 'ERR_UPSTREAM_TLS', message: `TLS with the upstream failed: ${e.message}` };
  }
  // undici's HTTPParserError carries no code; its SocketError is 'bad response' / 'bad upgrade' for an answer
  // nobody asked for (or a 100 without Expect)
  if (c.startsWith('HPE_') || protocolCodes.has(c) || e?.name === 'HTTPParserError' || (c === 'UND_ERR_SOCKET' && e.message.startsWith('bad '))) {
    return { code: 'ERR_UPSTREAM_PROTOCOL', message: 'the upstream sent an invalid HTTP response' };
  }
  if (c === 'ENOTFOUND' || c === 'EAI_AGAIN') return { code: 'ERR_UPSTREAM_UNREACHABLE', message: 'the upstream host name does not resolve' };
  if (c === 'ECONNREFUSED') return { code: 'ERR_UPSTREAM_UNREACHABLE', message: 'the upstream refused the connection' };
  if (c === 'UND_ERR_SOCKET') return { code: 'ERR_UPSTREAM_UNREACHABLE', message: `the upstream closed the connection (${e.message})` };
  // undici refused to build the request: a header or method our own checks should have stopped first
  if (c === 'UND_ERR_INVALID_ARG' || c === 'UND_ERR_NOT_SUPPORTED') {
    return { code: 'ERR_INTERNAL', message: `the request could not be sent upstream: ${e.message}` };
  }
  return { code: 'ERR_UPSTREAM_UNREACHABLE', message: `the upstream connection failed (${c || e?.message || 'unknown error'})` };
}

export function newForwardResult(): ForwardResult {
  return { status: 0, code: undefined, message: undefined, bytesIn: 0, bytesOut: 0, upstreamMs: 0 };
}

/**
 * The client's request body as undici reads it. It counts bytes and stops before a byte past `maxBodySize`
 * is handed on (so the upstream never gets a complete request), and it times how long the upstream leaves it
 * unread: undici pauses a stream body when the upstream socket is full and resumes it on `drain`.
 */
class RequestBody extends Readable {
  readonly #x: Exchange;
  readonly #onData = this.#data.bind(this);
  readonly #onEnd = this.#end.bind(this);
  #sendTimer: NodeJS.Timeout | undefined;

  constructor(x: Exchange) {
    super({ highWaterMark: 64 * 1024 });
    this.#x = x;
    x.req.on('data', this.#onData);
    x.req.on('end', this.#onEnd);
  }

  #data(chunk: Buffer): void {
    const x = this.#x;
    x.result.bytesIn += chunk.length;
    if (x.result.bytesIn > x.fr.maxBodySize) return x.bodyTooLarge();
    if (!this.push(chunk)) x.req.pause();
  }

  #end(): void {
    this.push(null);
  }

  override _read(): void {
    this.#x.req.resume();
  }

  override pause(): this {
    this.#sendTimer ??= setTimeout(() => this.#x.sendTimedOut(), this.#x.fr.timeouts.send);
    return super.pause();
  }

  override resume(): this {
    if (this.#sendTimer) clearTimeout(this.#sendTimer);
    this.#sendTimer = undefined;
    return super.resume();
  }

  /** Stops reading the client: undici is done with the body (sent, failed or aborted). */
  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    if (this.#sendTimer) clearTimeout(this.#sendTimer);
    this.#sendTimer = undefined;
    const req = this.#x.req;
    req.off('data', this.#onData);
    req.off('end', this.#onEnd);
    // what the client still sends is read and dropped, as Node does for a body nobody reads, so its
    // connection stays usable after an early answer; after a 413 it stays paused and the connection closes
    if (!req.complete && !this.#x.overLimit) req.resume();
    callback(err);
  }
}

/**
 * One request's exchange, and the handler undici calls. It uses undici's original handler methods
 * (`onConnect`/`onHeaders`/`onData`/…), which undici 7's own `request()` and `stream()` use too: they hand
 * over the raw header buffers, where the controller API would first parse them into an object we do not need.
 */
class Exchange implements Dispatcher.DispatchHandler {
  readonly started = performance.now();
  readonly body: RequestBody | undefined;
  /** the exchange is over for us (answered, failed, abandoned); later undici callbacks change nothing */
  finished = false;
  overLimit = false;
  #abort: ((err?: Error) => void) | undefined;
  #resume: (() => void) | undefined;
  #waitingForDrain = false;

  constructor(
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly fr: ForwardRequest,
    readonly onErrorPage: (code: ErrorCode, message: string, closeConnection: boolean) => void,
    readonly result: ForwardResult,
    hasBody: boolean,
  ) {
    if (hasBody) this.body = new RequestBody(this);
    // before the front door's own 'close' listener, which logs the request with the code set here (a bound
    // method: tsx's keepNames makes every per-request arrow function cost a defineProperty)
    res.prependListener('close', this.#clientClosed.bind(this));
  }

  /** An error page when nothing was sent yet, else the answer is cut off. */
  fail(code: ErrorCode, message: string, closeConnection: boolean): void {
    this.result.code = code;
    this.result.message = message;
    if (!this.res.headersSent) {
      this.onErrorPage(code, message, closeConnection);
      this.result.status = this.res.statusCode;
    } else {
      this.res.destroy();
    }
  }

  /** Ends the exchange from our side: undici stops the request (and drops the connection if it was under way). */
  #stop(err: Error): void {
    this.finished = true;
    this.#abort?.(err);
    this.body?.destroy();
  }

  bodyTooLarge(): void {
    if (this.finished) return;
    this.overLimit = true;
    this.req.pause();
    this.fail('ERR_BODY_TOO_LARGE', `the request body is larger than ${this.fr.maxBodySize} bytes`, true);
    this.#stop(new ExchangeStopped('the request body is too large'));
  }

  sendTimedOut(): void {
    // through undici, so that its error lands in onError like every other upstream failure
    this.#abort?.(new UpstreamTimeoutError('send', this.fr.timeouts.send));
  }

  #clientClosed(): void {
    if (this.res.writableFinished) return;
    // the client went away before the answer was complete
    this.result.code ??= 'ERR_CLIENT_CLOSED';
    if (!this.finished) this.#stop(new ExchangeStopped('the client closed the connection'));
  }

  onConnect(abort: (err?: Error) => void): void {
    // undici calls this when the request is about to be written; the client may have left while it waited
    if (this.finished) return abort(new ExchangeStopped('the exchange was stopped before it was sent'));
    this.#abort = abort;
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean {
    if (statusCode < 200) return true; // 1xx informational answers stay between us and the upstream
    this.#resume = resume;
    const result = this.result;
    result.upstreamMs = performance.now() - this.started;
    const raw = new Array<string>(rawHeaders.length);
    for (let i = 0; i < rawHeaders.length; i++) raw[i] = rawHeaders[i]!.toString('latin1');
    const headers = clientResponseHeaders(raw, this.fr.requestId);
    if (this.fr.rewrite) rewriteResponseHeaders(headers, this.fr.rewrite.names, this.fr.rewrite.publicHost);
    result.status = statusCode;
    this.res.writeHead(statusCode, statusText, headers);
    return true;
  }

  onData(chunk: Buffer): boolean {
    this.result.bytesOut += chunk.length;
    if (this.res.write(chunk)) return true;
    if (!this.#waitingForDrain) {
      this.#waitingForDrain = true;
      this.res.once('drain', () => {
        this.#waitingForDrain = false;
        this.#resume?.();
      });
    }
    return false;
  }

  onComplete(): void {
    if (this.finished) return;
    this.finished = true;
    this.res.end();
  }

  onError(err: Error): void {
    if (this.finished) return;
    this.finished = true;
    this.body?.destroy();
    if (!this.res.headersSent) {
      const c = classifyUpstreamError(err, this.fr.timeouts);
      this.fail(c.code, c.message, this.body !== undefined && !this.req.complete);
    } else {
      this.result.code ??= 'ERR_UPSTREAM_PROTOCOL';
      this.res.destroy();
    }
  }
}

/** The request headers without `Expect`, which undici refuses (Node has already answered `100 Continue`). */
function withoutExpect(headers: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < headers.length; i += 2) {
    if (headers[i]!.length !== 6 || headers[i]!.toLowerCase() !== 'expect') out.push(headers[i]!, headers[i + 1]!);
  }
  return out;
}

/**
 * Sends `fr` upstream and the answer back on `res`. `onError` renders an error when nothing has been sent
 * yet; `result` is updated as bytes flow.
 */
export function forward(
  req: IncomingMessage,
  res: ServerResponse,
  fr: ForwardRequest,
  onError: (code: ErrorCode, message: string, closeConnection: boolean) => void,
  result: ForwardResult,
): void {
  const contentLength = req.headers['content-length'];
  if (contentLength !== undefined && Number(contentLength) > fr.maxBodySize) {
    result.code = 'ERR_BODY_TOO_LARGE';
    result.message = `the request body is larger than ${fr.maxBodySize} bytes`;
    onError(result.code, result.message, true);
    result.status = res.statusCode;
    return;
  }
  // undici frames the body itself: Content-Length when the header gives one, else chunked
  const hasBody = req.headers['transfer-encoding'] !== undefined || (contentLength !== undefined && contentLength !== '0');
  const x = new Exchange(req, res, fr, onError, result, hasBody);
  const options = {
    method: fr.method,
    path: fr.path,
    headers: req.headers.expect === undefined ? fr.headers : withoutExpect(fr.headers),
    body: x.body ?? null,
    headersTimeout: fr.timeouts.read,
    bodyTimeout: fr.timeouts.read,
    servername: fr.dispatcher.servername,
  };
  fr.dispatcher.pool.dispatch(options as Dispatcher.DispatchOptions, x);
}
