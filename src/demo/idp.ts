/**
 * A small, real OpenID Provider (oidc-provider@8) for tests and `gatehouse demo`: plain HTTP on a loopback
 * address, authorization code flow with PKCE (S256) required, the `openid email profile groups` scopes, and
 * RP-initiated logout. Users and clients are fixed at start; everything lives in memory and is gone on close.
 *
 * Choices made for a first-party, in-process provider:
 * - Sign-in is our own page (`devInteractions` off): an email + password form at `/interaction/:uid` with stable
 *   selectors (`input[name=email]`, `input[name=password]`, `button[type=submit]`); a wrong password re-renders
 *   it (401) with an error. Consent is granted automatically: every registered client is ours.
 * - `email`, `email_verified`, `name` and `groups` are put in the ID token as well as userinfo
 *   (`conformIdTokenClaims: false`), so a relying party needs no userinfo call.
 * - The end-session confirmation ("do you want to sign out?") is auto-submitted by a script on that page (with a
 *   <noscript> button), and it signs the user out of the whole IdP session (`logout=yes`), not only of the
 *   client named by `id_token_hint`. The browser thus walks end_session → post_logout_redirect_uri unattended.
 * - Signing keys (RSA, RS256) and cookie keys are generated per start, so nothing warns about development keys.
 * - Cookies are `SameSite=Lax`: oidc-provider's default for its session cookie is `None`, which Chromium
 *   refuses without `Secure`, and this server speaks plain HTTP.
 * - No refresh tokens: clients get only the `authorization_code` grant and `offline_access` is not a scope here.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHash, generateKeyPair, randomBytes, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';

export interface IdpUser {
  email: string;
  password: string;
  name?: string;
  groups?: string[];
  /** default true */
  emailVerified?: boolean;
  /** the `sub` claim; default an opaque id derived from the email (relying parties must not assume sub = email) */
  sub?: string;
}

export interface IdpClient {
  clientId: string;
  clientSecret: string;
  redirectUris: string[];
  postLogoutRedirectUris?: string[];
  /**
   * How the client authenticates at the token endpoint; default `client_secret_basic` (the OpenID default).
   * Note that openid-client v6 uses `client_secret_post` unless told otherwise (`ClientSecretBasic(secret)`).
   */
  tokenEndpointAuthMethod?: 'client_secret_basic' | 'client_secret_post';
}

export interface IdpOptions {
  /** 0 (the default) picks a free port */
  port?: number;
  /** a loopback address; default 127.0.0.1 */
  host?: string;
  users: IdpUser[];
  clients: IdpClient[];
}

/** What happened at the IdP, in order: for tests that want to know a sign-in or a sign-out really reached it. */
export type IdpEvent =
  | { type: 'login'; email: string; clientId: string }
  | { type: 'login-failed'; email: string; clientId: string }
  | { type: 'logout'; clientId: string | undefined };

export interface RunningIdp {
  /** http://HOST:PORT, no trailing slash */
  readonly issuer: string;
  readonly port: number;
  /** `${issuer}/.well-known/openid-configuration` */
  readonly discoveryUrl: string;
  readonly events: readonly IdpEvent[];
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------------------------
// The parts of oidc-provider@8 used here. The package ships no type declarations (and @types/oidc-provider is not a
// dependency), so it is loaded with a dynamic import, which also keeps it off the CLI's start-up path.

interface KoaContext {
  body: unknown;
  type: string;
  status: number;
  set(field: string, value: string): void;
  oidc: { client?: { clientId: string }; session?: { state?: { clientId?: string } } };
}

interface Interaction {
  uid: string;
  prompt: { name: string; details: Record<string, unknown> };
  params: Record<string, unknown>;
  session?: { accountId?: string };
  grantId?: string;
}

interface Grant {
  addOIDCScope(scope: string): void;
  addOIDCClaims(claims: string[]): void;
  addResourceScope(resource: string, scope: string): void;
  save(): Promise<string>;
}

interface Provider {
  callback(): (req: IncomingMessage, res: ServerResponse) => void;
  interactionDetails(req: IncomingMessage, res: ServerResponse): Promise<Interaction>;
  interactionFinished(req: IncomingMessage, res: ServerResponse, result: Record<string, unknown>, options?: { mergeWithLastSubmission?: boolean }): Promise<void>;
  Grant: { new (properties: { accountId: string; clientId: string }): Grant; find(id: string): Promise<Grant | undefined> };
  Client: { validate(metadata: Record<string, unknown>): Promise<void> };
  on(event: string, listener: (...args: unknown[]) => void): void;
}

type ProviderConstructor = new (issuer: string, configuration: Record<string, unknown>) => Provider;

// ---------------------------------------------------------------------------------------------------------------

const TTL = {
  AuthorizationCode: 60,
  AccessToken: 10 * 60,
  IdToken: 60 * 60,
  Interaction: 10 * 60,
  Session: 8 * 60 * 60,
  Grant: 8 * 60 * 60,
};

/** Starts the IdP on `host:port` and resolves once it listens. */
export async function startIdp(options: IdpOptions): Promise<RunningIdp> {
  // oidc-provider@8 ships no types: see the interfaces above
  const { default: Provider } = (await import('oidc-provider' as string)) as { default: ProviderConstructor };
  const host = options.host ?? '127.0.0.1';
  if (!/^(127\.\d+\.\d+\.\d+|::1|localhost)$/.test(host)) throw new Error(`the demo IdP speaks plain HTTP and listens on loopback only, not on ${host}`);
  const accounts = new Map(options.users.map((u) => [u.email.toLowerCase(), { ...u, sub: u.sub ?? opaqueSub(u.email) }]));
  const bySub = new Map([...accounts.values()].map((a) => [a.sub, a]));
  const events: IdpEvent[] = [];

  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const issuer = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;

  const close = () =>
    new Promise<void>((resolve, reject) => {
      server.close((err) => (err ? reject(err) : resolve()));
      server.closeAllConnections();
    });
  let provider: Provider;
  try {
    provider = await configure(Provider, issuer, options.clients, bySub);
  } catch (err) {
    await close();
    throw err;
  }
  provider.on('end_session.success', (...args: unknown[]) => {
    const ctx = args[0] as KoaContext;
    events.push({ type: 'logout', clientId: ctx.oidc.client?.clientId });
  });

  const oidc = provider.callback();
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const path = new URL(req.url ?? '/', issuer).pathname;
    const route = /^\/interaction\/([\w-]+)(\/login|\/abort)?$/.exec(path);
    if (!route) return oidc(req, res);
    interaction(req, res, route[1] ?? '', route[2] ?? '').catch((err: unknown) => {
      // typically an expired or unknown interaction (its cookie is gone): say so rather than crash the server
      if (res.headersSent) return void res.destroy();
      const detail = (err as { error_description?: string }).error_description ?? (err instanceof Error ? err.message : String(err));
      page(res, 400, 'Sign-in failed', `<h1>Sign-in failed</h1><p class="error">This sign-in request has expired or is not valid (${escapeHtml(detail)}).</p><p class="sub">Go back to the application and try again.</p>`);
    });
  });

  /** Our interaction pages: the login form, its submission, cancel, and the automatic first-party consent. */
  async function interaction(req: IncomingMessage, res: ServerResponse, uid: string, action: string): Promise<void> {
    const details = await provider.interactionDetails(req, res);
    if (details.uid !== uid) throw new Error('interaction mismatch');
    const clientId = String(details.params.client_id ?? '');

    if (action === '/abort') {
      await provider.interactionFinished(req, res, { error: 'access_denied', error_description: 'the user cancelled the sign-in' }, { mergeWithLastSubmission: false });
      return;
    }

    if (details.prompt.name === 'consent') {
      // first-party clients: grant exactly what was asked for, without asking
      const accountId = details.session?.accountId ?? '';
      const grant = (details.grantId && (await provider.Grant.find(details.grantId))) || new provider.Grant({ accountId, clientId });
      const missing = details.prompt.details as { missingOIDCScope?: string[]; missingOIDCClaims?: string[]; missingResourceScopes?: Record<string, string[]> };
      if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
      if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
      for (const [resource, scopes] of Object.entries(missing.missingResourceScopes ?? {})) grant.addResourceScope(resource, scopes.join(' '));
      await provider.interactionFinished(req, res, { consent: { grantId: await grant.save() } }, { mergeWithLastSubmission: true });
      return;
    }

    if (details.prompt.name !== 'login') {
      page(res, 400, 'Sign-in failed', `<h1>Sign-in failed</h1><p class="error">Unsupported prompt: ${escapeHtml(details.prompt.name)}</p>`);
      return;
    }

    if (action === '/login' && req.method === 'POST') {
      const form = new URLSearchParams(await readBody(req));
      const email = (form.get('email') ?? '').trim();
      const account = accounts.get(email.toLowerCase());
      if (account && sameSecret(form.get('password') ?? '', account.password)) {
        events.push({ type: 'login', email: account.email, clientId });
        await provider.interactionFinished(req, res, { login: { accountId: account.sub } }, { mergeWithLastSubmission: false });
        return;
      }
      events.push({ type: 'login-failed', email, clientId });
      loginPage(res, 401, details.uid, clientId, email, 'Wrong email or password.');
      return;
    }

    const hint = typeof details.params.login_hint === 'string' ? details.params.login_hint : '';
    loginPage(res, 200, details.uid, clientId, hint, undefined);
  }

  return {
    issuer,
    port,
    discoveryUrl: `${issuer}/.well-known/openid-configuration`,
    events,
    close,
  };
}

/** The oidc-provider configuration: everything this IdP is, in one place. */
async function configure(Provider: ProviderConstructor, issuer: string, clients: IdpClient[], bySub: Map<string, IdpUser & { sub: string }>): Promise<Provider> {
  const metadata = clients.map((c) => ({
    client_id: c.clientId,
    client_secret: c.clientSecret,
    redirect_uris: c.redirectUris,
    post_logout_redirect_uris: c.postLogoutRedirectUris ?? [],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: c.tokenEndpointAuthMethod ?? 'client_secret_basic',
  }));
  const provider = new Provider(issuer, {
    clients: metadata,
    jwks: { keys: [await signingKey()] },
    cookies: {
      keys: [randomBytes(32).toString('base64url')],
      long: { httpOnly: true, sameSite: 'lax', signed: true },
      short: { httpOnly: true, sameSite: 'lax', signed: true },
    },
    adapter: memoryAdapter(),
    scopes: ['openid', 'email', 'profile', 'groups'],
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'], groups: ['groups'] },
    conformIdTokenClaims: false,
    responseTypes: ['code'],
    pkce: { required: () => true, methods: ['S256'] },
    ttl: TTL,
    features: {
      devInteractions: { enabled: false },
      rpInitiatedLogout: { enabled: true, logoutSource, postLogoutSuccessSource },
    },
    interactions: { url: (_ctx: unknown, interaction: { uid: string }) => `/interaction/${interaction.uid}` },
    clientBasedCORS: () => false,
    renderError,
    async findAccount(_ctx: unknown, sub: string) {
      const account = bySub.get(sub);
      if (!account) return undefined;
      return {
        accountId: sub,
        claims: async () => ({
          sub,
          email: account.email,
          email_verified: account.emailVerified ?? true,
          ...(account.name !== undefined && { name: account.name }),
          ...(account.groups !== undefined && { groups: account.groups }),
        }),
      };
    },
  });
  // oidc-provider checks static clients only when first used: check them now, so a bad one fails the start
  for (const client of metadata) {
    await provider.Client.validate(client).catch((err: Error & { error_description?: string }) => {
      throw new Error(`client ${client.client_id}: ${err.error_description ?? err.message}`, { cause: err });
    });
  }
  return provider;
}

// --- pages -----------------------------------------------------------------------------------------------------

const STYLE = `body{font-family:system-ui,sans-serif;background:#f4f5f7;margin:0;padding:48px 16px}
main{max-width:340px;margin:0 auto;background:#fff;border-radius:8px;padding:24px 28px;box-shadow:0 1px 3px rgba(0,0,0,.15)}
h1{font-size:1.25rem;margin:0 0 4px}p.sub{color:#555;margin:0 0 20px;font-size:.9rem}
label{display:block;font-size:.85rem;margin:12px 0 4px}input{width:100%;box-sizing:border-box;padding:8px;font-size:1rem}
button{margin-top:20px;width:100%;padding:10px;font-size:1rem;background:#1f5fbf;color:#fff;border:0;border-radius:4px;cursor:pointer}
.error{color:#b00020}a{font-size:.85rem;color:#555}`;

function page(res: ServerResponse, status: number, title: string, body: string, extraHeaders: Record<string, string> = {}): void {
  const html = `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${escapeHtml(title)}</title><style>${STYLE}</style></head><body><main>${body}</main></body></html>`;
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'content-length': String(Buffer.byteLength(html)),
    'cache-control': 'no-store',
    'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    ...extraHeaders,
  });
  res.end(html);
}

function loginPage(res: ServerResponse, status: number, uid: string, clientId: string, email: string, error: string | undefined): void {
  const base = `/interaction/${encodeURIComponent(uid)}`;
  page(
    res,
    status,
    'Sign in',
    `<h1>Sign in</h1><p class="sub">to continue to ${escapeHtml(clientId)}</p>
${error ? `<p class="error" role="alert" id="error">${escapeHtml(error)}</p>` : ''}
<form method="post" action="${base}/login" autocomplete="off">
<label for="email">Email</label><input id="email" name="email" type="email" required value="${escapeHtml(email)}"${email ? '' : ' autofocus'}>
<label for="password">Password</label><input id="password" name="password" type="password" required${email ? ' autofocus' : ''}>
<button type="submit">Sign in</button>
</form>
<p><a href="${base}/abort" id="cancel">Cancel</a></p>`,
  );
}

/** The "sign out?" confirmation, submitted at once by a script: it asks oidc-provider to end the whole session. */
async function logoutSource(ctx: KoaContext, form: string): Promise<void> {
  const nonce = randomBytes(16).toString('base64');
  // `form` is <form id="op.logoutForm" …><input type="hidden" name="xsrf" …></form>, built by oidc-provider
  const withLogout = form.replace('</form>', '<input type="hidden" name="logout" value="yes"></form>');
  ctx.set('content-security-policy', `default-src 'none'; style-src 'unsafe-inline'; script-src 'nonce-${nonce}'; frame-ancestors 'none'`);
  ctx.type = 'html';
  ctx.body = `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Signing out</title><style>${STYLE}</style></head>
<body><main><h1>Signing out…</h1>${withLogout}
<noscript><button type="submit" form="op.logoutForm">Sign out</button></noscript></main>
<script nonce="${nonce}">document.getElementById('op.logoutForm').submit();</script></body></html>`;
}

/** Shown after a sign-out that has no post_logout_redirect_uri. */
async function postLogoutSuccessSource(ctx: KoaContext): Promise<void> {
  ctx.type = 'html';
  ctx.body = `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Signed out</title><style>${STYLE}</style></head>
<body><main><h1>Signed out</h1><p class="sub">You have been signed out.</p></main></body></html>`;
}

/** oidc-provider's error page; `out` holds only what is fit to show (error, error_description, …). */
async function renderError(ctx: KoaContext, out: Record<string, unknown>): Promise<void> {
  ctx.type = 'html';
  const rows = Object.entries(out).map(([k, v]) => `<p><strong>${escapeHtml(k)}</strong>: ${escapeHtml(String(v))}</p>`).join('');
  ctx.body = `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Sign-in error</title><style>${STYLE}</style></head>
<body><main><h1>Something went wrong</h1>${rows}</main></body></html>`;
}

// --- helpers ---------------------------------------------------------------------------------------------------

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function opaqueSub(email: string): string {
  return createHash('sha256').update(`gatehouse-demo-idp:${email.toLowerCase()}`).digest('hex').slice(0, 24);
}

function sameSecret(given: string, expected: string): boolean {
  const digest = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(digest(given), digest(expected));
}

async function readBody(req: IncomingMessage, limit = 16 * 1024): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new Error('request body too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** A fresh RSA key for RS256 (the ID token algorithm every relying party supports), as a private JWK. */
async function signingKey(): Promise<Record<string, unknown>> {
  const { privateKey } = await promisify(generateKeyPair)('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: randomBytes(8).toString('hex'), use: 'sig', alg: 'RS256' };
}

/** oidc-provider's storage, per instance (its own memory adapter is one LRU shared by the whole process, and it warns). */
function memoryAdapter(): (model: string) => Record<string, (...args: never[]) => Promise<unknown>> {
  type Payload = Record<string, unknown>;
  const records = new Map<string, { payload: Payload; expiresAt: number }>();
  /** secondary keys (session uid, user code, grant id) → the record keys they point at */
  const indexes = new Map<string, { keys: string[]; expiresAt: number }>();
  const live = <T>(map: Map<string, T & { expiresAt: number }>, key: string): T | undefined => {
    const entry = map.get(key);
    if (entry && entry.expiresAt <= Date.now()) map.delete(key);
    return entry && entry.expiresAt > Date.now() ? entry : undefined;
  };
  const addIndex = (name: string, recordKey: string, expiresAt: number) => {
    const entry = live(indexes, name);
    if (entry) {
      entry.keys.push(recordKey);
      entry.expiresAt = Math.max(entry.expiresAt, expiresAt);
    } else indexes.set(name, { keys: [recordKey], expiresAt });
  };
  const findVia = (name: string) => {
    const recordKey = live(indexes, name)?.keys.at(-1);
    return recordKey === undefined ? undefined : live(records, recordKey)?.payload;
  };
  return (model: string) => {
    const key = (id: string) => `${model}:${id}`;
    return {
      upsert: async (id: string, payload: Payload, expiresIn: number) => {
        const expiresAt = Date.now() + expiresIn * 1000;
        records.set(key(id), { payload, expiresAt });
        if (model === 'Session' && typeof payload.uid === 'string') addIndex(`sessionUid:${payload.uid}`, key(id), expiresAt);
        if (typeof payload.userCode === 'string') addIndex(`userCode:${payload.userCode}`, key(id), expiresAt);
        if (typeof payload.grantId === 'string') addIndex(`grant:${payload.grantId}`, key(id), expiresAt);
      },
      find: async (id: string) => live(records, key(id))?.payload,
      findByUid: async (uid: string) => findVia(`sessionUid:${uid}`),
      findByUserCode: async (userCode: string) => findVia(`userCode:${userCode}`),
      consume: async (id: string) => {
        const record = live(records, key(id));
        if (record) record.payload.consumed = Math.floor(Date.now() / 1000);
      },
      destroy: async (id: string) => {
        records.delete(key(id));
      },
      revokeByGrantId: async (grantId: string) => {
        for (const recordKey of live(indexes, `grant:${grantId}`)?.keys ?? []) records.delete(recordKey);
        indexes.delete(`grant:${grantId}`);
      },
    };
  };
}
