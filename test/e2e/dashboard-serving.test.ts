/**
 * The dashboard as Gatehouse serves it on the auth host: page paths send strangers to sign in and give signed-in
 * users index.html under a strict Content-Security-Policy; `/assets/` serves a fixed allow-list with strong ETags
 * (304 on If-None-Match) and nothing else, whatever the path tries; other methods get 405; a disabled user gets 403.
 * The files themselves carry no inline script or style and never write HTML from strings.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { AUTH_HOST, send, signInOverHttp, startSignInWorld, type SignInWorld, type WebClient } from '../harness/index.ts';
import { ASSET_FILES, DASHBOARD_CSP } from '../../src/admin/dashboard.ts';

const BOB = { email: 'bob@example.com', password: 'bob-password' };
const CAROL = { email: 'carol@example.com', password: 'carol-password' };
const ROOT = { email: 'root@example.com' };

const assetDir = new URL('../../src/admin/assets/', import.meta.url);
const onDisk = (name: string) => readFileSync(new URL(name, assetDir));

const PAGES = ['/', '/access', '/request-access?route=app', '/requests', '/roles', '/roles/viewers', '/users', '/service-accounts', '/audit', '/explain', '/sessions', '/devices', '/connectors'];

function assertSecurityHeaders(headers: Record<string, string | string[] | undefined>, what: string): void {
  assert.equal(headers['content-security-policy'], DASHBOARD_CSP, `${what}: CSP`);
  assert.equal(headers['x-frame-options'], 'DENY', `${what}: x-frame-options`);
  assert.equal(headers['x-content-type-options'], 'nosniff', `${what}: x-content-type-options`);
  assert.equal(headers['referrer-policy'], 'same-origin', `${what}: referrer-policy`);
  assert.ok(headers['x-request-id'], `${what}: x-request-id`);
}

describe('dashboard serving', () => {
  let w: SignInWorld;
  let bob: WebClient;
  const auth = (path: string) => w.main.url(AUTH_HOST, path);
  const cookieOf = (client: WebClient) => client.jar.header(new URL(auth('/'))) ?? '';

  before(async () => {
    w = await startSignInWorld({
      users: [BOB, CAROL],
      identity: { admins: [ROOT.email] },
      routes: [{ name: 'app', host: 'app.corp.test' }],
      roles: [{ name: 'viewers', grants: ['app'], admins: ['alice@example.com'] }],
    });
    bob = w.client();
    const { last } = await signInOverHttp(bob, auth('/'), BOB);
    assert.equal(last.status, 200, `signed in and back on the dashboard: ${last.status} ${last.body.slice(0, 200)}`);
  });
  after(async () => {
    await w?.close();
  });

  it('a page path without a session redirects to sign-in with the page as the return URL', async () => {
    for (const path of ['/', '/roles/viewers', '/request-access?route=app']) {
      const r = await w.client().request(auth(path));
      assert.equal(r.status, 302, path);
      assert.equal(r.headers['cache-control'], 'no-store', path);
      assert.equal(r.location?.origin, w.main.authOrigin, path);
      assert.equal(r.location?.pathname, '/.gatehouse/login', path);
      assert.equal(r.location?.searchParams.get('return'), auth(path), path);
      assertSecurityHeaders(r.headers, `redirect for ${path}`);
    }
  });

  it('an unknown or revoked bearer token is sent to sign in too', async () => {
    const r = await w.client().request(auth('/'), { headers: { authorization: 'Bearer gh_not-a-token' } });
    assert.equal(r.status, 302);
    assert.equal(r.location?.pathname, '/.gatehouse/login');
  });

  it('signed in, every page path answers index.html with the security headers', async () => {
    const index = onDisk('index.html').toString('utf8');
    for (const path of PAGES) {
      const r = await bob.request(auth(path));
      assert.equal(r.status, 200, `${path}: ${r.body.slice(0, 200)}`);
      assert.equal(r.headers['content-type'], 'text/html; charset=utf-8', path);
      assert.equal(r.body, index, path);
      assertSecurityHeaders(r.headers, path);
    }
    const head = await bob.request(auth('/roles'), { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.body, '');
    assert.equal(head.headers['content-length'], String(Buffer.byteLength(index)));
    assertSecurityHeaders(head.headers, 'HEAD /roles');
  });

  it('paths the dashboard does not own are 404', async () => {
    for (const path of ['/nope', '/roles/', '/roles/Not_A_Role', '/roles/viewers/members', '/index.html', '/assets', '/assets/']) {
      const r = await bob.request(auth(path));
      assert.equal(r.status, 404, path);
      assert.equal(r.code, 'ERR_ROUTE_NOT_FOUND', path);
    }
  });

  it('assets are served from memory with their content type, a strong ETag, and 304 on If-None-Match', async () => {
    const types: Record<string, RegExp> = { js: /^text\/javascript/, css: /^text\/css/, svg: /^image\/svg\+xml/ };
    for (const name of Object.keys(ASSET_FILES)) {
      const r = await w.client().request(auth(`/assets/${name}`));
      assert.equal(r.status, 200, name);
      assert.match(String(r.headers['content-type']), types[name.split('.').pop()!]!, name);
      assert.equal(r.body, onDisk(name).toString('utf8'), name);
      assert.equal(r.headers['cache-control'], 'no-cache', name);
      assertSecurityHeaders(r.headers, name);
      const etag = String(r.headers.etag);
      assert.match(etag, /^"[A-Za-z0-9_-]{20,}"$/, `${name}: a strong ETag`);

      const again = await w.client().request(auth(`/assets/${name}`), { headers: { 'if-none-match': etag } });
      assert.equal(again.status, 304, name);
      assert.equal(again.body, '', name);
      assert.equal(again.headers.etag, etag, name);
    }
    const js = await bob.request(auth('/assets/app.js'));
    const etag = String(js.headers.etag);
    assert.equal((await bob.request(auth('/assets/app.js'), { headers: { 'if-none-match': `"other", ${etag}` } })).status, 304, 'one of a list');
    assert.equal((await bob.request(auth('/assets/app.js'), { headers: { 'if-none-match': `W/${etag}` } })).status, 304, 'weak comparison');
    assert.equal((await bob.request(auth('/assets/app.js'), { headers: { 'if-none-match': '"other"' } })).status, 200, 'another tag');
    const head = await bob.request(auth('/assets/app.css'), { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.body, '');
    assert.equal(head.headers['content-length'], String(onDisk('app.css').length));
  });

  it('unknown assets and traversal attempts are 404 and leak no file', async () => {
    const cookie = cookieOf(bob);
    const paths = [
      '/assets/nope.js',
      '/assets/index.html',
      '/assets/../package.json',
      '/assets/%2e%2e/package.json',
      '/assets/%2E%2E/x',
      '/assets/%2e%2e/x',
      '/assets/app.js/..',
      '/assets/app.js/../../dashboard.ts',
      '/assets/..%2fdashboard.ts',
      '/assets/%2e%2e%2fdashboard.ts',
      '/assets/pages/../../dashboard.ts',
      '/assets/pages/../../../../package.json',
      '/assets/./app.js/',
      '/assets/APP.JS',
      '/assets/app.js%00',
      '/assets//etc/passwd',
      '/assets/constructor',
      '/assets/__proto__',
    ];
    for (const path of paths) {
      const r = await send(AUTH_HOST, w.main.port, w.ca.certPem, { path, headers: { cookie, accept: 'text/html' } });
      assert.ok(r.status === 404 || r.status === 400, `${path}: ${r.status}`);
      const body = r.body.toString('utf8');
      assert.doesNotMatch(body, /"name": "gatehouse"|serveDashboard|root:x:0/, `${path} leaked a file`);
    }
  });

  it('other methods on page paths and assets are 405 with Allow', async () => {
    for (const path of ['/', '/roles/viewers', '/assets/app.js']) {
      const r = await bob.request(auth(path), { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
      assert.equal(r.status, 405, path);
      assert.equal(r.code, 'ERR_METHOD_NOT_ALLOWED', path);
      assert.equal(r.headers.allow, 'GET, HEAD', path);
      assertSecurityHeaders(r.headers, `POST ${path}`);
    }
    const del = await w.client().request(auth('/users'), { method: 'DELETE' });
    assert.equal(del.status, 405, 'also without a session');
  });

  it('a disabled user with a credential that outlived the revocation gets the 403 page', async () => {
    const services = w.main.gh!.g.services;
    await services.directory.disable(CAROL.email, ROOT);
    const { token } = await services.sessions.issueToken(CAROL.email, 'late', 3600_000, 'cli');
    const r = await w.client().request(auth('/'), { headers: { authorization: `Bearer ${token}` } });
    assert.equal(r.status, 403);
    assert.equal(r.code, 'ERR_USER_DISABLED');
    assert.match(String(r.headers['content-type']), /^text\/html/);
    assertSecurityHeaders(r.headers, 'disabled');
    await services.directory.enable(CAROL.email, ROOT);
    const back = await w.client().request(auth('/'), { headers: { authorization: `Bearer ${token}` } });
    assert.equal(back.status, 200, 'enabled again');
  });

  it('index.html has no inline script, style or handler, and only references allow-listed assets', () => {
    const html = onDisk('index.html').toString('utf8');
    const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script\s*>/gi)];
    assert.ok(scripts.length > 0, 'the app is loaded by a script');
    assert.equal(scripts.length, (html.match(/<script\b/gi) ?? []).length, 'every <script> is closed');
    for (const [, attrs, body] of scripts) {
      assert.match(attrs!, /\bsrc="\/assets\/[^"]+"/, 'every <script> has a src');
      assert.equal(body!.trim(), '', 'no inline script body');
    }
    assert.doesNotMatch(html, /<style\b/i, 'no <style>');
    assert.doesNotMatch(html, /\sstyle\s*=/i, 'no style= attribute');
    assert.doesNotMatch(html, /\son[a-z]+\s*=/i, 'no inline event handler');
    assert.doesNotMatch(html, /javascript:/i, 'no javascript: URL');
    for (const [, ref] of html.matchAll(/(?:src|href)="\/assets\/([^"]+)"/g)) assert.ok(Object.hasOwn(ASSET_FILES, ref!), `${ref} is served`);
  });

  it('the scripts build the DOM from text: no HTML strings, no document.write, no eval, no style attributes', () => {
    for (const name of Object.keys(ASSET_FILES).filter((n) => n.endsWith('.js'))) {
      const src = onDisk(name).toString('utf8');
      assert.doesNotMatch(src, /\.(?:innerHTML|outerHTML)\s*(?:\+?=)/, `${name}: innerHTML/outerHTML assignment`);
      assert.doesNotMatch(src, /innerHTML|outerHTML|insertAdjacentHTML|createContextualFragment|DOMParser/, `${name}: an HTML sink`);
      assert.doesNotMatch(src, /document\.write/, `${name}: document.write`);
      assert.doesNotMatch(src, /\beval\s*\(|new Function\s*\(/, `${name}: eval`);
      assert.doesNotMatch(src, /setAttribute\(\s*['"]style['"]|\.style\.|\.cssText/, `${name}: inline style`);
      for (const [, ref] of src.matchAll(/from\s+'(\.{1,2}\/[^']+)'/g)) {
        const resolved = new URL(ref!, new URL(name, 'https://x/assets/')).pathname.slice('/assets/'.length);
        assert.ok(Object.hasOwn(ASSET_FILES, resolved), `${name} imports ${ref}, which is not served`);
      }
    }
  });
});
