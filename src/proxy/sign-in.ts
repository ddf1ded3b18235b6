/**
 * Sign-in over HTTP: the auth host's `/.gatehouse/login`, `/callback`, `/logout`, `/cli`, `/cli/token` and
 * `/.well-known/jwks.json`, and each route host's `/.gatehouse/handoff` and `/.gatehouse/logout`.
 *
 * Login happens once, on the auth host; each route host then gets its own host-only cookie through a
 * single-use, short-lived hand-off code. Login state is per attempt (a cookie named after the attempt), so
 * sign-ins in parallel tabs do not disturb each other. Return URLs are only ever a route or the auth host.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createHash, randomBytes } from 'node:crypto';
import { GatehouseError, messageOf, type ErrorCode, type Logger } from '../core/index.ts';
import { SESSION_COOKIE, readCookie, sha256, type Session, type SessionBook, type OidcClient } from '../authn/index.ts';
import type { RouteTable } from './route-table.ts';
import type { Directory } from '../directory/index.ts';
import { normalizePath } from './normalize-path.ts';

export interface SignInState {
  readonly authHost: string;
  readonly publicPort: number;
  readonly routes: RouteTable;
  readonly sessions: SessionBook;
  readonly oidc: OidcClient | undefined;
  readonly allowedDomains: ReadonlySet<string>;
  readonly sessionTtlMs: number;
  readonly jwks: () => string;
  /** records users on sign-in; absent in states built without one */
  readonly directory?: Directory | undefined;
}

type Refuse = (code: ErrorCode, message: string) => void;

const loginCookiePrefix = '__Host-gatehouse-login-';

export function originOf(host: string, port: number): string {
  return `https://${host}${port === 443 ? '' : `:${port}`}`;
}

function redirect(res: ServerResponse, location: string, cookies: string[] = [], requestId = ''): void {
  const headers = ['location', location, 'cache-control', 'no-store', 'content-length', '0', 'referrer-policy', 'no-referrer'];
  for (const c of cookies) headers.push('set-cookie', c);
  if (requestId) headers.push('x-request-id', requestId);
  res.writeHead(302, headers);
  res.end();
}

function sessionCookie(value: string, maxAgeS: number): string {
  return `${SESSION_COOKIE}=${value}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=${maxAgeS}`;
}

function clearCookie(name: string): string {
  return `${name}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0`;
}

function json(res: ServerResponse, status: number, body: unknown, requestId: string): void {
  const text = JSON.stringify(body);
  res.writeHead(status, [
    'content-type', 'application/json',
    'cache-control', 'no-store',
    'content-length', String(Buffer.byteLength(text)),
    'x-request-id', requestId,
  ]);
  res.end(text);
}

/** Reads a small request body (forms and JSON on the CLI token endpoint); refuses more than 8 KiB. */
function readSmallBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let size = 0;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > 8192) {
        reject(new GatehouseError('ERR_BODY_TOO_LARGE', 'the request body is too large'));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/** A loopback redirect URI for the CLI: http://127.0.0.1:PORT/… or http://[::1]:PORT/… or localhost. */
export function isLoopbackRedirect(uri: string): boolean {
  let u: URL;
  try {
    u = new URL(uri);
  } catch {
    return false;
  }
  return u.protocol === 'http:' && !!u.port && ['127.0.0.1', '[::1]', 'localhost'].includes(u.hostname) && !u.username && !u.password && !u.hash;
}

export class SignIn {
  readonly #log: Logger;

  constructor(log: Logger) {
    this.#log = log;
  }

  /** The absolute return URL when it is a route or the auth host on the front door's port; else undefined. */
  safeReturn(s: SignInState, raw: string | null | undefined): URL | undefined {
    if (!raw) return new URL(originOf(s.authHost, s.publicPort) + '/');
    let u: URL;
    try {
      u = new URL(raw);
    } catch {
      return undefined;
    }
    if (u.protocol !== 'https:' || u.username || u.password) return undefined;
    const port = u.port ? Number(u.port) : 443;
    if (port !== s.publicPort) return undefined;
    const host = u.hostname.toLowerCase();
    if (host !== s.authHost && !s.routes.match(host)) return undefined;
    // checked as the front door will see it: %2E and // would otherwise hide a /.gatehouse/ path
    const path = normalizePath(u.pathname);
    if (path === undefined || path.startsWith('/.gatehouse/')) return undefined;
    return u;
  }

  /** The URL of the auth host's login page for a request to `returnTo`. */
  loginUrl(s: SignInState, returnTo: string): string {
    return `${originOf(s.authHost, s.publicPort)}/.gatehouse/login?return=${encodeURIComponent(returnTo)}`;
  }

  /** The signed-in session on this host (auth host or route host), from its host-only cookie. */
  async session(s: SignInState, req: IncomingMessage, host: string): Promise<{ session: Session; secret: string } | undefined> {
    const secret = s.sessions.secretFromCookie(readCookie(req.headers.cookie, SESSION_COOKIE), host);
    if (!secret) return undefined;
    const session = await s.sessions.find(secret);
    return session ? { session, secret } : undefined;
  }

  // ------------------------------------------------------------------ auth host

  async authHost(s: SignInState, req: IncomingMessage, res: ServerResponse, path: string, query: URLSearchParams, id: string, refuse: Refuse): Promise<boolean> {
    switch (path) {
      case '/.well-known/jwks.json': {
        const body = s.jwks();
        res.writeHead(200, ['content-type', 'application/json', 'cache-control', 'max-age=300', 'content-length', String(Buffer.byteLength(body)), 'x-request-id', id]);
        res.end(body);
        return true;
      }
      case '/.gatehouse/login':
        await this.#login(s, req, res, query, id, refuse);
        return true;
      case '/.gatehouse/callback':
        await this.#callback(s, req, res, query, id, refuse);
        return true;
      case '/.gatehouse/logout':
        await this.#authLogout(s, req, res, query, id);
        return true;
      case '/.gatehouse/cli':
        await this.#cli(s, req, res, query, id, refuse);
        return true;
      case '/.gatehouse/cli/token':
        await this.#cliToken(s, req, res, id, refuse);
        return true;
      default:
        return false;
    }
  }

  async #login(s: SignInState, req: IncomingMessage, res: ServerResponse, query: URLSearchParams, id: string, refuse: Refuse): Promise<void> {
    const returnTo = this.safeReturn(s, query.get('return'));
    if (!returnTo) return refuse('ERR_RETURN_URL_INVALID', 'the return address is not a route of this Gatehouse');
    const current = await this.session(s, req, s.authHost);
    if (current) return this.#continueTo(s, res, current.secret, returnTo, [], id);
    await this.#startLogin(s, res, returnTo.href, undefined, id, refuse);
  }

  async #startLogin(
    s: SignInState,
    res: ServerResponse,
    returnTo: string,
    cli: { challenge: string; redirectUri: string; state: string } | undefined,
    id: string,
    refuse: Refuse,
  ): Promise<void> {
    if (!s.oidc) return refuse('ERR_LOGIN_NOT_CONFIGURED', 'sign-in is not configured (identity.oidc)');
    const state = randomBytes(24).toString('base64url');
    const nonce = randomBytes(24).toString('base64url');
    const verifier = randomBytes(32).toString('base64url');
    const binding = randomBytes(24).toString('base64url');
    let url: URL;
    try {
      url = await s.oidc.authorizationUrl(`${originOf(s.authHost, s.publicPort)}/.gatehouse/callback`, state, nonce, verifier);
    } catch (err) {
      return refuse(err instanceof GatehouseError ? err.code : 'ERR_IDP_UNAVAILABLE', messageOf(err));
    }
    await s.sessions.saveAttempt(state, { nonce, verifier, returnTo, binding: sha256(binding), ...(cli ? { cli } : {}) });
    const cookie = `${loginCookiePrefix}${sha256(state).slice(0, 16)}=${binding}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=600`;
    redirect(res, url.href, [cookie], id);
  }

  async #callback(s: SignInState, req: IncomingMessage, res: ServerResponse, query: URLSearchParams, id: string, refuse: Refuse): Promise<void> {
    if (!s.oidc) return refuse('ERR_LOGIN_NOT_CONFIGURED', 'sign-in is not configured (identity.oidc)');
    const state = query.get('state');
    if (!state) return refuse('ERR_LOGIN_FAILED', 'the sign-in answer has no state');
    const cookieName = `${loginCookiePrefix}${sha256(state).slice(0, 16)}`;
    const binding = readCookie(req.headers.cookie, cookieName);
    const attempt = await s.sessions.takeAttempt(state);
    if (!attempt) return refuse('ERR_LOGIN_FAILED', 'this sign-in attempt is unknown, was already used, or has expired; please start again');
    if (!binding || sha256(binding) !== attempt.binding) {
      return refuse('ERR_LOGIN_FAILED', 'this sign-in was started in another browser');
    }
    if (query.get('error')) {
      return refuse('ERR_LOGIN_FAILED', `the identity provider refused the sign-in: ${query.get('error')} ${query.get('error_description') ?? ''}`.trim());
    }
    const callbackUrl = new URL(`${originOf(s.authHost, s.publicPort)}/.gatehouse/callback?${query.toString()}`);
    let who;
    try {
      who = await s.oidc.exchange(callbackUrl, { state, nonce: attempt.nonce, verifier: attempt.verifier });
    } catch (err) {
      this.#log.warn('login_failed', { id, error: messageOf(err) });
      return refuse(err instanceof GatehouseError ? err.code : 'ERR_LOGIN_FAILED', messageOf(err));
    }
    const domain = who.email.slice(who.email.lastIndexOf('@') + 1);
    if (s.allowedDomains.size > 0 && !s.allowedDomains.has(domain)) {
      this.#log.warn('login_refused', { id, user: who.email, reason: 'domain not allowed' });
      return refuse('ERR_DOMAIN_NOT_ALLOWED', `accounts of ${domain} may not sign in here`);
    }
    let disabled: boolean;
    try {
      disabled = (await s.directory?.recordSignIn(who.email, req.socket.remoteAddress))?.disabled === true;
    } catch (err) {
      if (err instanceof GatehouseError && err.code !== 'ERR_STORE_UNAVAILABLE') return refuse(err.code, err.message);
      throw err; // the front door answers a store outage (503, nothing changed) and anything else
    }
    if (disabled) return refuse('ERR_USER_DISABLED', `${who.email} is disabled`);
    const { secret } = await s.sessions.create(who.email, who.groups, who.idToken);
    this.#log.info('signed_in', { id, user: who.email, groups: who.groups.length });
    const cookies = [sessionCookie(s.sessions.cookieValue(secret, s.authHost), Math.floor(s.sessionTtlMs / 1000)), clearCookie(cookieName)];
    if (attempt.cli) {
      const code = await s.sessions.cliCode(who.email, who.groups, attempt.cli.challenge, attempt.cli.redirectUri);
      const to = new URL(attempt.cli.redirectUri);
      to.searchParams.set('code', code);
      to.searchParams.set('state', attempt.cli.state);
      return redirect(res, to.href, cookies, id);
    }
    const returnTo = this.safeReturn(s, attempt.returnTo) ?? new URL(originOf(s.authHost, s.publicPort) + '/');
    await this.#continueTo(s, res, secret, returnTo, cookies, id);
  }

  /** Sends a signed-in browser on to `returnTo`: straight there on the auth host, through a hand-off code on a route. */
  async #continueTo(s: SignInState, res: ServerResponse, secret: string, returnTo: URL, cookies: string[], id: string): Promise<void> {
    if (returnTo.hostname === s.authHost) return redirect(res, returnTo.href, cookies, id);
    const code = await s.sessions.handoff(secret, returnTo.hostname, returnTo.pathname + returnTo.search);
    redirect(res, `${returnTo.origin}/.gatehouse/handoff?code=${encodeURIComponent(code)}`, cookies, id);
  }

  async #authLogout(s: SignInState, req: IncomingMessage, res: ServerResponse, query: URLSearchParams, id: string): Promise<void> {
    const current = await this.session(s, req, s.authHost);
    let idToken: string | undefined;
    if (current) {
      idToken = s.sessions.idToken(current.session);
      await s.sessions.revoke(current.session.id);
      this.#log.info('signed_out', { id, user: current.session.user });
    }
    const carried = query.get('continue');
    if (!idToken && carried) idToken = await s.sessions.takeLogout(carried);
    const after = `${originOf(s.authHost, s.publicPort)}/.gatehouse/signed-out`;
    const idp = s.oidc ? await s.oidc.endSessionUrl(idToken, undefined) : undefined;
    redirect(res, idp?.href ?? after, [clearCookie(SESSION_COOKIE)], id);
  }

  // ------------------------------------------------------------------ CLI sign-in

  async #cli(s: SignInState, req: IncomingMessage, res: ServerResponse, query: URLSearchParams, id: string, refuse: Refuse): Promise<void> {
    const redirectUri = query.get('redirect_uri') ?? '';
    const challenge = query.get('code_challenge') ?? '';
    const state = query.get('state') ?? '';
    if (!isLoopbackRedirect(redirectUri)) return refuse('ERR_RETURN_URL_INVALID', 'redirect_uri must be http://127.0.0.1:PORT/… (a loopback address)');
    if (!/^[A-Za-z0-9_-]{43}$/.test(challenge) || query.get('code_challenge_method') !== 'S256') {
      return refuse('ERR_BAD_REQUEST', 'a PKCE code_challenge with code_challenge_method=S256 is required');
    }
    if (!state) return refuse('ERR_BAD_REQUEST', 'state is required');
    const current = await this.session(s, req, s.authHost);
    if (current) {
      const code = await s.sessions.cliCode(current.session.user, current.session.groups, challenge, redirectUri);
      const to = new URL(redirectUri);
      to.searchParams.set('code', code);
      to.searchParams.set('state', state);
      return redirect(res, to.href, [], id);
    }
    await this.#startLogin(s, res, `${originOf(s.authHost, s.publicPort)}/`, { challenge, redirectUri, state }, id, refuse);
  }

  async #cliToken(s: SignInState, req: IncomingMessage, res: ServerResponse, id: string, refuse: Refuse): Promise<void> {
    if (req.method !== 'POST') return refuse('ERR_METHOD_NOT_ALLOWED', 'use POST');
    let fields: Record<string, string>;
    try {
      const text = await readSmallBody(req);
      fields = (req.headers['content-type'] ?? '').includes('json')
        ? (JSON.parse(text) as Record<string, string>)
        : Object.fromEntries(new URLSearchParams(text));
    } catch (err) {
      return refuse(err instanceof GatehouseError ? err.code : 'ERR_BAD_REQUEST', 'the body must be a form or JSON with code and code_verifier');
    }
    const code = await s.sessions.redeemCliCode(String(fields.code ?? ''));
    const verifier = String(fields.code_verifier ?? '');
    if (!code) return refuse('ERR_TOKEN_INVALID', 'the code is unknown, used or expired');
    const challenge = createHash('sha256').update(verifier).digest('base64url');
    if (challenge !== code.challenge) return refuse('ERR_TOKEN_INVALID', 'the code_verifier does not match the code_challenge');
    const { token, record } = await s.sessions.issueToken(code.user, String(fields.name || 'cli'), s.sessionTtlMs, 'cli', code.groups);
    this.#log.info('token_issued', { id, user: code.user, token: record.id.slice(0, 12), kind: 'cli' });
    json(res, 200, { token, user: code.user, expires: new Date(record.expires).toISOString() }, id);
  }

  // ------------------------------------------------------------------ route hosts

  /** `/.gatehouse/…` on a route host; false when the path is not one of them. */
  async routeHost(s: SignInState, req: IncomingMessage, res: ServerResponse, host: string, path: string, query: URLSearchParams, id: string, refuse: Refuse): Promise<boolean> {
    if (path === '/.gatehouse/handoff') {
      const code = query.get('code');
      const redeemed = code ? await s.sessions.redeem(code, host) : undefined;
      if (!redeemed) return refuse('ERR_HANDOFF_INVALID', 'this sign-in link is unknown, already used, expired, or made for another site'), true;
      const session = await s.sessions.find(redeemed.secret);
      if (!session) return refuse('ERR_HANDOFF_INVALID', 'the session behind this sign-in link has ended'), true;
      const cookie = sessionCookie(s.sessions.cookieValue(redeemed.secret, host), Math.max(1, Math.floor((session.expires - Date.now()) / 1000)));
      const target = redeemed.returnPath.startsWith('/') && !redeemed.returnPath.startsWith('//') ? redeemed.returnPath : '/';
      redirect(res, target, [cookie], id);
      return true;
    }
    if (path === '/.gatehouse/logout') {
      const current = await this.session(s, req, host);
      let next = `${originOf(s.authHost, s.publicPort)}/.gatehouse/logout`;
      if (current) {
        const idToken = s.sessions.idToken(current.session);
        await s.sessions.revoke(current.session.id);
        this.#log.info('signed_out', { id, user: current.session.user, host });
        if (idToken) next += `?continue=${encodeURIComponent(await s.sessions.carryLogout(idToken))}`;
      }
      redirect(res, next, [clearCookie(SESSION_COOKIE)], id);
      return true;
    }
    return false;
  }
}
