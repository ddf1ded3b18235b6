/**
 * Forwarding one request to its upstream: bodies stream both ways with backpressure, the body limit holds
 * for chunked bodies too, and every failure maps to a status in one place (`classifyUpstreamError`).
 */
import { request as httpRequest, type Agent, type ClientRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { LookupFunction, Socket } from 'node:net';
import type { ErrorCode } from '../core/index.ts';
import type { UpstreamTarget } from './route-table.ts';
import { clientResponseHeaders } from './headers.ts';
import { rewriteResponseHeaders } from './rewrite-redirects.ts';

export interface ForwardTimeouts {
  readonly connect: number;
  readonly send: number;
  readonly read: number;
}

export interface ForwardRequest {
  readonly target: UpstreamTarget;
  readonly agent: Agent;
  readonly lookup: LookupFunction | undefined;
  readonly method: string;
  /** path and query as forwarded (the normalised path) */
  readonly path: string;
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

export class UpstreamTimeoutError extends Error {
  readonly code = 'EGATEHOUSE_TIMEOUT';
  constructor(readonly phase: 'connect' | 'send' | 'read', ms: number) {
    super(`the upstream did not ${phase === 'connect' ? 'accept the connection' : phase === 'send' ? 'accept the request body' : 'answer'} within ${ms} ms`);
  }
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

/** The one place where upstream failures become statuses (502 by default, 504 on timeout). */
export function classifyUpstreamError(err: unknown): { code: ErrorCode; message: string } {
  const e = err as NodeJS.ErrnoException;
  const c = e?.code ?? '';
  if (err instanceof UpstreamTimeoutError) return { code: 'ERR_UPSTREAM_TIMEOUT', message: err.message };
  if (c === 'EGATEHOUSE_FORBIDDEN_ADDRESS') return { code: 'ERR_UPSTREAM_FORBIDDEN', message: e.message };
  if (c === 'ETIMEDOUT') return { code: 'ERR_UPSTREAM_TIMEOUT', message: 'the upstream connection timed out' };
  if (tlsCodes.has(c) || c.startsWith('ERR_SSL') || c.startsWith('ERR_TLS')) {
    return { code: 'ERR_UPSTREAM_TLS', message: `TLS with the upstream failed: ${e.message}` };
  }
  if (c.startsWith('HPE_')) return { code: 'ERR_UPSTREAM_PROTOCOL', message: 'the upstream sent an invalid HTTP response' };
  if (c === 'ENOTFOUND' || c === 'EAI_AGAIN') return { code: 'ERR_UPSTREAM_UNREACHABLE', message: 'the upstream host name does not resolve' };
  if (c === 'ECONNREFUSED') return { code: 'ERR_UPSTREAM_UNREACHABLE', message: 'the upstream refused the connection' };
  return { code: 'ERR_UPSTREAM_UNREACHABLE', message: `the upstream connection failed (${c || e?.message || 'unknown error'})` };
}

/**
 * Sends `fr` upstream and the answer back on `res`. `onError` renders an error when nothing has been sent
 * yet; `result` is updated as bytes flow.
 */
export function newForwardResult(): ForwardResult {
  return { status: 0, code: undefined, message: undefined, bytesIn: 0, bytesOut: 0, upstreamMs: 0 };
}

export function forward(
  req: IncomingMessage,
  res: ServerResponse,
  fr: ForwardRequest,
  onError: (code: ErrorCode, message: string, closeConnection: boolean) => void,
  result: ForwardResult,
): void {
  const started = performance.now();
  const contentLength = req.headers['content-length'];
  if (contentLength !== undefined && Number(contentLength) > fr.maxBodySize) {
    fail('ERR_BODY_TOO_LARGE', `the request body is larger than ${fr.maxBodySize} bytes`, true);
    finish();
    return;
  }
  const chunked = req.headers['transfer-encoding'] !== undefined;
  const hasBody = chunked || (contentLength !== undefined && contentLength !== '0');
  if (chunked) fr.headers.push('Transfer-Encoding', 'chunked');

  let finished = false;
  let responded = false;
  let sendTimer: NodeJS.Timeout | undefined;
  let connectTimer: NodeJS.Timeout | undefined;

  function finish(): void {
    if (finished) return;
    finished = true;
    if (sendTimer) clearTimeout(sendTimer);
    if (connectTimer) clearTimeout(connectTimer);
  }

  function fail(code: ErrorCode, message: string, closeConnection: boolean): void {
    result.code = code;
    result.message = message;
    if (!res.headersSent) {
      onError(code, message, closeConnection);
      result.status = res.statusCode;
    } else {
      res.destroy();
    }
  }

  const options = {
    agent: fr.agent,
    host: fr.target.hostname,
    port: fr.target.port,
    method: fr.method,
    path: fr.path,
    headers: fr.headers,
    lookup: fr.lookup,
  };
  const upReq: ClientRequest =
    fr.target.protocol === 'https:' ? httpsRequest(options as never) : httpRequest(options as never);

  upReq.on('socket', (socket: Socket) => {
    if (socket.connecting) {
      connectTimer = setTimeout(() => upReq.destroy(new UpstreamTimeoutError('connect', fr.timeouts.connect)), fr.timeouts.connect);
      socket.once(fr.target.protocol === 'https:' ? 'secureConnect' : 'connect', () => {
        if (connectTimer) clearTimeout(connectTimer);
        connectTimer = undefined;
      });
    }
  });
  upReq.setTimeout(fr.timeouts.read, () => upReq.destroy(new UpstreamTimeoutError('read', fr.timeouts.read)));

  upReq.on('response', (upRes: IncomingMessage) => {
    responded = true;
    result.upstreamMs = performance.now() - started;
    const headers = clientResponseHeaders(upRes.rawHeaders, fr.requestId);
    if (fr.rewrite) rewriteResponseHeaders(headers, fr.rewrite.names, fr.rewrite.publicHost);
    const status = upRes.statusCode ?? 502;
    result.status = status;
    res.writeHead(status, upRes.statusMessage, headers);
    upRes.on('data', (chunk: Buffer) => {
      result.bytesOut += chunk.length;
      if (!res.write(chunk)) {
        upRes.pause();
        res.once('drain', () => upRes.resume());
      }
    });
    upRes.on('end', () => {
      res.end();
    });
    upRes.on('error', () => res.destroy());
    upRes.on('aborted', () => res.destroy());
  });

  upReq.on('error', (err) => {
    if (finished) return;
    if (!responded) {
      const c = classifyUpstreamError(err);
      fail(c.code, c.message, hasBody && !req.complete);
    } else {
      result.code ??= 'ERR_UPSTREAM_PROTOCOL';
      res.destroy();
    }
    finish();
  });

  res.on('close', () => {
    if (!res.writableFinished) {
      // the client went away before the answer was complete
      if (!result.code) result.code = 'ERR_CLIENT_CLOSED';
      upReq.destroy();
    }
    finish();
  });

  if (!hasBody) {
    upReq.end();
    return;
  }

  req.on('data', (chunk: Buffer) => {
    result.bytesIn += chunk.length;
    if (result.bytesIn > fr.maxBodySize) {
      req.pause();
      req.removeAllListeners('data');
      upReq.destroy();
      if (!responded) fail('ERR_BODY_TOO_LARGE', `the request body is larger than ${fr.maxBodySize} bytes`, true);
      finish();
      return;
    }
    if (!upReq.write(chunk)) {
      req.pause();
      sendTimer ??= setTimeout(() => upReq.destroy(new UpstreamTimeoutError('send', fr.timeouts.send)), fr.timeouts.send);
    }
  });
  upReq.on('drain', () => {
    if (sendTimer) clearTimeout(sendTimer);
    sendTimer = undefined;
    req.resume();
  });
  req.on('end', () => upReq.end());
}
