/**
 * The in-process OpenID provider (src/demo/idp.ts) against a real relying party (openid-client v6, the library
 * Gatehouse uses) and a real browser (headless Chromium): code flow with PKCE, state and nonce, our sign-in page,
 * the ID token's claims, single sign-on, and RP-initiated logout through `end_session_endpoint`.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as client from 'openid-client';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { launchChromium, newContext } from '../harness/browser.ts';
import { loginInBrowser, startIdp, type RunningIdp } from '../harness/idp.ts';

const ALICE = { email: 'alice@corp.test', password: 'correct horse', name: 'Alice Example', groups: ['engineering', 'admins'] };
const BOB = { email: 'bob@corp.test', password: 'battery staple', emailVerified: false };

/** The relying party's redirect target: answers every request with a small page and remembers its URL. */
async function startCallbackServer(): Promise<{ origin: string; seen: URL[]; server: Server }> {
  const seen: URL[] = [];
  const server = createServer((req, res) => {
    seen.push(new URL(req.url ?? '/', 'http://127.0.0.1'));
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end('<!DOCTYPE html><title>relying party</title><p>back at the relying party</p>');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen, server };
}

describe('the demo OpenID provider', () => {
  let idp: RunningIdp;
  let rp: Awaited<ReturnType<typeof startCallbackServer>>;
  let config: client.Configuration;
  let browser: Browser;
  const redirectUri = () => `${rp.origin}/callback`;
  const signedOutUri = () => `${rp.origin}/signed-out`;

  before(async () => {
    rp = await startCallbackServer();
    [idp, browser] = await Promise.all([
      startIdp({
        users: [ALICE, BOB],
        clients: [{ clientId: 'gatehouse', clientSecret: 'gatehouse-secret', redirectUris: [redirectUri()], postLogoutRedirectUris: [signedOutUri()] }],
      }),
      launchChromium(),
    ]);
    config = await client.discovery(new URL(idp.issuer), 'gatehouse', undefined, client.ClientSecretBasic('gatehouse-secret'), {
      execute: [client.allowInsecureRequests],
    });
  });
  after(async () => {
    await browser?.close();
    await idp?.close();
    rp?.server.close();
  });

  /** Starts an authorization request in `page`: returns the checks to hand to the code exchange. */
  async function authorize(page: Page) {
    const pkceCodeVerifier = client.randomPKCECodeVerifier();
    const expectedState = client.randomState();
    const expectedNonce = client.randomNonce();
    const url = client.buildAuthorizationUrl(config, {
      redirect_uri: redirectUri(),
      scope: 'openid email profile groups',
      code_challenge: await client.calculatePKCECodeChallenge(pkceCodeVerifier),
      code_challenge_method: 'S256',
      state: expectedState,
      nonce: expectedNonce,
    });
    await page.goto(url.href);
    return { pkceCodeVerifier, expectedState, expectedNonce, idTokenExpected: true };
  }

  /** The page is on the relying party's callback: exchanges the code there. */
  async function exchange(page: Page, checks: client.AuthorizationCodeGrantChecks) {
    await page.waitForURL((u) => u.origin === rp.origin && u.pathname === '/callback');
    return client.authorizationCodeGrant(config, new URL(page.url()), checks);
  }

  async function signIn(context: BrowserContext, user: { email: string; password: string }) {
    const page = await context.newPage();
    const checks = await authorize(page);
    assert.equal(await loginInBrowser(page, user), 'submitted');
    return { page, tokens: await exchange(page, checks) };
  }

  it('publishes a discovery document for the code flow with PKCE on its loopback issuer', () => {
    assert.match(idp.issuer, /^http:\/\/127\.0\.0\.1:\d+$/);
    const meta = config.serverMetadata();
    assert.equal(meta.issuer, idp.issuer);
    assert.deepEqual(meta.response_types_supported, ['code']);
    assert.deepEqual(meta.code_challenge_methods_supported, ['S256']);
    assert.equal(meta.end_session_endpoint, `${idp.issuer}/session/end`);
    for (const scope of ['openid', 'email', 'profile', 'groups']) assert.ok(meta.scopes_supported?.includes(scope), scope);
    assert.ok(!meta.scopes_supported?.includes('offline_access'));
  });

  it('refuses an authorization request without PKCE', async () => {
    const url = client.buildAuthorizationUrl(config, { redirect_uri: redirectUri(), scope: 'openid', state: 'x' });
    const res = await fetch(url, { redirect: 'manual' });
    assert.equal(res.status, 303);
    const back = new URL(res.headers.get('location') ?? '');
    assert.equal(back.origin + back.pathname, redirectUri());
    assert.equal(back.searchParams.get('error'), 'invalid_request');
    assert.match(back.searchParams.get('error_description') ?? '', /PKCE/);
  });

  it('signs a user in through its own login page and puts the claims in the ID token', async () => {
    const context = await newContext(browser);
    try {
      const page = await context.newPage();
      const checks = await authorize(page);
      assert.equal(await page.title(), 'Sign in');
      assert.match(await page.locator('main').innerText(), /to continue to gatehouse/);
      assert.equal(await loginInBrowser(page, ALICE), 'submitted');
      const tokens = await exchange(page, checks);

      const claims = tokens.claims();
      assert.ok(claims);
      assert.equal(claims.iss, idp.issuer);
      assert.equal(claims.aud, 'gatehouse');
      assert.equal(claims.nonce, checks.expectedNonce);
      assert.equal(claims.email, ALICE.email);
      assert.equal(claims.email_verified, true);
      assert.equal(claims.name, ALICE.name);
      assert.deepEqual(claims.groups, ALICE.groups);
      assert.match(claims.sub, /^[0-9a-f]{24}$/, 'an opaque subject, not the email');
      assert.equal(tokens.refresh_token, undefined);
      assert.deepEqual(
        idp.events.filter((e) => e.type === 'login' && e.email === ALICE.email),
        [{ type: 'login', email: ALICE.email, clientId: 'gatehouse' }],
      );
    } finally {
      await context.close();
    }
  });

  it('keeps a wrong password on the form with an error, then accepts the right one', async () => {
    const context = await newContext(browser);
    try {
      const page = await context.newPage();
      const callbacks = rp.seen.length;
      const checks = await authorize(page);
      assert.equal(await loginInBrowser(page, { email: ALICE.email, password: 'wrong' }), 'rejected');
      assert.match(await page.locator('#error').innerText(), /Wrong email or password/);
      assert.equal(await page.inputValue('input[name=email]'), ALICE.email, 'the email is kept');
      assert.equal(new URL(page.url()).origin, idp.issuer);
      assert.equal(rp.seen.length, callbacks, 'nothing reached the relying party');
      assert.ok(idp.events.some((e) => e.type === 'login-failed' && e.email === ALICE.email));

      assert.equal(await loginInBrowser(page, { email: 'nobody@corp.test', password: 'x' }), 'rejected');
      assert.equal(await loginInBrowser(page, ALICE), 'submitted');
      assert.equal((await exchange(page, checks)).claims()?.email, ALICE.email);
    } finally {
      await context.close();
    }
  });

  it('ends the session at end_session_endpoint with id_token_hint and returns to the post-logout URI', async () => {
    const context = await newContext(browser);
    try {
      const { page, tokens } = await signIn(context, ALICE);

      // single sign-on: a second authorization in the same browser goes straight back with a code
      const again = await authorize(page);
      assert.equal((await exchange(page, again)).claims()?.email, ALICE.email);

      const logouts = idp.events.filter((e) => e.type === 'logout').length;
      const state = client.randomState();
      const endSession = client.buildEndSessionUrl(config, { id_token_hint: tokens.id_token ?? '', post_logout_redirect_uri: signedOutUri(), state });
      await page.goto(endSession.href);
      await page.waitForURL((u) => u.origin === rp.origin && u.pathname === '/signed-out');
      assert.equal(new URL(page.url()).searchParams.get('state'), state);
      assert.deepEqual(idp.events.filter((e) => e.type === 'logout').slice(logouts), [{ type: 'logout', clientId: 'gatehouse' }]);

      // the IdP session is gone: the next authorization asks for the password again
      await authorize(page);
      assert.equal(new URL(page.url()).origin, idp.issuer);
      await page.waitForSelector('input[name=password]');
    } finally {
      await context.close();
    }
  });

  it('sends the user back with access_denied when they cancel the sign-in', async () => {
    const context = await newContext(browser);
    try {
      const page = await context.newPage();
      const checks = await authorize(page);
      await page.click('#cancel');
      await page.waitForURL((u) => u.origin === rp.origin && u.pathname === '/callback');
      const back = new URL(page.url());
      assert.equal(back.searchParams.get('error'), 'access_denied');
      assert.equal(back.searchParams.get('state'), checks.expectedState);
      await assert.rejects(client.authorizationCodeGrant(config, back, checks), (err: Error & { error?: string }) => err.error === 'access_denied');
    } finally {
      await context.close();
    }
  });

  it('refuses to start on a non-loopback host or with a malformed client', async () => {
    await assert.rejects(startIdp({ host: '0.0.0.0', users: [], clients: [] }), /loopback only/);
    await assert.rejects(startIdp({ users: [], clients: [{ clientId: 'x', clientSecret: 'y', redirectUris: ['not a url'] }] }), /client x: redirect_uris/);
  });

  it('says email_verified: false for a user whose address is not verified, and no groups when there are none', async () => {
    const context = await newContext(browser);
    try {
      const { tokens } = await signIn(context, BOB);
      const claims = tokens.claims();
      assert.equal(claims?.email, BOB.email);
      assert.equal(claims?.email_verified, false);
      assert.equal(claims?.groups, undefined);
      assert.equal(claims?.name, undefined);
    } finally {
      await context.close();
    }
  });
});
