/**
 * The dashboard on the auth host: `index.html` for every page path (the app routes on the client), and the
 * static files under `/assets/` from a fixed allow-list, each read once and kept in memory with a strong ETag.
 * Every answer carries a strict Content-Security-Policy: the app has no inline script or style.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ErrorCode } from '../core/index.ts';
import { sendError, type AuthHostRequest } from '../proxy/index.ts';

export const DASHBOARD_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/** The files served under `/assets/`: nothing else is ever read from disk, whatever the request path says. */
export const ASSET_FILES: Readonly<Record<string, string>> = Object.freeze({
  'app.js': 'text/javascript; charset=utf-8',
  'app.css': 'text/css; charset=utf-8',
  'lib.js': 'text/javascript; charset=utf-8',
  'favicon.svg': 'image/svg+xml',
  'pages/access.js': 'text/javascript; charset=utf-8',
  'pages/sessions.js': 'text/javascript; charset=utf-8',
  'pages/devices.js': 'text/javascript; charset=utf-8',
  'pages/connectors.js': 'text/javascript; charset=utf-8',
  'pages/requests.js': 'text/javascript; charset=utf-8',
  'pages/roles.js': 'text/javascript; charset=utf-8',
  'pages/users.js': 'text/javascript; charset=utf-8',
  'pages/service-accounts.js': 'text/javascript; charset=utf-8',
  'pages/audit.js': 'text/javascript; charset=utf-8',
  'pages/explain.js': 'text/javascript; charset=utf-8',
});

const INDEX = 'index.html';
const ASSET_DIR = new URL('./assets/', import.meta.url);

/** The paths the app renders; each is answered with index.html so reloads and deep links work. */
const PAGE_PATHS: ReadonlySet<string> = new Set([
  '/',
  '/access',
  '/request-access',
  '/requests',
  '/roles',
  '/users',
  '/service-accounts',
  '/audit',
  '/explain',
  '/sessions',
  '/devices',
  '/connectors',
]);
const ROLE_PAGE = /^\/roles\/[a-z0-9-]+$/;

export function isPagePath(path: string): boolean {
  return PAGE_PATHS.has(path) || ROLE_PAGE.test(path);
}

const securityHeaders = [
  'content-security-policy', DASHBOARD_CSP,
  'x-frame-options', 'DENY',
  'referrer-policy', 'same-origin',
];

interface Asset {
  readonly body: Buffer;
  readonly type: string;
  readonly etag: string;
}

/** In memory after the first read; a failed read is forgotten so the next request tries again. */
const loaded = new Map<string, Promise<Asset>>();

function asset(name: string, type: string): Promise<Asset> {
  let p = loaded.get(name);
  if (!p) {
    p = readFile(new URL(name, ASSET_DIR)).then((body) => ({
      body,
      type,
      etag: `"${createHash('sha256').update(body).digest('base64url')}"`,
    }));
    p.catch(() => loaded.delete(name));
    loaded.set(name, p);
  }
  return p;
}

/** Whether an If-None-Match header names this ETag (weak comparison, as RFC 9110 asks for If-None-Match). */
export function etagMatches(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  return header.split(',').some((t) => {
    const tag = t.trim();
    return tag === '*' || tag === etag || tag === `W/${etag}`;
  });
}

function sendAsset(req: IncomingMessage, res: ServerResponse, request: AuthHostRequest, a: Asset): void {
  const common = ['etag', a.etag, 'cache-control', 'no-cache', 'x-request-id', request.requestId, 'x-content-type-options', 'nosniff', ...securityHeaders];
  if (etagMatches(req.headers['if-none-match'], a.etag)) {
    res.writeHead(304, common);
    res.end();
    return;
  }
  res.writeHead(200, ['content-type', a.type, 'content-length', String(a.body.length), ...common]);
  res.end(req.method === 'HEAD' ? undefined : a.body);
}

function refuse(req: IncomingMessage, res: ServerResponse, request: AuthHostRequest, code: ErrorCode, message: string, extra: readonly string[] = []): void {
  sendError(res, { code, message, requestId: request.requestId }, req.headers.accept, [...securityHeaders, ...extra]);
}

/** Answers the dashboard's paths; resolves false for any other path (the front door then answers 404). */
export async function serveDashboard(req: IncomingMessage, res: ServerResponse, request: AuthHostRequest): Promise<boolean> {
  const path = request.path;
  const method = req.method ?? 'GET';
  if (path.startsWith('/assets/')) {
    const name = path.slice('/assets/'.length);
    const type = Object.hasOwn(ASSET_FILES, name) ? ASSET_FILES[name] : undefined;
    if (type === undefined) return false;
    if (method !== 'GET' && method !== 'HEAD') {
      refuse(req, res, request, 'ERR_METHOD_NOT_ALLOWED', `${method} is not allowed on ${path}`, ['allow', 'GET, HEAD']);
      return true;
    }
    sendAsset(req, res, request, await asset(name, type));
    return true;
  }
  if (!isPagePath(path)) return false;
  if (method !== 'GET' && method !== 'HEAD') {
    refuse(req, res, request, 'ERR_METHOD_NOT_ALLOWED', `${method} is not allowed on ${path}`, ['allow', 'GET, HEAD']);
    return true;
  }
  const who = await request.principal();
  if (!who || 'invalidToken' in who) {
    const query = request.query.toString();
    res.writeHead(302, [
      'location', request.loginUrl(request.origin + path + (query ? `?${query}` : '')),
      'cache-control', 'no-store',
      'content-length', '0',
      'x-request-id', request.requestId,
      'x-content-type-options', 'nosniff',
      ...securityHeaders,
    ]);
    res.end();
    return true;
  }
  if (who.user.disabled) {
    refuse(req, res, request, 'ERR_USER_DISABLED', `${who.user.email} is disabled; ask an administrator`);
    return true;
  }
  sendAsset(req, res, request, await asset(INDEX, 'text/html; charset=utf-8'));
  return true;
}
