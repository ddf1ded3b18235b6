/**
 * The Connectors page in real Chromium: a root admin sees the configured connectors, makes an enrollment token,
 * copies the command line the page shows once, and that very command (with `--to` filled in) enrolls a
 * `gatehouse connect` that then shows as connected. No CSP violation, no page error; others see no such page.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { AUTH_HOST, curl, signInInBrowser, startSignInWorld, waitFor, type SignInWorld } from '../harness/index.ts';
import { launchChromium } from '../harness/browser.ts';
import { event, startConnector, startConnectorBackend, type ConnectorBackend, type ConnectorProcess } from '../harness/connectors.ts';

/** where screenshots go, as in dashboard-browser.test.ts (`npm run screenshots` sets docs/screenshots) */
const SHOTS = process.env.GATEHOUSE_SCREENSHOTS ?? fileURLToPath(new URL('../../test-results/screenshots/', import.meta.url));
const ROOT = { email: 'root@example.com', password: 'rootpass', groups: [] };
const BOB = { email: 'bob@example.com', password: 'builder', groups: [] };

describe('the Connectors page', () => {
  let w: SignInWorld;
  let browser: Browser;
  let backend: ConnectorBackend;
  let agent: ConnectorProcess | undefined;
  const problems: string[] = [];
  const dash = (path: string) => w.main.url(AUTH_HOST, path);

  async function signedIn(who: { email: string; password: string }, path: string): Promise<Page> {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'en-US', timezoneId: 'UTC' });
    const page = await context.newPage();
    page.on('console', (m) => {
      if (m.text().includes('Content Security Policy')) problems.push(`CSP: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    await signInInBrowser(page, dash(path), who);
    return page;
  }

  before(async () => {
    backend = await startConnectorBackend('lab');
    w = await startSignInWorld({
      users: [ROOT, BOB],
      identity: { admins: [ROOT.email], secretsKey: 'connector-dashboard-secrets-key-0123456789' },
      connectors: [{ name: 'lab' }, { name: 'office' }],
      routes: [{ name: 'lab', host: 'lab.corp.test', to: 'connector:lab', auth: 'public' }],
    });
    const g = w.main.gh!.g;
    await g.services.ca.createRoot({ by: 'test' });
    await waitFor(() => g.state.tls.clientCas.length > 0, 'the front door asking for connector certificates');
    browser = await launchChromium({ hostRules: ['MAP * ~NOTFOUND', 'EXCLUDE 127.0.0.1'], trust: [w.server.certPem] });
  });

  after(async () => {
    await agent?.stop('SIGKILL');
    await browser?.close();
    await w?.close();
    await backend?.close();
  });

  it('makes a token whose command line enrolls a connector, which then shows as connected', async () => {
    const page = await signedIn(ROOT, '/connectors');
    await page.waitForSelector('[data-testid="connectors-table"]');
    assert.deepEqual(await page.locator('[data-testid="connector-row"]').evaluateAll((rows) => rows.map((r) => [r.getAttribute('data-connector'), r.getAttribute('data-sessions')])), [
      ['lab', '0'],
      ['office', '0'],
    ]);
    assert.equal(await page.locator('[data-testid="nav-connectors"]').getAttribute('aria-current'), 'page');

    await page.locator('[data-connector="lab"] [data-testid="create-enrollment"]').click();
    const box = page.locator('[data-testid="enrollment"]');
    await box.waitFor();
    const command = await page.locator('[data-testid="enrollment-command"]').inputValue();
    const token = await page.locator('[data-testid="enrollment-token"]').inputValue();
    assert.match(token, /^ghc_/);
    assert.equal(command, `gatehouse connect --via ${w.main.authOrigin} --name lab --to http://BACKEND:PORT --enroll ${token} --state /var/lib/gatehouse-connector/lab`);

    // the command as shown, with the backend filled in (and, on this test machine, the test CA and a temp folder)
    const args = command.split(' ').slice(2);
    args[args.indexOf('--to') + 1] = `http://127.0.0.1:${backend.port}`;
    args[args.indexOf('--state') + 1] = join(w.dir, 'lab-state');
    agent = startConnector(w.dir, [...args, '--ca', w.ca.cert]);
    await agent.waitFor(event('connector_connected'));
    const r = await curl(['--cacert', w.ca.cert, '--resolve', `lab.corp.test:${w.main.port}:127.0.0.1`, `https://lab.corp.test:${w.main.port}/hi`]);
    assert.equal(r.status, 200, r.body);
    assert.equal(r.headers['x-backend'], 'lab');

    await page.locator('[data-testid="refresh-connectors"]').click();
    await page.waitForSelector('[data-connector="lab"][data-sessions="1"]');
    const session = page.locator('[data-connector="lab"] [data-testid="connector-session"]');
    assert.equal(await session.getAttribute('data-worker'), '1/1');
    assert.match(await session.innerText(), new RegExp(`127\\.0\\.0\\.1 → 127\\.0\\.0\\.1:${backend.port}, instance [0-9A-Z]{26}, worker 1/1`));
    mkdirSync(SHOTS, { recursive: true });
    await page.screenshot({ path: join(SHOTS, 'connectors.png'), fullPage: true });
    assert.deepEqual(problems, []);
  });

  it('is for root admins only', async () => {
    const page = await signedIn(BOB, '/connectors');
    await page.waitForSelector('[data-testid="page-error"]');
    assert.equal(await page.locator('[data-testid="nav-connectors"]').count(), 0);
    assert.deepEqual(problems, []);
  });
});
