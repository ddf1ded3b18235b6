/**
 * The dashboard in a real browser: headless Chromium (playwright-core) against an in-process Gatehouse and a real
 * OpenID provider (oidc-provider), one browser context per person, everything done through the pages.
 *
 * - a role admin adds a member on the role's page; that member reaches the route; the audit log has the change;
 * - the same role admin cannot change another role (no controls, and the API refuses a forced call), cannot open
 *   the users page, and nobody can be made root (no control, no API operation);
 * - an access request from the 403 page's "Request access" link, approved for a few seconds on /requests: the
 *   route opens, then closes again when the membership ends; "My access" shows the request as approved;
 * - a root admin disables a user on /users while that user has a session open: their next request is refused;
 * - explain: root asks about someone else and sees the denial with its reason; a plain user has no user field and
 *   the API refuses to explain for someone else;
 * - no page reports a Content-Security-Policy violation, and a reason containing HTML is shown as text.
 *
 * Screenshots of the main pages go to test-results/screenshots/ (CI artifacts; `npm run screenshots` refreshes
 * docs/screenshots/, embedded in docs/dashboard.md): 1200×800,
 * plus "My access" and a role page at 375×800. Contexts use en-US and UTC so their dates read the same everywhere.
 *
 * Chromium resolves *.corp.test and gate.test to 127.0.0.1 and nothing else (the IdP listens on 127.0.0.1), and
 * trusts the server certificate by its key pin.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page, Response } from 'playwright-core';
import { launchChromium } from '../harness/browser.ts';
import { AUTH_HOST, signInInBrowser, startSignInWorld, type SignInWorld } from '../harness/index.ts';
import { API_ROUTES } from '../../src/admin/api.ts';

const ROOT = { email: 'root@example.com', password: 'root-password' };
const ALICE = { email: 'alice@example.com', password: 'alice-password' }; // admin of viewers and wiki-readers
const BOB = { email: 'bob@example.com', password: 'bob-password' };
const DAVE = { email: 'dave@example.com', password: 'dave-password' }; // viewers (configuration)
const CAROL = 'carol@example.com'; // ops (configuration); never signs in

/** test-results/screenshots/ (kept by CI as artifacts); `npm run screenshots` writes them into docs/screenshots/ */
const SHOTS = process.env.GATEHOUSE_SCREENSHOTS ?? fileURLToPath(new URL('../../test-results/screenshots/', import.meta.url));
mkdirSync(SHOTS, { recursive: true });
const DESKTOP = { width: 1200, height: 800 };
const MOBILE = { width: 375, height: 800 };
/** a reason that would run script if the page turned it into HTML */
const HTML_REASON = 'On call this week, I need the runbooks <img src=x onerror=alert(1)>';
/** how long the approved access request lasts */
const SHORT_MS = 4000;

interface Echoed {
  url: string;
  headers: Record<string, string | undefined>;
}

/** `[data-testid=ID][data-KEY="VALUE"]…` */
function tid(testid: string, data: Record<string, string> = {}): string {
  return `[data-testid="${testid}"]${Object.entries(data)
    .map(([k, v]) => `[data-${k}="${v}"]`)
    .join('')}`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

describe('the dashboard in a real browser', () => {
  let w: SignInWorld;
  let browser: Browser;
  const contexts: BrowserContext[] = [];
  /** console messages about the Content-Security-Policy, with the page they came from */
  const cspReports: string[] = [];
  /** uncaught errors in pages, and dialogs (an `alert(1)` that ran) */
  const pageErrors: string[] = [];
  const dialogs: string[] = [];
  /** every page URL a tracked page showed */
  const visited = new Set<string>();
  let root: Page;
  let alice: Page;
  let bob: Page;
  let dave: Page;

  const dash = (path = '/') => w.main.url(AUTH_HOST, path);
  const app = (path = '/') => w.main.url('app.corp.test', path);
  const wiki = (path = '/') => w.main.url('wiki.corp.test', path);
  const ops = (path = '/') => w.main.url('ops.corp.test', path);

  before(async () => {
    mkdirSync(SHOTS, { recursive: true });
    w = await startSignInWorld({
      users: [ROOT, ALICE, BOB, DAVE],
      identity: { admins: [ROOT.email] },
      routes: [
        { name: 'app', host: 'app.corp.test' },
        { name: 'wiki', host: 'wiki.corp.test' },
        { name: 'ops', host: 'ops.corp.test' },
      ],
      roles: [
        { name: 'viewers', description: 'Uses the app', grants: ['app'], admins: [ALICE.email], members: [DAVE.email] },
        { name: 'wiki-readers', description: 'Reads the team wiki', grants: ['wiki'], admins: [ALICE.email] },
        { name: 'ops', description: 'Runs production', grants: ['ops'], members: [CAROL] },
      ],
    });
    // as test/e2e/browser.test.ts: the test names map to 127.0.0.1, every other name fails, the loopback stays itself
    browser = await launchChromium({ hostRules: ['MAP * ~NOTFOUND', 'EXCLUDE 127.0.0.1'], trust: [w.server.certPem] });
  });
  after(async () => {
    await browser?.close();
    await w?.close();
  });

  /** Watches a page for CSP reports, errors, dialogs and the URLs it shows. */
  function track(page: Page, who: string): Page {
    page.on('console', (m) => {
      if (m.text().includes('Content Security Policy')) cspReports.push(`[${who}] ${page.url()}: ${m.text()}`);
    });
    page.on('pageerror', (e) => pageErrors.push(`[${who}] ${page.url()}: ${e.message}`));
    page.on('dialog', (d) => {
      dialogs.push(`[${who}] ${page.url()}: ${d.type()} ${d.message()}`);
      void d.dismiss();
    });
    page.on('framenavigated', (f) => {
      if (f === page.mainFrame()) visited.add(f.url().split('?')[0]!);
    });
    return page;
  }

  /** A fresh browser context (its own cookies and IdP session), desktop-sized, with one tracked page. */
  async function person(who: string): Promise<Page> {
    const context = await browser.newContext({ viewport: DESKTOP, locale: 'en-US', timezoneId: 'UTC' });
    contexts.push(context);
    return track(await context.newPage(), who);
  }

  /** Signs in on a dashboard page and waits until it has drawn. */
  async function signInToDashboard(who: string, credentials: { email: string; password: string }, path: string, ready: string): Promise<Page> {
    const page = await person(who);
    await signInInBrowser(page, dash(path), credentials);
    await page.waitForSelector(ready);
    return page;
  }

  /** The dashboard finished drawing the current page (the app clears aria-busy on <main>). */
  async function drawn(page: Page, testid: string, data: Record<string, string> = {}): Promise<void> {
    await page.waitForSelector(tid(testid, data));
    await page.waitForSelector('main:not([aria-busy])');
  }

  /** A screenshot of the viewport into SHOTS, at `size` for this shot only. */
  async function shoot(page: Page, name: string, size = DESKTOP): Promise<void> {
    const was = page.viewportSize();
    if (was?.width !== size.width || was.height !== size.height) await page.setViewportSize(size);
    const path = join(SHOTS, name);
    await page.screenshot({ path, fullPage: false });
    if (was && (was.width !== size.width || was.height !== size.height)) await page.setViewportSize(was);
    const bytes = statSync(path).size;
    assert.ok(bytes > 5_000 && bytes < 400_000, `${name} is ${bytes} bytes`);
  }

  /** A JSON API call from inside the page (its cookies, its origin: what the dashboard's own code could send). */
  function apiFromPage(page: Page, method: string, path: string, body?: unknown) {
    return page.evaluate(
      async ({ method, path, body }) => {
        const r = await fetch(`/api/v1${path}`, {
          method,
          credentials: 'same-origin',
          headers: { 'content-type': 'application/json', accept: 'application/json' },
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        });
        const text = await r.text();
        return { status: r.status, body: (text ? JSON.parse(text) : null) as { error?: { code: string; message: string } } | null };
      },
      { method, path, body },
    );
  }

  /** The echo backend's answer, as the page shows it. */
  async function echoed(page: Page): Promise<Echoed> {
    return JSON.parse(await page.locator('body').innerText()) as Echoed;
  }

  function refusal(res: Response | null): { status: number | undefined; code: string | undefined } {
    return { status: res?.status(), code: res?.headers()['x-gatehouse-error'] };
  }

  // ------------------------------------------------------------------------------------------ role admin

  it('a role admin adds a member on the role page; the member reaches the route; the audit log has the change', async () => {
    alice = await signInToDashboard('alice', ALICE, '/', tid('page-access'));
    // she manages two roles, sees the requests page, and not the root-only pages
    await alice.waitForSelector(tid('managed-role', { role: 'viewers' }));
    await alice.waitForSelector(tid('managed-role', { role: 'wiki-readers' }));
    assert.equal(await alice.locator(tid('nav-requests')).count(), 1);
    assert.equal(await alice.locator(tid('nav-users')).count(), 0);

    await alice.click(`${tid('managed-role', { role: 'viewers' })} a`);
    await drawn(alice, 'page-role', { role: 'viewers' });
    await alice.waitForSelector(tid('member-row', { user: DAVE.email, source: 'config' }));
    assert.equal(await alice.locator(`${tid('member-row', { user: DAVE.email })} ${tid('remove-member')}`).count(), 0, 'a configured member cannot be removed here');
    await alice.fill(tid('member-email'), BOB.email);
    await alice.fill(tid('member-duration'), '7d');
    const asked = Date.now();
    await alice.click(tid('add-member'));
    const row = alice.locator(tid('member-row', { user: BOB.email, source: 'store' }));
    await row.waitFor();
    const expires = Date.parse((await row.getAttribute('data-expires')) ?? '');
    assert.ok(Math.abs(expires - (asked + 7 * 86_400_000)) < 60_000, `the membership ends in 7 days: ${new Date(expires).toISOString()}`);
    assert.match(await alice.locator(tid('notice')).innerText(), /bob@example\.com added to viewers/);
    assert.equal(await row.locator(tid('remove-member')).count(), 1, 'a member added here can be removed here');
    await shoot(alice, 'role.png');
    await shoot(alice, 'role-mobile.png', MOBILE);

    // bob, in his own browser, signs in on the route and gets the backend's page
    bob = await person('bob');
    await signInInBrowser(bob, app('/hello'), BOB);
    const res = await bob.goto(app('/hello?again=1'));
    assert.equal(res?.status(), 200);
    const seen = await echoed(bob);
    assert.equal(seen.url, '/hello?again=1');
    assert.equal(seen.headers['x-gatehouse-user'], BOB.email);
    assert.equal(seen.headers['x-gatehouse-roles'], 'viewers');

    // root finds the change in the audit log, filtered by action and target
    root = await signInToDashboard('root', ROOT, '/audit', tid('page-audit'));
    await root.fill(tid('audit-action'), 'membership.add');
    await root.fill(tid('audit-target'), 'membership:viewers/');
    await root.click(tid('audit-apply'));
    await root.waitForURL((u) => u.pathname === '/audit' && u.searchParams.get('action') === 'membership.add');
    await drawn(root, 'page-audit');
    const records = await root
      .locator(tid('audit-row'))
      .evaluateAll((els) => els.map((e) => ({ action: e.getAttribute('data-action'), actor: e.getAttribute('data-actor'), target: e.getAttribute('data-target') })));
    assert.deepEqual(
      records.filter((r) => r.target === `membership:viewers/${BOB.email}`),
      [{ action: 'membership.add', actor: ALICE.email, target: `membership:viewers/${BOB.email}` }],
    );
    assert.ok(records.every((r) => r.action === 'membership.add' && r.target?.startsWith('membership:viewers/')), JSON.stringify(records));
  });

  it('a role admin cannot change another role, open the users page, or make anyone root', async () => {
    await alice.click(tid('nav-roles'));
    await drawn(alice, 'page-roles');
    await alice.waitForSelector(tid('role-row', { role: 'ops', manage: 'false' }));
    await alice.waitForSelector(tid('role-row', { role: 'viewers', manage: 'true' }));
    await alice.click(`${tid('role-row', { role: 'ops' })} a`);
    await drawn(alice, 'page-role', { role: 'ops' });
    await alice.waitForSelector(tid('member-row', { user: CAROL }));
    for (const control of ['add-member-form', 'member-email', 'add-member', 'remove-member', 'add-admin-form', 'remove-admin']) {
      assert.equal(await alice.locator(tid(control)).count(), 0, `no ${control} on a role she does not manage`);
    }

    // a forced call from that page's context: the API decides, not the page
    const put = await apiFromPage(alice, 'PUT', `/roles/ops/members/${encodeURIComponent(ALICE.email)}`, {});
    assert.equal(put.status, 403, JSON.stringify(put.body));
    assert.equal(put.body?.error?.code, 'ERR_FORBIDDEN');
    const remove = await apiFromPage(alice, 'DELETE', `/roles/ops/members/${encodeURIComponent(CAROL)}`);
    assert.equal(remove.status, 403, JSON.stringify(remove.body));
    assert.equal(remove.body?.error?.code, 'ERR_FORBIDDEN');
    const selfAdmin = await apiFromPage(alice, 'PUT', `/roles/ops/admins/${encodeURIComponent(ALICE.email)}`, {});
    assert.equal(selfAdmin.status, 403, 'only root names role admins');
    assert.equal(selfAdmin.body?.error?.code, 'ERR_FORBIDDEN');
    const members = await apiFromPage(alice, 'GET', '/roles/ops/members');
    assert.deepEqual((members.body as { members: Array<{ user: string }> }).members.map((m) => m.user), [CAROL], 'nothing changed');

    // the users page, by its address: the API's refusal is what the page shows
    await alice.goto(dash('/users'));
    await drawn(alice, 'page-error');
    assert.equal(await alice.getAttribute(tid('alert'), 'data-code'), 'ERR_FORBIDDEN');
    assert.match(await alice.locator(tid('alert-message')).innerText(), /only root admins may list users/);
    assert.equal(await alice.locator(tid('nav-users')).count(), 0);

    // root: no control on any page she can open, and no API operation at all (root admins are identity.admins)
    for (const path of ['/', '/roles', '/roles/viewers', '/requests', '/sessions']) {
      await alice.goto(dash(path));
      await alice.waitForSelector('main:not([aria-busy]) > section.page');
      const controls = await alice
        .locator('main :is(button, input, select, textarea, form)')
        .evaluateAll((els) => els.map((e) => e.getAttribute('data-testid') ?? e.outerHTML.slice(0, 80)));
      assert.deepEqual(controls.filter((c) => /root|admin/i.test(c)), [], `no root or admin control on ${path}: ${controls.join(' ')}`);
      assert.equal(await alice.locator('[data-testid*="root"]').count(), 0, `nothing about root on ${path}`);
    }
    const rootOps = API_ROUTES.filter((r) => r.method !== 'GET' && /root|\/admins(\/|$)/.test(r.path) && !r.path.startsWith('/roles/{role}/admins/'));
    assert.deepEqual(rootOps.map((r) => `${r.method} ${r.path}`), [], 'no API operation makes a root admin');
    for (const [method, path] of [['PUT', `/admins/${ALICE.email}`], ['POST', `/users/${ALICE.email}/root`], ['PUT', `/users/${ALICE.email}`]] as const) {
      const r = await apiFromPage(alice, method, path, {});
      assert.ok(r.status === 404 || r.status === 405, `${method} ${path}: ${r.status}`);
    }
  });

  // ------------------------------------------------------------------------------------------ access request

  it('an access request: from the 403 page to approval for a few seconds, the route opens and closes again', async (t) => {
    dave = await person('dave');
    await signInInBrowser(dave, wiki('/'), DAVE);
    const denied = await dave.goto(wiki('/'));
    assert.deepEqual(refusal(denied), { status: 403, code: 'ERR_POLICY_DENIED' });
    const link = dave.getByRole('link', { name: 'Request access' });
    assert.equal(await link.getAttribute('href'), dash('/request-access?route=wiki'));
    await link.click();
    await dave.waitForURL((u) => u.host === new URL(dash()).host && u.pathname === '/request-access' && u.searchParams.get('route') === 'wiki');
    await drawn(dave, 'page-request-access');
    assert.equal(await dave.locator(tid('requested-route')).innerText(), 'wiki');
    await dave.waitForSelector(tid('grant-role-row', { role: 'wiki-readers', held: 'false' }));
    assert.equal(await dave.locator(tid('grant-role-row')).count(), 1, 'only the role that grants wiki');
    assert.equal(await dave.inputValue(tid('request-role')), 'wiki-readers', 'the only role is chosen');
    await dave.fill(tid('request-reason'), HTML_REASON);
    await dave.fill(tid('request-duration'), '8h');
    await dave.evaluate('document.activeElement?.blur()'); // no focus ring in the picture
    await shoot(dave, 'request-access.png');
    await dave.click(tid('request-submit'));
    await dave.waitForSelector(tid('request-result', { status: 'pending' }));
    assert.match(await dave.locator(tid('notice')).innerText(), /Your request was sent/);

    // alice, admin of wiki-readers, sees it; the reason is text, not markup
    await alice.click(tid('nav-requests'));
    await drawn(alice, 'page-requests');
    const row = alice.locator(tid('decide-row', { user: DAVE.email, role: 'wiki-readers' }));
    await row.waitFor();
    assert.ok(((await row.textContent()) ?? '').includes(HTML_REASON), 'the reason is shown as written');
    assert.equal(await row.locator('img').count(), 0, 'no element was made from the reason');
    assert.equal(await alice.locator('main img').count(), 0);
    await shoot(alice, 'requests.png');

    // approved for a few seconds (approve-duration is a duration like 8h; the API parses 4s as 4000 ms)
    await row.locator(tid('approve-duration')).fill(`${SHORT_MS / 1000}s`);
    const approvedAt = Date.now();
    await row.locator(tid('approve')).click();
    await row.waitFor({ state: 'detached' });
    assert.match(await alice.locator(tid('notice')).innerText(), /dave@example\.com now holds wiki-readers/);

    const open = await dave.goto(wiki('/docs'));
    assert.ok(Date.now() - approvedAt < SHORT_MS, 'reached the route before the membership ended (a slow machine?)');
    assert.equal(open?.status(), 200);
    assert.equal((await echoed(dave)).url, '/docs');
    assert.equal((await echoed(dave)).headers['x-gatehouse-user'], DAVE.email);

    // the store ends the membership by time: refused again once it is over (polled, at most a few seconds later)
    let last: ReturnType<typeof refusal> = { status: 200, code: undefined };
    while (Date.now() - approvedAt < SHORT_MS + 4000) {
      last = refusal(await dave.goto(wiki('/docs')));
      if (last.status !== 200) break;
      await sleep(200);
    }
    const closedAfter = Date.now() - approvedAt;
    assert.deepEqual(last, { status: 403, code: 'ERR_POLICY_DENIED' }, `refused again after ${closedAfter} ms`);
    assert.ok(closedAfter >= SHORT_MS - 50, `not before the end: ${closedAfter} ms`);
    t.diagnostic(`approved for ${SHORT_MS} ms; refused again ${closedAfter} ms after the approval`);

    // dave sees the outcome on "My access"
    await dave.goto(dash('/'));
    await drawn(dave, 'page-access');
    const mine = dave.locator(tid('request-row', { role: 'wiki-readers', status: 'approved' }));
    await mine.waitFor();
    assert.match((await mine.textContent()) ?? '', /by alice@example\.com · ended /, 'the approval for a time reads as ended');
    assert.ok(((await mine.textContent()) ?? '').includes(HTML_REASON));
    assert.equal(await mine.locator('img').count(), 0);
    await dave.waitForSelector(tid('route-row', { route: 'app' }));
    assert.equal(await dave.locator(tid('route-row', { route: 'wiki' })).count(), 0, 'the wiki is gone from his routes');
    assert.deepEqual(await dave.locator(tid('my-role')).evaluateAll((els) => els.map((e) => e.getAttribute('data-role'))), ['viewers']);
    await shoot(dave, 'my-access.png');
    await shoot(dave, 'my-access-mobile.png', MOBILE);
  });

  // ------------------------------------------------------------------------------------------ root

  it('a root admin disables a user on /users; that user’s open session is refused on the next request', async (t) => {
    const still = await bob.goto(app('/before'));
    assert.equal(still?.status(), 200, 'bob’s session is open');

    await root.click(tid('nav-users'));
    await drawn(root, 'page-users');
    const row = root.locator(tid('user-row', { user: BOB.email, disabled: 'false' }));
    await row.waitFor();
    // the only controls on the page: disable / enable each other user (none makes anyone root)
    const buttons = await root.locator('main button').evaluateAll((els) => [...new Set(els.map((e) => e.getAttribute('data-testid')))]);
    assert.deepEqual(buttons, ['disable-user']);
    assert.equal(await root.locator(tid('user-row', { user: ROOT.email })).locator(tid('self')).count(), 1);
    await row.locator(tid('disable-user')).click();
    // the first click only asks
    assert.equal(await root.locator(tid('user-row', { user: BOB.email, disabled: 'false' })).count(), 1);
    await row.locator(tid('confirm')).click();
    await root.waitForSelector(tid('user-row', { user: BOB.email, disabled: 'true' }));
    assert.match(await root.locator(tid('notice')).innerText(), /bob@example\.com is disabled: [1-9]\d* session\(s\)/);
    await shoot(root, 'users.png');

    // at once, without waiting: bob's next request does not reach the backend
    const forwarded = w.echo.received.length;
    const next = await bob.goto(app('/after'));
    const at = new URL(bob.url());
    const outcome = refusal(next);
    const refused =
      (outcome.status === 403 && outcome.code === 'ERR_USER_DISABLED') || (at.origin === w.idp.issuer && at.pathname.startsWith('/interaction/'));
    assert.ok(refused, `refused or sent to sign in: ${outcome.status} ${outcome.code} at ${bob.url()}`);
    t.diagnostic(`bob's next request: ${outcome.status} ${outcome.code ?? ''} at ${at.origin}${at.pathname}`);
    assert.deepEqual(w.echo.received.slice(forwarded).map((r) => r.url).filter((u) => u !== '/favicon.ico'), []);

    // the audit log, newest first
    await root.click(tid('nav-audit'));
    await drawn(root, 'page-audit');
    const first = root.locator(tid('audit-row')).first();
    assert.equal(await first.getAttribute('data-action'), 'user.disable');
    assert.equal(await first.getAttribute('data-target'), `user:${BOB.email}`);
    assert.equal(await first.getAttribute('data-actor'), ROOT.email);
    const actions = new Set(await root.locator(tid('audit-row')).evaluateAll((els) => els.map((e) => e.getAttribute('data-action'))));
    for (const a of ['membership.add', 'access-request.create', 'access-request.approve', 'user.disable']) assert.ok(actions.has(a), `${a} in ${[...actions].join(', ')}`);
    await shoot(root, 'audit.png');
  });

  it('explain: root asks about someone else and sees why; a plain user can only ask about themselves', async () => {
    await root.click(tid('nav-explain'));
    await drawn(root, 'page-explain');
    // a request that is allowed first, so the denial below is not the page's only answer
    await root.fill(tid('explain-user'), DAVE.email);
    await root.fill(tid('explain-url'), app('/'));
    await root.click(tid('explain-submit'));
    await root.waitForSelector(tid('explain-result', { allow: 'true' }));
    assert.match(await root.locator(tid('explain-rule')).innerText(), /viewers/);

    await root.fill(tid('explain-url'), ops('/deploy'));
    await root.click(tid('explain-submit'));
    await root.waitForSelector(tid('explain-result', { allow: 'false' }));
    assert.equal(await root.locator(tid('explain-code')).innerText(), 'ERR_POLICY_DENIED');
    assert.equal(await root.locator(tid('explain-route')).innerText(), 'ops');
    assert.equal(await root.locator(tid('explain-reason')).innerText(), 'no rule or role grants route ops to dave@example.com');
    const considered = await root
      .locator(tid('considered-rule'))
      .evaluateAll((els) => els.map((e) => `${e.getAttribute('data-matched') === 'true' ? '✓' : '·'} ${e.querySelector('code')?.textContent ?? ''}`));
    // every rule that was tried, in order; no role of dave's grants ops, so none is listed after the root check
    assert.deepEqual(considered, ['✓ sign-in configured', '✓ signed in', `✓ user ${DAVE.email} enabled`, '· root admin']);
    await shoot(root, 'explain.png');

    // dave: no user field, his own answer, and the API refuses to explain for someone else
    await dave.goto(dash('/explain'));
    await drawn(dave, 'page-explain');
    assert.equal(await dave.locator(tid('explain-user')).count(), 0);
    assert.equal(await dave.locator(tid('nav-explain')).count(), 1, 'everyone may ask about themselves');
    await dave.fill(tid('explain-url'), ops('/'));
    await dave.click(tid('explain-submit'));
    await dave.waitForSelector(tid('explain-result', { allow: 'false' }));
    assert.equal(await dave.locator(tid('explain-reason')).innerText(), 'no rule or role grants route ops to dave@example.com');
    const other = await apiFromPage(dave, 'POST', '/explain', { user: ROOT.email, url: ops('/') });
    assert.equal(other.status, 403, JSON.stringify(other.body));
    assert.equal(other.body?.error?.code, 'ERR_FORBIDDEN');
  });

  // ------------------------------------------------------------------------------------------ security

  it('no page reported a Content-Security-Policy violation, threw, or opened a dialog', async () => {
    // the collector works: a page that breaks the policy on purpose is heard (then left out of the count)
    const canary = await contexts[0]!.newPage();
    const heard: string[] = [];
    canary.on('console', (m) => {
      if (m.text().includes('Content Security Policy')) heard.push(m.text());
    });
    await canary.goto(dash('/'));
    await canary.waitForSelector(tid('page-access'));
    await canary.evaluate("document.body.append(Object.assign(document.createElement('script'), { textContent: 'window.ran = 1' }))");
    for (let i = 0; i < 20 && heard.length === 0; i++) await sleep(50);
    assert.equal(heard.length, 1, 'an inline script is reported');
    assert.equal(await canary.evaluate('window.ran'), undefined, 'and does not run');
    await canary.close();

    const pages = [...visited].filter((u) => u.startsWith(w.main.url(AUTH_HOST, '')));
    assert.ok(pages.length >= 10, `the dashboard pages seen: ${pages.join(' ')}`);
    assert.deepEqual(cspReports, []);
    assert.deepEqual(pageErrors, []);
    assert.deepEqual(dialogs, []);
  });
});
