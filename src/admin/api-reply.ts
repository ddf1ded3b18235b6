/**
 * How the JSON API answers: JSON with `charset=utf-8`, never cached, never sniffed, always with the request id;
 * errors as `{"error": {"code", "message", "requestId"}}` with `x-gatehouse-error` as well.
 */
import type { ServerResponse } from 'node:http';
import { errorStatus, type ErrorCode } from '../core/index.ts';

export const JSON_TYPE = 'application/json; charset=utf-8';
export const NDJSON_TYPE = 'application/x-ndjson';

/** The headers every API answer carries. */
export function apiHeaders(requestId: string, contentType: string): string[] {
  return ['content-type', contentType, 'cache-control', 'no-store', 'x-content-type-options', 'nosniff', 'x-request-id', requestId];
}

export function sendJson(res: ServerResponse, requestId: string, status: number, body: unknown, extraHeaders: readonly string[] = []): void {
  const text = JSON.stringify(body);
  res.writeHead(status, [...apiHeaders(requestId, JSON_TYPE), 'content-length', String(Buffer.byteLength(text)), ...extraHeaders]);
  res.end(res.req.method === 'HEAD' ? undefined : text);
}

export function sendNoContent(res: ServerResponse, requestId: string): void {
  res.writeHead(204, ['cache-control', 'no-store', 'x-request-id', requestId]);
  res.end();
}

export function sendApiError(res: ServerResponse, requestId: string, code: ErrorCode, message: string, extraHeaders: readonly string[] = []): void {
  sendJson(res, requestId, errorStatus[code], { error: { code, message, requestId } }, ['x-gatehouse-error', code, ...extraHeaders]);
}
