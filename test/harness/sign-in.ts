/**
 * Sign-in end to end: a real OpenID provider (src/demo/idp.ts), an echo backend, and Gatehouse (in this process
 * or as a real `gatehouse serve` child) on a port chosen before the IdP client is registered, because the redirect
 * URI `https://AUTHHOST:PORT/.gatehouse/callback` contains it.
 *
 * `WebClient` is a small browser made of node's https client: a cookie jar (host-only cookies, paths, expiry),
 * redirects followed one hop at a time (every hop kept, so tests can look at hand-off codes and Set-Cookie), new
 * connections by default, and the IdP's sign-in form filled in by `signInOverHttp`. Every name resolves to 127.0.0.1;
 * TLS is verified against the test CA with the URL's host as SNI.
 */
import assert from 'node:assert/strict';
import { request as httpRequest, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createServer, type AddressInfo } from 'node:net';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import type { Page } from 'playwright-core';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JSONWebKeySet, type JWTPayload } from 'jose';
import { TestCa, type CertFiles } from './certs.ts';
import { startEcho, type Backend } from './backends.ts';
import { startGatehouse, type RunningGatehouse } from './gatehouse.ts';
import { startServe, type ServeProcess } from './serve-process.ts';
import { loginInBrowser, startIdp, type IdpUser, type RunningIdp } from './idp.ts';
import { tempDir } from './tmp.ts';

export const AUTH_HOST = 'gate.test';
export const OIDC_CLIENT_ID = 'gatehouse';
export const OIDC_CLIENT_SECRET = 'gatehouse-test-client-secret';
export const SESSION_COOKIE_NAME = '__Host-gatehouse';

/** A TCP port that was free a moment ago on 127.0.0.1 (bound, then closed). */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

/** PKCE pair (S256), as a CLI would make it. */
export function pkcePair(): { verifier: string; challenge: string } {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

// ---------------------------------------------------------------------------------------------- cookies

export interface JarCookie {
  readonly host: string;
  readonly name: string;
  readonly value: string;
  readonly path: string;
  /** ms since the epoch; undefined for a session cookie */
  readonly expires: number | undefined;
  readonly secure: boolean;
  readonly httpOnly: boolean;
  readonly sameSite: string | undefined;
}

/** Parses one Set-Cookie header (the attributes a test looks at). */
export function parseSetCookie(header: string, host: string, requestPath = '/'): JarCookie & { maxAge: number | undefined; domain: string | undefined } {
  const [pair = '', ...attrs] = header.split(';');
  const eq = pair.indexOf('=');
  const name = pair.slice(0, eq).trim();
  const value = pair.slice(eq + 1).trim();
  let path: string | undefined;
  let maxAge: number | undefined;
  let expires: number | undefined;
  let domain: string | undefined;
  let secure = false;
  let httpOnly = false;
  let sameSite: string | undefined;
  for (const a of attrs) {
    const i = a.indexOf('=');
    const key = (i < 0 ? a : a.slice(0, i)).trim().toLowerCase();
    const v = i < 0 ? '' : a.slice(i + 1).trim();
    if (key === 'path' && v.startsWith('/')) path = v;
    else if (key === 'max-age') maxAge = Number(v);
    else if (key === 'expires') expires = Date.parse(v);
    else if (key === 'domain') domain = v.replace(/^\./, '').toLowerCase();
    else if (key === 'secure') secure = true;
    else if (key === 'httponly') httpOnly = true;
    else if (key === 'samesite') sameSite = v;
  }
  if (maxAge !== undefined) expires = Date.now() + maxAge * 1000;
  const defaultPath = requestPath.lastIndexOf('/') > 0 ? requestPath.slice(0, requestPath.lastIndexOf('/')) : '/';
  return { host, name, value, path: path ?? defaultPath, expires, secure, httpOnly, sameSite, maxAge, domain };
}

function pathMatches(requestPath: string, cookiePath: string): boolean {
  if (requestPath === cookiePath) return true;
  if (!requestPath.startsWith(cookiePath)) return false;
  return cookiePath.endsWith('/') || requestPath[cookiePath.length] === '/';
}

/** Host-only cookies by (host, name, path), as a browser keeps them for the sites these tests use. */
export class CookieJar {
  #cookies: JarCookie[] = [];

  /** Takes the Set-Cookie headers of a response to `url`. */
  take(url: URL, setCookies: readonly string[]): void {
    for (const header of setCookies) {
      const c = parseSetCookie(header, url.hostname, url.pathname);
      this.#cookies = this.#cookies.filter((k) => !(k.host === c.host && k.name === c.name && k.path === c.path));
      if (c.expires === undefined || c.expires > Date.now()) {
        this.#cookies.push({ host: c.host, name: c.name, value: c.value, path: c.path, expires: c.expires, secure: c.secure, httpOnly: c.httpOnly, sameSite: c.sameSite });
      }
    }
  }

  /** The Cookie header for `url`, or undefined. */
  header(url: URL): string | undefined {
    const now = Date.now();
    const send = this.#cookies
      .filter((c) => c.host === url.hostname && pathMatches(url.pathname, c.path) && (!c.secure || url.protocol === 'https:') && (c.expires === undefined || c.expires > now))
      .sort((a, b) => b.path.length - a.path.length);
    return send.length ? send.map((c) => `${c.name}=${c.value}`).join('; ') : undefined;
  }

  get(host: string, name: string): JarCookie | undefined {
    return this.#cookies.find((c) => c.host === host && c.name === name && (c.expires === undefined || c.expires > Date.now()));
  }

  set(host: string, name: string, value: string, path = '/'): void {
    this.take(new URL(`https://${host}${path}`), [`${name}=${value}; Path=${path}; Secure`]);
  }

  remove(host: string, name: string): void {
    this.#cookies = this.#cookies.filter((c) => !(c.host === host && c.name === name));
  }

  all(): readonly JarCookie[] {
    const now = Date.now();
    return this.#cookies.filter((c) => c.expires === undefined || c.expires > now);
  }

  /** A copy that changes independently (a second "browser" with the same cookies). */
  clone(): CookieJar {
    const j = new CookieJar();
    j.#cookies = [...this.#cookies];
    return j;
  }
}

// ---------------------------------------------------------------------------------------------- requests

export interface WebResponse {
  readonly url: URL;
  readonly method: string;
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly setCookies: readonly string[];
  readonly body: string;
  /** the absolute Location, when there is one */
  readonly location: URL | undefined;
  /** the x-gatehouse-error header */
  readonly code: string | undefined;
}

export interface RequestOptions {
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  /** send and store cookies (default true) */
  cookies?: boolean;
}

export class WebClient {
  readonly jar: CookieJar;
  readonly #ca: string;
  readonly #accept: string;

  /** `ca`: the PEM of the CA that signed Gatehouse's server certificate. `accept` is sent unless a request sets its own. */
  constructor(options: { ca: string; jar?: CookieJar; accept?: string }) {
    this.#ca = options.ca;
    this.jar = options.jar ?? new CookieJar();
    this.#accept = options.accept ?? 'text/html,application/xhtml+xml;q=0.9,*/*;q=0.8';
  }

  /** One request on a new connection to 127.0.0.1 (https with SNI = the URL's host, verified by the test CA). */
  request(target: string | URL, options: RequestOptions = {}): Promise<WebResponse> {
    const url = typeof target === 'string' ? new URL(target) : target;
    const method = options.method ?? 'GET';
    const headers: Record<string, string> = { host: url.host, accept: this.#accept, ...lowerKeys(options.headers ?? {}) };
    const cookie = options.cookies === false ? undefined : this.jar.header(url);
    if (cookie && headers.cookie === undefined) headers.cookie = cookie;
    if (options.body !== undefined) headers['content-length'] = String(Buffer.byteLength(options.body));
    const https = url.protocol === 'https:';
    const port = Number(url.port) || (https ? 443 : 80);
    return new Promise((resolve, reject) => {
      const common = { host: '127.0.0.1', port, method, path: url.pathname + url.search, headers, agent: false as const };
      const onResponse = (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const setCookies = res.headers['set-cookie'] ?? [];
          if (options.cookies !== false) this.jar.take(url, setCookies);
          const loc = res.headers.location;
          resolve({
            url,
            method,
            status: res.statusCode ?? 0,
            headers: res.headers,
            setCookies,
            body: Buffer.concat(chunks).toString('utf8'),
            location: loc ? new URL(loc, url) : undefined,
            code: res.headers['x-gatehouse-error'] as string | undefined,
          });
        });
      };
      const req = https ? httpsRequest({ ...common, servername: url.hostname, ca: this.#ca }, onResponse) : httpRequest(common, onResponse);
      req.on('error', reject);
      req.setTimeout(15_000, () => req.destroy(new Error(`${method} ${url.href}: no answer within 15 s`)));
      req.end(options.body);
    });
  }

  /**
   * Requests `target` and follows redirects (303 and 302 after POST become GET), one hop at a time, until an answer
   * that is not a redirect, or `stop` says so, or `maxHops`. Returns every hop.
   */
  async follow(
    target: string | URL,
    options: RequestOptions & { stop?: (r: WebResponse) => boolean; maxHops?: number } = {},
  ): Promise<{ hops: WebResponse[]; last: WebResponse }> {
    const hops: WebResponse[] = [];
    let next: URL = typeof target === 'string' ? new URL(target) : target;
    let req: RequestOptions = options;
    for (let i = 0; i < (options.maxHops ?? 20); i++) {
      const r = await this.request(next, req);
      hops.push(r);
      if (options.stop?.(r) || !r.location || r.status < 300 || r.status > 399) return { hops, last: r };
      if (r.location.protocol !== 'http:' && r.location.protocol !== 'https:') return { hops, last: r };
      next = r.location;
      if (r.status !== 307 && r.status !== 308 && req.method !== undefined && req.method !== 'GET') {
        // the method becomes GET: no body, and no headers that described it
        const headers = Object.fromEntries(Object.entries(req.headers ?? {}).filter(([k]) => !/^content-/i.test(k)));
        req = { headers, ...(req.cookies !== undefined ? { cookies: req.cookies } : {}) };
      }
    }
    throw new Error(`more than ${options.maxHops ?? 20} redirects from ${String(target)}: ${hops.map((h) => `${h.status} ${h.url.href}`).join(' → ')}`);
  }
}

function lowerKeys(h: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(h).map(([k, v]) => [k.toLowerCase(), v]));
}

/**
 * Signs in the way a browser would, with node's client: follows `start` to the IdP's sign-in form, submits the
 * credentials, and follows on (consent is automatic) until an answer that is not a redirect, or `stop`. Returns every
 * hop from the start, the form's submission included.
 */
export async function signInOverHttp(
  client: WebClient,
  start: string | URL,
  credentials: { email: string; password: string },
  options: { stop?: (r: WebResponse) => boolean } = {},
): Promise<{ hops: WebResponse[]; last: WebResponse }> {
  const first = await client.follow(start, { ...(options.stop ? { stop: options.stop } : {}) });
  const form = first.last;
  const action = /<form[^>]*action="([^"]+)"/.exec(form.body)?.[1];
  if (form.status !== 200 || !form.url.pathname.startsWith('/interaction/') || !action) {
    throw new Error(`expected the IdP's sign-in form, got ${form.status} ${form.url.href}: ${form.body.slice(0, 300)}`);
  }
  const body = new URLSearchParams({ email: credentials.email, password: credentials.password }).toString();
  const rest = await client.follow(new URL(action.replace(/&amp;/g, '&'), form.url), {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body,
    ...(options.stop ? { stop: options.stop } : {}),
  });
  return { hops: [...first.hops, ...rest.hops], last: rest.last };
}

/** In Chromium: opens `url`, completes the IdP's form, and waits until the page is back at `until` (default: `url`'s origin and path). */
export async function signInInBrowser(page: Page, url: string, credentials: { email: string; password: string }, until?: (u: URL) => boolean): Promise<void> {
  const want = new URL(url);
  await page.goto(url);
  const result = await loginInBrowser(page, credentials);
  if (result !== 'submitted') throw new Error(`the IdP refused ${credentials.email}'s password`);
  await page.waitForURL(until ?? ((u) => u.origin === want.origin && u.pathname === want.pathname), { timeout: 15_000 });
}

// ---------------------------------------------------------------------------------------------- the world

export interface GatehouseSetup {
  /** routes; `to` defaults to the echo backend */
  routes: Array<Record<string, unknown>>;
  roles?: unknown[];
  /** merged into `identity` (allowedDomains, session, admins…); `oidc` is filled in */
  identity?: Record<string, unknown>;
  /** merged into `server` */
  server?: Record<string, unknown>;
  /** `connectors:` of the configuration */
  connectors?: Array<{ name: string }>;
  /** the `store:` section; default a SQLite file of this Gatehouse's own (give the same etcd to share one state) */
  store?: Record<string, unknown>;
  /** run `gatehouse serve` as a child process instead of in this process */
  serve?: boolean;
}

export interface SignInGatehouse {
  readonly port: number;
  /** the in-process Gatehouse (absent with `serve`) */
  readonly gh: RunningGatehouse | undefined;
  /** the child process (only with `serve`) */
  readonly child: ServeProcess | undefined;
  /** https://HOST:PORT + path */
  url(host: string, path?: string): string;
  readonly authOrigin: string;
  close(): Promise<void>;
}

export interface SignInWorld {
  readonly dir: string;
  readonly ca: TestCa;
  readonly server: CertFiles;
  readonly echo: Backend;
  readonly idp: RunningIdp;
  /** the first Gatehouse */
  readonly main: SignInGatehouse;
  /** a node client trusting the test CA, with its own cookie jar */
  client(options?: { jar?: CookieJar; accept?: string }): WebClient;
  /** another Gatehouse on one of the ports reserved with `extraGatehouses` (its own store unless `setup.store` says) */
  startAnother(setup: GatehouseSetup): Promise<SignInGatehouse>;
  close(): Promise<void>;
}

export interface SignInWorldOptions extends GatehouseSetup {
  users: IdpUser[];
  /** how many more Gatehouse instances `startAnother` may start (their ports are registered at the IdP now) */
  extraGatehouses?: number;
}

/**
 * Starts the IdP (its client registered for every reserved port), the echo backend and the first Gatehouse
 * (auth host `gate.test`, server certificate for `*.corp.test` and `gate.test`, sqlite store in a temp dir).
 */
export async function startSignInWorld(options: SignInWorldOptions): Promise<SignInWorld> {
  const t = tempDir('gatehouse-signin-');
  const cleanups: Array<() => Promise<void> | void> = [() => t.cleanup()];
  const closeAll = async () => {
    for (const c of cleanups.reverse()) await Promise.resolve(c()).catch(() => undefined);
  };
  try {
    const ca = new TestCa(t.dir);
    const server = ca.server(['*.corp.test', AUTH_HOST]);
    const echo = await startEcho();
    cleanups.push(() => echo.close());
    const ports: number[] = [];
    for (let i = 0; i <= (options.extraGatehouses ?? 0); i++) {
      let p = await freePort();
      while (ports.includes(p)) p = await freePort();
      ports.push(p);
    }
    const idp = await startIdp({
      users: options.users,
      clients: [{ clientId: OIDC_CLIENT_ID, clientSecret: OIDC_CLIENT_SECRET, redirectUris: ports.map((p) => `https://${AUTH_HOST}:${p}/.gatehouse/callback`) }],
    });
    cleanups.push(() => idp.close());
    let n = 0;
    const start = async (setup: GatehouseSetup): Promise<SignInGatehouse> => {
      const port = ports[n];
      if (port === undefined) throw new Error('no reserved port left: raise extraGatehouses');
      const index = n++;
      const config = {
        server: { https: `127.0.0.1:${port}`, authHost: AUTH_HOST, workers: 1, accessLog: true, tls: { cert: server.cert, key: server.key }, ...setup.server },
        store: setup.store ?? { sqlite: { path: join(t.dir, `gatehouse-${index}.db`) } },
        identity: {
          oidc: { issuer: idp.issuer, clientId: OIDC_CLIENT_ID, clientSecret: OIDC_CLIENT_SECRET, scopes: ['openid', 'email', 'profile', 'groups'], groupsClaim: 'groups' },
          ...setup.identity,
        },
        routes: setup.routes.map((r) => ({ to: echo.origin, ...r })),
        roles: setup.roles ?? [],
        ...(setup.connectors ? { connectors: setup.connectors } : {}),
      };
      const url = (host: string, path = '/') => `https://${host}:${port}${path}`;
      if (setup.serve) {
        const dir = join(t.dir, `serve-${index}`);
        mkdirSync(dir);
        const child = await startServe(dir, config);
        const g: SignInGatehouse = { port, gh: undefined, child, url, authOrigin: url(AUTH_HOST, ''), close: async () => void (await child.stop()) };
        cleanups.push(() => g.close());
        return g;
      }
      const gh = await startGatehouse(t.dir, config, { name: `gatehouse-${index}.yaml` });
      const g: SignInGatehouse = { port, gh, child: undefined, url, authOrigin: url(AUTH_HOST, ''), close: () => gh.close() };
      cleanups.push(() => g.close());
      return g;
    };
    const main = await start(options);
    return {
      dir: t.dir,
      ca,
      server,
      echo,
      idp,
      main,
      client: (o = {}) => new WebClient({ ca: ca.certPem, ...o }),
      startAnother: start,
      close: closeAll,
    };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------- assertions

/** Changes one character in the middle of `s` (not the last: base64url's last character carries padding bits). */
export function flipChar(s: string, at = Math.floor(s.length / 2)): string {
  const c = s[at]!;
  return s.slice(0, at) + (c === 'A' ? 'B' : 'A') + s.slice(at + 1);
}

/**
 * `url` with `cookie` is treated as not signed in: a browser (HTML Accept) is sent to the auth host's login with
 * `return` = `url`; an API client (JSON Accept) and an XHR (X-Requested-With) get 401 JSON. Nothing reaches `backend`.
 */
export async function assertNotSignedIn(client: WebClient, url: string, cookie: string | undefined, backend?: { received: readonly unknown[] }): Promise<void> {
  const before = backend?.received.length;
  const headers = (h: Record<string, string>) => (cookie === undefined ? h : { ...h, cookie });
  const browser = await client.request(url, { headers: headers({ accept: 'text/html,application/xhtml+xml,*/*;q=0.8' }), cookies: false });
  assert.equal(browser.status, 302, `a browser is sent to sign in (${url}): ${browser.status} ${browser.body.slice(0, 200)}`);
  assert.equal(browser.code, 'ERR_NOT_SIGNED_IN');
  const login = browser.location!;
  assert.equal(login.origin, `https://${AUTH_HOST}:${new URL(url).port}`);
  assert.equal(login.pathname, '/.gatehouse/login');
  assert.equal(login.searchParams.get('return'), url);
  const apiClients: Array<Record<string, string>> = [{ accept: 'application/json' }, { accept: 'text/html', 'x-requested-with': 'XMLHttpRequest' }];
  for (const h of apiClients) {
    const api = await client.request(url, { headers: headers(h), cookies: false });
    assert.equal(api.status, 401, `an API client gets 401 (${JSON.stringify(h)}): ${api.body.slice(0, 200)}`);
    assert.equal(api.code, 'ERR_NOT_SIGNED_IN');
    assert.equal(api.location, undefined);
    assert.match(String(api.headers['content-type']), /^application\/json/);
    assert.equal((JSON.parse(api.body) as { error: { code: string } }).error.code, 'ERR_NOT_SIGNED_IN');
    assert.match(String(api.headers['x-request-id']), /\S/);
  }
  if (backend) assert.equal(backend.received.length, before, 'nothing was forwarded');
}

/** Fetches `https://AUTHHOST:PORT/.well-known/jwks.json` with node's https client (trusting the test CA). */
export async function fetchJwks(client: WebClient, port: number): Promise<JSONWebKeySet> {
  const r = await client.request(`https://${AUTH_HOST}:${port}/.well-known/jwks.json`, { headers: { accept: 'application/json' }, cookies: false });
  assert.equal(r.status, 200, r.body);
  assert.match(String(r.headers['content-type']), /^application\/json/);
  return JSON.parse(r.body) as JSONWebKeySet;
}

/**
 * Verifies an `X-Gatehouse-Jwt-Assertion` with jose against the published JWKS: ES256, a `kid` the JWKS holds,
 * `iss` = the auth host's origin, `aud` = the route host, `exp - iat` ≤ 300 s, `nbf`, `jti`. Returns the claims.
 */
export async function verifyAssertion(client: WebClient, port: number, token: string, audience: string): Promise<JWTPayload & { email?: string; groups?: string[]; roles?: string[] }> {
  const jwks = await fetchJwks(client, port);
  const header = decodeProtectedHeader(token);
  assert.equal(header.alg, 'ES256');
  assert.ok(header.kid && jwks.keys.some((k) => k.kid === header.kid), `kid ${header.kid} is in the JWKS`);
  const issuer = `https://${AUTH_HOST}:${port}`;
  const { payload } = await jwtVerify(token, createLocalJWKSet(jwks), { issuer, audience, algorithms: ['ES256'] });
  assert.equal(typeof payload.iat, 'number');
  assert.equal(typeof payload.exp, 'number');
  assert.ok(payload.exp! - payload.iat! <= 300 && payload.exp! > payload.iat!, `exp - iat = ${payload.exp! - payload.iat!} s`);
  assert.equal(typeof payload.nbf, 'number');
  assert.match(String(payload.jti), /\S/);
  return payload as JWTPayload & { email?: string; groups?: string[]; roles?: string[] };
}
