/**
 * The OpenID Connect relying party: authorization code flow with PKCE, `state` and `nonce`, through
 * `openid-client` and the issuer's discovery document. Discovery is shared while in flight, time-boxed, and
 * cooled down after a failure. Foreign errors are translated here, with `cause` kept.
 */
import * as client from 'openid-client';
import { GatehouseError, messageOf, type Secret } from '../core/index.ts';

export interface OidcSettings {
  readonly issuer: string;
  readonly clientId: string;
  readonly clientSecret?: Secret;
  readonly scopes: readonly string[];
  readonly groupsClaim?: string;
}

export interface SignedIn {
  readonly email: string;
  readonly groups: string[];
  readonly idToken: string | undefined;
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

export class OidcClient {
  readonly #settings: OidcSettings;
  #config: client.Configuration | undefined;
  #inflight: Promise<client.Configuration> | undefined;
  #failedAt = 0;

  constructor(settings: OidcSettings) {
    this.#settings = settings;
  }

  get settings(): OidcSettings {
    return this.#settings;
  }

  /** The issuer's configuration, discovered once (shared while in flight; retried at most every 10 s after a failure). */
  async configuration(): Promise<client.Configuration> {
    if (this.#config) return this.#config;
    if (this.#inflight) return this.#inflight;
    if (Date.now() - this.#failedAt < 10_000) {
      throw new GatehouseError('ERR_IDP_UNAVAILABLE', `the identity provider ${this.#settings.issuer} could not be reached recently; retrying shortly`);
    }
    const issuer = new URL(this.#settings.issuer);
    const secret = this.#settings.clientSecret?.reveal();
    this.#inflight = client
      .discovery(issuer, this.#settings.clientId, secret ? { client_secret: secret } : {}, secret ? client.ClientSecretBasic(secret) : client.None(), {
        timeout: 10,
        ...(issuer.protocol === 'http:' && isLoopback(issuer.hostname) ? { execute: [client.allowInsecureRequests] } : {}),
      })
      .then(
        (config) => {
          this.#config = config;
          this.#inflight = undefined;
          return config;
        },
        (err: unknown) => {
          this.#inflight = undefined;
          this.#failedAt = Date.now();
          throw new GatehouseError('ERR_IDP_UNAVAILABLE', `the identity provider's discovery document could not be read: ${messageOf(err)}`, { cause: err });
        },
      );
    return this.#inflight;
  }

  async authorizationUrl(redirectUri: string, state: string, nonce: string, verifier: string): Promise<URL> {
    const config = await this.configuration();
    return client.buildAuthorizationUrl(config, {
      redirect_uri: redirectUri,
      scope: this.#settings.scopes.join(' '),
      code_challenge: await client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
      nonce,
    });
  }

  /** Exchanges the code of `callbackUrl`; checks state, nonce, PKCE, the ID token, and `email_verified`. */
  async exchange(callbackUrl: URL, checks: { state: string; nonce: string; verifier: string }): Promise<SignedIn> {
    const config = await this.configuration();
    let tokens: Awaited<ReturnType<typeof client.authorizationCodeGrant>>;
    try {
      tokens = await client.authorizationCodeGrant(config, callbackUrl, {
        pkceCodeVerifier: checks.verifier,
        expectedState: checks.state,
        expectedNonce: checks.nonce,
        idTokenExpected: true,
      });
    } catch (err) {
      throw new GatehouseError('ERR_LOGIN_FAILED', `the identity provider did not complete the sign-in: ${messageOf(err)}`, { cause: err });
    }
    const claims: Record<string, unknown> = { ...(tokens.claims() ?? {}) };
    if (typeof claims.email !== 'string' && tokens.access_token) {
      try {
        const info = await client.fetchUserInfo(config, tokens.access_token, String(claims.sub));
        Object.assign(claims, info);
      } catch (err) {
        throw new GatehouseError('ERR_LOGIN_FAILED', `the identity provider's userinfo could not be read: ${messageOf(err)}`, { cause: err });
      }
    }
    if (typeof claims.email !== 'string' || !claims.email.includes('@')) {
      throw new GatehouseError('ERR_LOGIN_FAILED', 'the identity provider did not say which email address signed in (is the "email" scope allowed?)');
    }
    if (claims.email_verified === false || claims.email_verified === 'false') {
      throw new GatehouseError('ERR_EMAIL_NOT_VERIFIED', `the identity provider has not verified ${claims.email}`);
    }
    const raw = this.#settings.groupsClaim ? claims[this.#settings.groupsClaim] : undefined;
    const groups = Array.isArray(raw) ? raw.filter((g): g is string => typeof g === 'string') : typeof raw === 'string' ? [raw] : [];
    return { email: claims.email.toLowerCase(), groups, idToken: tokens.id_token };
  }

  /** Where to continue after signing out, when the IdP has an end-session endpoint. */
  async endSessionUrl(idTokenHint: string | undefined, postLogoutRedirectUri: string | undefined): Promise<URL | undefined> {
    let config: client.Configuration;
    try {
      config = await this.configuration();
    } catch {
      return undefined;
    }
    if (!config.serverMetadata().end_session_endpoint) return undefined;
    const params: Record<string, string> = { client_id: this.#settings.clientId };
    if (idTokenHint) params.id_token_hint = idTokenHint;
    if (postLogoutRedirectUri && idTokenHint) params.post_logout_redirect_uri = postLogoutRedirectUri;
    return client.buildEndSessionUrl(config, params);
  }
}
