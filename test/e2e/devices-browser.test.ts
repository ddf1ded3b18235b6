/**
 * Device certificates in a real browser: headless Chromium (playwright-core) on the dashboard's /devices page,
 * against an in-process Gatehouse with an internal CA and a real OpenID provider.
 *
 * - bob adds a device with the PKCS#12 option: the file arrives as a download, its password is shown once; the
 *   real curl with that file and password reaches an `auth: certificate` route as bob;
 * - he revokes it on the page (with its confirm step): curl is refused with ERR_CERT_REVOKED;
 * - he adds a device from his own CSR (openssl): the certificate arrives as a download and verifies;
 * - root sees every certificate with its user and revokes bob's;
 * - no page reports a Content-Security-Policy violation or an error.
 *
 * The screenshot `devices.png` (1200×800) goes to test-results/screenshots/, or to $GATEHOUSE_SCREENSHOTS
 * (`GATEHOUSE_SCREENSHOTS=docs/screenshots` refreshes the one in the docs).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { launchChromium } from '../harness/browser.ts';
import { AUTH_HOST, curl, signInInBrowser, startSignInWorld, type SignInWorld } from '../harness/index.ts';
import { openssl } from '../pki/support.ts';

const ROOT = { email: 'root@example.com', password: 'root-password' };
const BOB = { email: 'bob@example.com', password: 'bob-password' };
const SECRETS_KEY = 'a-secrets-key-for-the-devices-browser-test';
const SHOTS = process.env.GATEHOUSE_SCREENSHOTS ?? fileURLToPath(new URL('../../test-results/screenshots/', import.meta.url));
const DESKTOP = { width: 1200, height: 800 };

function tid(testid: string, data: Record<string, string> = {}): string {
  return `[data-testid="${testid}"]${Object.entries(data)
    .map(([k, v]) => `[data-${k}="${v}"]`)
    .join('')}`;
}

describe('device certificates in a real browser', () => {
  let w: SignInWorld;
  let browser: Browser;
  const contexts: BrowserContext[] = [];
  const problems: string[] = [];
  let bob: Page;
  /** the PKCS#12 bob downloaded, its password and serial */
  let p12File: string;
  let p12Password: string;
  let p12Serial: string;
  let csrSerial: string;

  const dash = (path = '/') => w.main.url(AUTH_HOST, path);
  const file = (name: string) => join(w.dir, name);

  before(async () => {
    mkdirSync(SHOTS, { recursive: true });
    w = await startSignInWorld({
      users: [ROOT, BOB],
      identity: { admins: [ROOT.email], secretsKey: SECRETS_KEY, certificates: { trust: ['internal'] } },
      routes: [
        { name: 'app', host: 'app.corp.test', allow: { domains: ['example.com'] } },
        { name: 'device', host: 'device.corp.test', auth: 'certificate', allow: { users: [BOB.email] } },
      ],
    });
    await w.main.gh!.g.services.ca.createRoot({ by: 'test', organisation: 'Acme' });
    // Gatehouse reloads itself when the CA appears: wait until it publishes it
    const client = w.client();
    const deadline = Date.now() + 5000;
    while ((await client.request(dash('/ca/ca.crt'))).status !== 200) {
      if (Date.now() > deadline) assert.fail('/ca/ca.crt was not published within 5 s');
      await new Promise((r) => setTimeout(r, 20));
    }
    browser = await launchChromium({ hostRules: ['MAP * ~NOTFOUND', 'EXCLUDE 127.0.0.1'], trust: [w.server.certPem] });
  });
  after(async () => {
    for (const c of contexts) await c.close().catch(() => undefined);
    await browser?.close();
    await w?.close();
  });

  /** A fresh context (own cookies), desktop-sized, en-US and UTC, whose page reports CSP violations and errors. */
  async function person(who: string): Promise<Page> {
    const context = await browser.newContext({ viewport: DESKTOP, locale: 'en-US', timezoneId: 'UTC', acceptDownloads: true });
    contexts.push(context);
    const page = await context.newPage();
    page.on('console', (m) => {
      if (m.text().includes('Content Security Policy')) problems.push(`[${who}] CSP: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`[${who}] ${e.message}`));
    page.on('dialog', (d) => {
      problems.push(`[${who}] dialog ${d.message()}`);
      void d.dismiss();
    });
    return page;
  }

  async function drawn(page: Page): Promise<void> {
    await page.waitForSelector(tid('page-devices'));
    await page.waitForSelector('main:not([aria-busy])');
  }

  /** The device route with a PKCS#12 client certificate, through the real curl. */
  function visitWithP12(path: string) {
    return curl([
      '--cacert', w.ca.cert,
      '--resolve', `device.corp.test:${w.main.port}:127.0.0.1`,
      '-H', 'Accept: application/json',
      '--cert-type', 'P12',
      '--cert', `${p12File}:${p12Password}`,
      w.main.url('device.corp.test', path),
    ]);
  }

  it('a signed-in user adds a device as a PKCS#12: the file downloads, the password is shown once, curl reaches the route with it', async () => {
    bob = await person('bob');
    await signInInBrowser(bob, dash('/devices'), BOB);
    await drawn(bob);
    assert.equal(await bob.locator(tid('nav-devices')).getAttribute('aria-current'), 'page');
    assert.equal(await bob.locator(tid('device-row')).count(), 0, 'no certificate yet');
    assert.equal(await bob.locator(tid('device-csr')).isVisible(), false, 'the CSR field is for the CSR option only');

    await bob.fill(tid('device-name'), 'work laptop');
    await bob.fill(tid('device-days'), '90');
    await bob.selectOption(tid('device-mode'), 'p12');
    await bob.click(tid('add-device'));
    const passwordBox = bob.locator(tid('device-password'));
    await passwordBox.waitFor();
    p12Password = await passwordBox.inputValue();
    assert.match(p12Password, /^[A-Za-z0-9_-]{20}$/);
    const row = bob.locator(tid('device-row', { status: 'valid' }));
    await row.waitFor();
    p12Serial = (await row.getAttribute('data-serial'))!;
    assert.match(p12Serial, /^[0-9A-F]{32}$/);
    assert.match(await row.innerText(), /work laptop/);

    const [download] = await Promise.all([bob.waitForEvent('download'), bob.click(tid('device-download'))]);
    assert.equal(download.suggestedFilename(), 'gatehouse-work-laptop.p12');
    p12File = file('bob-work-laptop.p12');
    await download.saveAs(p12File);
    const opened = await openssl('pkcs12', '-in', p12File, '-passin', `pass:${p12Password}`, '-nokeys');
    assert.match(opened, /subject=O = Acme, CN = bob@example\.com, emailAddress = bob@example\.com/);
    const own = await openssl('pkcs12', '-in', p12File, '-passin', `pass:${p12Password}`, '-nokeys', '-clcerts');
    assert.equal(new X509Certificate(own.slice(own.indexOf('-----BEGIN'))).serialNumber, p12Serial, 'the file holds the certificate the page lists');

    const seen = w.echo.received.length;
    const ok = await visitWithP12('/from-the-browser-download');
    assert.equal(ok.status, 200, `${ok.stderr} ${ok.body.slice(0, 300)}`);
    assert.equal(w.echo.received.slice(seen)[0]?.headers['x-gatehouse-user'], BOB.email);

    await bob.mouse.move(0, 0);
    const shot = join(SHOTS, 'devices.png');
    await bob.screenshot({ path: shot, fullPage: false });
    const bytes = statSync(shot).size;
    assert.ok(bytes > 5_000 && bytes < 400_000, `devices.png is ${bytes} bytes`);

    // the password was shown once: a reload has the list, not the password
    await bob.reload();
    await drawn(bob);
    assert.equal(await bob.locator(tid('device-password')).count(), 0);
    assert.equal(await bob.locator(tid('device-row', { serial: p12Serial, status: 'valid' })).count(), 1);
  });

  it('revoking the device on the page (after a confirm step): curl with the same PKCS#12 is refused', async () => {
    const row = bob.locator(tid('device-row', { serial: p12Serial }));
    await row.locator(tid('revoke-device')).click();
    await row.locator(tid('confirm')).click();
    await bob.waitForSelector(tid('device-row', { serial: p12Serial, status: 'revoked' }));
    assert.match(await bob.locator(tid('notice')).innerText(), /revoked/);
    assert.equal(await row.locator(tid('revoke-device')).count(), 0, 'nothing left to revoke');

    const refused = await visitWithP12('/after-revoke');
    assert.equal(refused.status, 403, refused.body.slice(0, 300));
    assert.equal(refused.headers['x-gatehouse-error'], 'ERR_CERT_REVOKED');
    assert.ok(!w.echo.received.some((r) => r.url === '/after-revoke'), 'nothing reached the backend');
  });

  it('a device from my own CSR: the certificate downloads and verifies against the CA', async () => {
    await openssl('req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', file('desk.key'), '-out', file('desk.csr'), '-subj', '/CN=desk');
    await bob.fill(tid('device-name'), 'desk');
    await bob.selectOption(tid('device-mode'), 'csr');
    assert.equal(await bob.locator(tid('device-csr')).isVisible(), true);
    await bob.fill(tid('device-csr'), readFileSync(file('desk.csr'), 'utf8'));
    await bob.click(tid('add-device'));
    const link = bob.locator(tid('device-download'));
    await link.waitFor();
    assert.equal(await bob.locator(tid('device-password')).count(), 0, 'no password: there is no PKCS#12');
    const [download] = await Promise.all([bob.waitForEvent('download'), link.click()]);
    assert.equal(download.suggestedFilename(), 'gatehouse-desk.crt');
    await download.saveAs(file('desk.crt'));
    writeFileSync(file('ca.crt'), w.main.gh!.g.services.ca.caBundlePem());
    assert.match(await openssl('verify', '-CAfile', file('ca.crt'), file('desk.crt')), /OK/);
    const serialLine = await openssl('x509', '-in', file('desk.crt'), '-noout', '-serial');
    csrSerial = serialLine.trim().split('=')[1]!;
    await bob.waitForSelector(tid('device-row', { serial: csrSerial, status: 'valid' }));
    assert.equal(await bob.locator(tid('device-csr')).isVisible(), false, 'the form is back to the PKCS#12 option');
  });

  it('root sees every certificate with its user and revokes any', async () => {
    const root = await person('root');
    await signInInBrowser(root, dash('/devices'), ROOT);
    await drawn(root);
    const rows = root.locator(tid('device-row', { user: BOB.email }));
    assert.equal(await rows.count(), 2, 'both of bob\'s certificates');
    const row = root.locator(tid('device-row', { serial: csrSerial, status: 'valid' }));
    assert.match(await row.innerText(), /bob@example\.com/);
    await row.locator(tid('revoke-device')).click();
    await row.locator(tid('confirm')).click();
    await root.waitForSelector(tid('device-row', { serial: csrSerial, status: 'revoked' }));
    const record = await w.main.gh!.g.services.ca.get(csrSerial);
    assert.equal(record?.revoked?.by, ROOT.email);
  });

  it('no page reported a CSP violation, an error or a dialog', () => {
    assert.deepEqual(problems, []);
  });
});
