/**
 * Every answer Gatehouse itself produces: an HTML page for browsers, JSON for API clients, always with
 * `x-gatehouse-error: <code>` and `x-request-id`.
 */
import { STATUS_CODES, type ServerResponse } from 'node:http';
import { errorStatus, type ErrorCode } from '../core/index.ts';

const titles: Partial<Record<ErrorCode, string>> = {
  ERR_ROUTE_NOT_FOUND: 'No such site',
  ERR_BAD_REQUEST: 'Bad request',
  ERR_HEADERS_TOO_LARGE: 'Request headers too large',
  ERR_MISDIRECTED_REQUEST: 'Misdirected request',
  ERR_BODY_TOO_LARGE: 'Request body too large',
  ERR_PROXY_DESTINATION_FORBIDDEN: 'Destination not allowed',
  ERR_UPSTREAM_UNREACHABLE: 'The application is not reachable',
  ERR_UPSTREAM_TIMEOUT: 'The application did not answer in time',
  ERR_UPSTREAM_TLS: 'The application’s certificate was not accepted',
  ERR_UPSTREAM_PROTOCOL: 'The application sent an invalid answer',
  ERR_UPSTREAM_FORBIDDEN: 'Destination not allowed',
  ERR_LOGIN_NOT_CONFIGURED: 'Sign-in is not configured',
  ERR_CERT_MISSING: 'A client certificate is required',
  ERR_CERT_UNTRUSTED: 'Client certificate not trusted',
  ERR_CERT_EXPIRED: 'Client certificate expired',
  ERR_CERT_NOT_YET_VALID: 'Client certificate not yet valid',
  ERR_CERT_REVOKED: 'Client certificate revoked',
  ERR_CERT_INVALID: 'Client certificate not valid',
  ERR_CERT_SUBJECT_MISMATCH: 'Client certificate not allowed here',
  ERR_POLICY_DENIED: 'Access denied',
  ERR_PERMISSION_DENIED: 'Access denied',
  ERR_USER_DISABLED: 'Account disabled',
  ERR_CERT_WRONG_USER: 'Client certificate of another user',
  ERR_METHOD_NOT_ALLOWED: 'Method not allowed',
  ERR_NOT_SIGNED_IN: 'Not signed in',
  ERR_FORBIDDEN: 'Not allowed',
  ERR_NOT_FOUND: 'Not found',
  ERR_INTERNAL: 'Internal error',
  ERR_NOT_READY: 'Not ready',
};

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export interface ErrorBody {
  readonly code: ErrorCode;
  readonly message: string;
  readonly requestId: string;
  readonly route?: string | undefined;
  /** for a signed-in user refused by policy: the dashboard page where they can ask for access (HTML only) */
  readonly requestAccess?: string | undefined;
}

/** Whether the client prefers JSON over HTML. */
export function wantsJson(accept: string | undefined): boolean {
  if (!accept) return false;
  return accept.includes('json') && !accept.includes('text/html');
}

export function renderErrorHtml(e: ErrorBody): string {
  const status = errorStatus[e.code];
  const title = titles[e.code] ?? 'Error';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${status} ${escapeHtml(title)} · Gatehouse</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:10vh auto;padding:0 1rem;color:#1f2328}
h1{font-size:1.5rem}code{background:#f3f4f6;padding:.1rem .3rem;border-radius:4px}.meta{color:#57606a;font-size:.875rem}
.button{display:inline-block;background:#1f6feb;color:#fff;padding:.4rem .9rem;border-radius:6px;text-decoration:none;font-weight:600}</style>
</head><body><h1>${status} · ${escapeHtml(title)}</h1>
<p>${escapeHtml(e.message)}</p>
${e.requestAccess ? `<p><a class="button" href="${escapeHtml(e.requestAccess)}">Request access</a> · ask an admin of a role that grants it; you will see the answer on your dashboard.</p>` : ''}
${e.route ? `<p class="meta">Route: <code>${escapeHtml(e.route)}</code></p>` : ''}
<p class="meta">Error <code>${e.code}</code> · request <code>${escapeHtml(e.requestId)}</code></p>
</body></html>
`;
}

export function errorHeaders(code: ErrorCode, requestId: string, json: boolean): string[] {
  return [
    'content-type',
    json ? 'application/json' : 'text/html; charset=utf-8',
    'cache-control',
    'no-store',
    'x-gatehouse-error',
    code,
    'x-request-id',
    requestId,
    'x-content-type-options',
    'nosniff',
  ];
}

export function errorBody(e: ErrorBody, json: boolean): string {
  return json ? JSON.stringify({ error: { code: e.code, message: e.message, requestId: e.requestId } }) : renderErrorHtml(e);
}

/** Sends an error answer on a response that has not started. */
export function sendError(res: ServerResponse, e: ErrorBody, accept: string | undefined, extraHeaders: readonly string[] = []): void {
  const json = wantsJson(accept);
  const body = errorBody(e, json);
  const headers = errorHeaders(e.code, e.requestId, json);
  headers.push('content-length', String(Buffer.byteLength(body)), ...extraHeaders);
  res.writeHead(errorStatus[e.code], headers);
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

/** Writes a whole error response on a raw socket (CONNECT, upgrades and unparsable requests). */
export function rawErrorResponse(e: ErrorBody, json = false): string {
  const status = errorStatus[e.code];
  const body = errorBody(e, json);
  const headers = errorHeaders(e.code, e.requestId, json);
  let head = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\n`;
  for (let i = 0; i < headers.length; i += 2) head += `${headers[i]}: ${headers[i + 1]}\r\n`;
  return `${head}content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`;
}
