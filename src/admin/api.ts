/**
 * The JSON API at `https://AUTHHOST/api/v1/…` (docs/api.md): one error boundary for every operation. In order:
 * who is calling (session cookie or bearer token; disabled users refused), CSRF for cookie-authenticated changes,
 * the operation (404, or 405 with `Allow`), its JSON body, then the operation itself — which authorises the
 * caller itself or through the directory. Directory errors keep their codes; anything else is a logged 500.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { GatehouseError, errorStatus, publicMessage, type ErrorCode } from '../core/index.ts';
import type { AuthHostRequest, Principal } from '../proxy/index.ts';
import type { AdminOptions } from './options.ts';
import { readJsonBody } from './api-body.ts';
import { STREAMED, type ApiCall } from './api-call.ts';
import { rootAdminsOf } from './api-facts.ts';
import { sendApiError, sendJson, sendNoContent } from './api-reply.ts';
import { API_PREFIX, matchApiRoute } from './api-routes.ts';

export { API_ROUTES, API_PREFIX } from './api-routes.ts';

const SAFE_METHODS = new Set(['GET', 'HEAD']);
const BEARER_CHALLENGE = 'Bearer realm="gatehouse"';

/** Extra headers an error answer needs. */
function errorHeaders(code: ErrorCode): string[] {
  if (code === 'ERR_NOT_SIGNED_IN') return ['www-authenticate', BEARER_CHALLENGE];
  if (code === 'ERR_TOKEN_INVALID') return ['www-authenticate', `${BEARER_CHALLENGE}, error="invalid_token"`];
  // the rest of an oversized body is left unread: end the connection after the answer
  if (code === 'ERR_BODY_TOO_LARGE') return ['connection', 'close'];
  return [];
}

/** A cookie-authenticated change must come from the dashboard's own origin. */
function sameOrigin(req: IncomingMessage, origin: string): boolean {
  return req.headers['sec-fetch-site'] === 'same-origin' || req.headers.origin === origin;
}

async function authenticate(request: AuthHostRequest): Promise<Principal> {
  const who = await request.principal();
  if (!who) throw new GatehouseError('ERR_NOT_SIGNED_IN', 'sign in, or send Authorization: Bearer TOKEN');
  if ('invalidToken' in who) throw new GatehouseError('ERR_TOKEN_INVALID', 'the bearer token is unknown, revoked or expired');
  if (who.user.disabled) throw new GatehouseError('ERR_USER_DISABLED', `${who.user.email.toLowerCase()} is disabled`);
  return who;
}

async function dispatch(o: AdminOptions, req: IncomingMessage, res: ServerResponse, request: AuthHostRequest): Promise<void> {
  const method = req.method ?? 'GET';
  const principal = await authenticate(request);
  if (principal.via === 'session' && !SAFE_METHODS.has(method) && !sameOrigin(req, request.origin)) {
    throw new GatehouseError('ERR_CSRF', 'a change made with the session cookie must come from the dashboard (Sec-Fetch-Site: same-origin or Origin)');
  }
  const sub = request.path.slice(API_PREFIX.length);
  const match = matchApiRoute(method, sub);
  if (match.kind === 'none') {
    sendApiError(res, request.requestId, 'ERR_NOT_FOUND', `there is no API operation at ${request.path}`);
    return;
  }
  if (match.kind === 'wrong-method') {
    sendApiError(res, request.requestId, 'ERR_METHOD_NOT_ALLOWED', `${method} is not allowed on ${request.path}`, ['allow', match.allow.join(', ')]);
    return;
  }
  const body = await readJsonBody(req, match.route.body);
  const me = principal.user.email.toLowerCase();
  const call: ApiCall = {
    o,
    req,
    res,
    request,
    principal,
    me,
    actor: { email: me, from: request.clientIp },
    root: rootAdminsOf(o).has(me),
    params: match.params,
  };
  const reply = await match.route.handle(call, body);
  if (reply === STREAMED) return;
  if (reply.status === 204) sendNoContent(res, request.requestId);
  else sendJson(res, request.requestId, reply.status, reply.body);
}

export async function handleApi(o: AdminOptions, req: IncomingMessage, res: ServerResponse, request: AuthHostRequest): Promise<void> {
  try {
    await dispatch(o, req, res, request);
  } catch (err) {
    if (res.headersSent) {
      // a stream that broke half-way: the client sees the connection end without the last chunk
      o.log?.error('api_failed', { id: request.requestId, method: req.method, path: request.path, error: err instanceof Error ? err.stack : String(err) });
      res.destroy();
      return;
    }
    if (err instanceof GatehouseError) {
      // ERR_USAGE is a CLI code; over HTTP it is a bad request
      const code: ErrorCode = err.code === 'ERR_USAGE' ? 'ERR_BAD_REQUEST' : err.code;
      if (code === 'ERR_STORE_UNAVAILABLE') o.log?.warn('store_unavailable', { id: request.requestId, method: req.method, path: request.path, error: err.message });
      else if (errorStatus[code] >= 500) o.log?.error('api_failed', { id: request.requestId, method: req.method, path: request.path, code, error: err.stack });
      sendApiError(res, request.requestId, code, publicMessage(err), errorHeaders(code));
      return;
    }
    o.log?.error('api_failed', { id: request.requestId, method: req.method, path: request.path, error: err instanceof Error ? err.stack : String(err) });
    sendApiError(res, request.requestId, 'ERR_INTERNAL', 'Gatehouse could not handle this request');
  }
}
