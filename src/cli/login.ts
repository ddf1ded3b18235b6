/**
 * `gatehouse login --via URL`: signs the command line in through the browser.
 *
 * A loopback HTTP server on 127.0.0.1 (port 0) waits for the auth host's redirect; the request to
 * `/.gatehouse/cli` carries a PKCE challenge and a random state, and the code that comes back is exchanged
 * (with the verifier) at `/.gatehouse/cli/token` for a token, which is kept in the user's config folder
 * (see credentials.ts). `signIn` and `storedToken` are the API other commands (the tunnel) reuse.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import { request } from 'node:https';
import { hostname } from 'node:os';
import type { AddressInfo, LookupFunction } from 'node:net';
import { rootCertificates } from 'node:tls';
import { GatehouseError, formatDuration, isErrorCode, messageOf } from '../core/index.ts';
import { saveLogin, viaOrigin, type StoredLogin } from './credentials.ts';

export { storedToken, readLogin, credentialsFile, viaOrigin, type StoredLogin } from './credentials.ts';

export interface SignInOptions {
  /** a PEM file of the CA that signed the Gatehouse's certificate; default `$GATEHOUSE_CA`, else the system CAs only */
  readonly caFile?: string | undefined;
  /** try to open the browser (`xdg-open`, `open`); the URL is printed either way. Default true. */
  readonly openBrowser?: boolean;
  /** how long to wait for the browser to come back; default 5 minutes */
  readonly timeoutMs?: number;
  /** the token's name in `gatehouse token list`; default `cli on HOSTNAME` */
  readonly name?: string;
  readonly signal?: AbortSignal;
  /** where messages for the person go (one line each); default stderr */
  readonly tell?: (line: string) => void;
  readonly env?: NodeJS.ProcessEnv;
  /** how the Gatehouse's name is resolved (`gatehouse tunnel --resolve`); default DNS */
  readonly lookup?: LookupFunction | undefined;
}

export interface SignedIn extends StoredLogin {
  /** the credentials file the login was written to */
  readonly file: string;
}

const DEFAULT_TIMEOUT_MS = 5 * 60_000;
const REQUEST_TIMEOUT_MS = 15_000;

/** TLS errors that mean the Gatehouse's certificate is not trusted (a `--ca` problem, not a network one). */
export const TLS_TRUST_CODES: ReadonlySet<string> = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/**
 * The CAs to trust for the Gatehouse: the system's plus the one in `caFile` (or `$GATEHOUSE_CA`); undefined
 * (Node's default, the system's) when neither is given.
 */
export async function loadTrust(caFile: string | undefined, env: NodeJS.ProcessEnv = process.env): Promise<string[] | undefined> {
  const file = caFile ?? (env.GATEHOUSE_CA || undefined);
  if (!file) return undefined;
  let pem: string;
  try {
    pem = await readFile(file, 'utf8');
  } catch (err) {
    throw new GatehouseError('ERR_USAGE', `cannot read the CA file ${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : messageOf(err)}`, { cause: err });
  }
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new GatehouseError('ERR_USAGE', `the CA file ${file} holds no PEM certificate`);
  return [...rootCertificates, pem];
}

interface Answer {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly text: string;
}

/** One HTTPS request to the Gatehouse; network and TLS failures become one clear line. */
function call(
  url: URL,
  init: { method: string; body?: string; headers?: Record<string, string>; ca: string[] | undefined; signal?: AbortSignal | undefined; lookup?: LookupFunction | undefined },
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(url, {
      method: init.method,
      headers: { accept: 'application/json', 'user-agent': 'gatehouse-cli', ...init.headers },
      agent: false,
      ...(init.ca ? { ca: init.ca } : {}),
      ...(init.signal ? { signal: init.signal } : {}),
      ...(init.lookup ? { lookup: init.lookup } : {}),
    });
    req.setTimeout(REQUEST_TIMEOUT_MS, () => req.destroy(Object.assign(new Error('no answer'), { code: 'ETIMEDOUT' })));
    req.on('error', (err) => reject(unreachable(url.origin, err)));
    req.on('response', (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > 65_536) res.destroy(new Error('the answer is too large'));
        else chunks.push(c);
      });
      res.on('error', (err) => reject(unreachable(url.origin, err)));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
    });
    req.end(init.body);
  });
}

function unreachable(origin: string, err: unknown): GatehouseError {
  const code = (err as NodeJS.ErrnoException).code ?? '';
  let why: string;
  if (code === 'ABORT_ERR') why = 'cancelled';
  else if (code === 'ECONNREFUSED') why = 'connection refused (is --via right, and is Gatehouse running there?)';
  else if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') why = `the name ${new URL(origin).hostname} does not resolve`;
  else if (code === 'ETIMEDOUT') why = `no answer within ${formatDuration(REQUEST_TIMEOUT_MS)}`;
  else if (code === 'ECONNRESET') why = 'the connection was reset (is it an HTTPS port?)';
  else if (TLS_TRUST_CODES.has(code)) why = `its certificate is not trusted (${messageOf(err)}); pass --ca FILE or set GATEHOUSE_CA`;
  else why = messageOf(err);
  return new GatehouseError('ERR_LOGIN_FAILED', `cannot reach ${origin}: ${why}`, { cause: err });
}

/** The error a Gatehouse answered with, as one line. */
function refusedBy(origin: string, what: string, a: Answer): GatehouseError {
  const header = a.headers['x-gatehouse-error'];
  let code = typeof header === 'string' && isErrorCode(header) ? header : 'ERR_LOGIN_FAILED';
  let message = `HTTP ${a.status}`;
  try {
    const body = JSON.parse(a.text) as { error?: { code?: string; message?: string } };
    if (body.error?.message) message = body.error.message;
    if (body.error?.code && isErrorCode(body.error.code)) code = body.error.code;
  } catch {
    // not JSON: keep the status
  }
  return new GatehouseError(code, `${origin} refused ${what}: ${message}${code !== 'ERR_LOGIN_FAILED' ? ` (${code})` : ''}`);
}

/** Opens `url` in the user's browser, best effort: nothing is reported when there is none. */
export function openInBrowser(url: string): void {
  const [command, args] =
    process.platform === 'darwin' ? ['open', [url]] : process.platform === 'win32' ? ['rundll32', ['url.dll,FileProtocolHandler', url]] : ['xdg-open', [url]];
  try {
    const child = spawn(command, args, { stdio: 'ignore', detached: true });
    child.on('error', () => undefined);
    child.unref();
  } catch {
    // no browser opener: the printed URL is enough
  }
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(res: ServerResponse, status: number, title: string, text: string): void {
  const body =
    `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)} · Gatehouse</title>` +
    '<style>body{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:15vh auto;padding:0 1rem;color:#1f2328}</style></head>' +
    `<body><h1>${escapeHtml(title)}</h1><p>${escapeHtml(text)}</p></body></html>\n`;
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    'referrer-policy': 'no-referrer',
    connection: 'close',
  });
  res.end(body);
}

function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

interface Callback {
  readonly code: string;
  readonly res: ServerResponse;
}

/**
 * Listens on 127.0.0.1 (any free port) for the one redirect back from the auth host. `wait` resolves with the
 * code (the response is left open for the caller to finish) or rejects on a wrong state, an error, the timeout
 * or the signal; a wrong state or an error is answered here.
 */
async function startLoopback(state: string): Promise<{ redirectUri: string; wait: (timeoutMs: number, signal?: AbortSignal) => Promise<Callback>; close: () => void }> {
  let settle: { resolve: (c: Callback) => void; reject: (e: Error) => void } | undefined;
  let early: Error | Callback | undefined;
  const finish = (outcome: Error | Callback) => {
    if (settle) {
      if (outcome instanceof Error) settle.reject(outcome);
      else settle.resolve(outcome);
      settle = undefined;
    } else early ??= outcome;
  };
  let done = false;
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (req.method !== 'GET' || url.pathname !== '/callback') {
      res.writeHead(404, { 'content-type': 'text/plain', connection: 'close' }).end('not found\n');
      return;
    }
    if (done) {
      page(res, 409, 'Already used', 'This sign-in has already been answered. You can close this tab.');
      return;
    }
    done = true;
    const got = url.searchParams.get('state') ?? '';
    if (!sameSecret(got, state)) {
      page(res, 400, 'Sign-in refused', 'This answer does not belong to the waiting gatehouse login (state mismatch). Run gatehouse login again.');
      finish(new GatehouseError('ERR_LOGIN_FAILED', 'the sign-in answer does not match this login (state mismatch); run gatehouse login again'));
      return;
    }
    const error = url.searchParams.get('error');
    const code = url.searchParams.get('code');
    if (error || !code) {
      const why = error ? `${error} ${url.searchParams.get('error_description') ?? ''}`.trim() : 'the answer carries no code';
      page(res, 400, 'Sign-in failed', `${why}. Run gatehouse login again.`);
      finish(new GatehouseError('ERR_LOGIN_FAILED', `the sign-in failed: ${why}`));
      return;
    }
    finish({ code, res });
  });
  server.on('clientError', (_err, socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0 }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const close = () => {
    // answers carry `connection: close`; give the last one a moment to flush, then drop whatever the browser left open
    server.close();
    server.closeIdleConnections();
    setTimeout(() => server.closeAllConnections(), 500).unref();
  };
  const wait = (timeoutMs: number, signal?: AbortSignal) =>
    new Promise<Callback>((resolve, reject) => {
      if (early) return early instanceof Error ? reject(early) : resolve(early);
      const timer = setTimeout(
        () => finish(new GatehouseError('ERR_LOGIN_FAILED', `no sign-in within ${formatDuration(timeoutMs)}; run gatehouse login again`)),
        timeoutMs,
      );
      const onAbort = () => finish(new GatehouseError('ERR_LOGIN_FAILED', 'the sign-in was cancelled'));
      signal?.addEventListener('abort', onAbort, { once: true });
      if (signal?.aborted) onAbort();
      settle = {
        resolve: (c) => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
          resolve(c);
        },
        reject: (e) => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
          reject(e);
        },
      };
    });
  return { redirectUri: `http://127.0.0.1:${port}/callback`, wait, close };
}

function isTokenAnswer(v: unknown): v is { token: string; user: string; expires: string } {
  const o = v as Record<string, unknown> | null;
  return !!o && typeof o.token === 'string' && typeof o.user === 'string' && typeof o.expires === 'string' && Number.isFinite(Date.parse(o.expires));
}

/**
 * Signs in to the Gatehouse at `via` through the browser and stores the token; resolves with the login
 * stored. Rejects with a GatehouseError (`ERR_USAGE`, `ERR_LOGIN_FAILED`, or the code the Gatehouse gave).
 */
export async function signIn(via: string, options: SignInOptions = {}): Promise<SignedIn> {
  const origin = viaOrigin(via);
  const env = options.env ?? process.env;
  const tell = options.tell ?? ((line: string) => process.stderr.write(line + '\n'));
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const ca = await loadTrust(options.caFile, env);

  // fail before the browser step when the Gatehouse cannot be reached or its certificate is not trusted
  await call(new URL('/.well-known/jwks.json', origin), { method: 'GET', ca, signal: options.signal, lookup: options.lookup });

  const verifier = randomBytes(32).toString('base64url');
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  const state = randomBytes(24).toString('base64url');
  const loopback = await startLoopback(state);
  try {
    const url = new URL('/.gatehouse/cli', origin);
    url.searchParams.set('redirect_uri', loopback.redirectUri);
    url.searchParams.set('code_challenge', challenge);
    url.searchParams.set('code_challenge_method', 'S256');
    url.searchParams.set('state', state);
    tell(`Open this URL to sign in: ${url.href}`);
    if (options.openBrowser ?? true) openInBrowser(url.href);

    const { code, res } = await loopback.wait(timeoutMs, options.signal);
    let answer: { token: string; user: string; expires: string };
    try {
      const a = await call(new URL('/.gatehouse/cli/token', origin), {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ code, code_verifier: verifier, name: options.name ?? `cli on ${hostname()}` }),
        ca,
        signal: options.signal,
        lookup: options.lookup,
      });
      if (a.status !== 200) throw refusedBy(origin, 'the sign-in code', a);
      let body: unknown;
      try {
        body = JSON.parse(a.text);
      } catch {
        body = undefined;
      }
      if (!isTokenAnswer(body)) throw new GatehouseError('ERR_LOGIN_FAILED', `${origin} answered the token request with something other than a token`);
      answer = body;
    } catch (err) {
      page(res, 502, 'Sign-in failed', `${messageOf(err)}. Run gatehouse login again.`);
      throw err;
    }
    const login: StoredLogin = { via: origin, token: answer.token, user: answer.user, expires: new Date(answer.expires).toISOString() };
    let file: string;
    try {
      file = await saveLogin(login, env);
    } catch (err) {
      page(res, 500, 'Sign-in failed', `Signed in, but the token could not be stored: ${messageOf(err)}`);
      throw err;
    }
    page(res, 200, 'Signed in', `The gatehouse command line is signed in to ${origin} as ${answer.user}. You can close this tab.`);
    return { ...login, file };
  } finally {
    loopback.close();
  }
}

/** `gatehouse login`: signs in and reports where to. */
export async function runLogin(options: { via: string; browser: boolean; ca?: string; timeoutMs?: number }): Promise<void> {
  const login = await signIn(options.via, {
    openBrowser: options.browser,
    ...(options.ca !== undefined ? { caFile: options.ca } : {}),
    ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
  });
  process.stderr.write(`Signed in to ${login.via} as ${login.user} (token valid until ${login.expires})\n`);
}
