/**
 * A real Chromium (headless, from the Debian package) in front of Gatehouse: a public route's page, a
 * certificate route with and without a client certificate (Playwright's `clientCertificates`), and a backend
 * redirect to its internal name that lands on the public URL.
 *
 * Every name Chromium looks up maps to 127.0.0.1 or fails (`--host-resolver-rules … MAP * ~NOTFOUND`): nothing
 * leaves the machine. The server certificate is trusted by its key pin (`--ignore-certificate-errors-spki-list`),
 * not by ignoring every error. Playwright runs the TLS handshake that presents a client certificate itself, in
 * this process (a local SOCKS interceptor): for those contexts the test names are mapped to 127.0.0.1 in this
 * process's `dns.promises.lookup` as well, and the server certificate is checked by Playwright's `ignoreHTTPSErrors`.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, BrowserContext } from 'playwright-core';
import { TestCa, startEcho, startGatehouse, tempDir, type Backend, type CertFiles, type RunningGatehouse } from '../harness/index.ts';
import { CHROMIUM, launchChromium, resolveToLoopback } from '../harness/browser.ts';


describe('a real browser', () => {
  const t = tempDir();
  let ca: TestCa;
  let echo: Backend;
  let gh: RunningGatehouse;
  let browser: Browser;
  let plain: BrowserContext;
  let eng: CertFiles;
  let sales: CertFiles;
  let restoreDns: () => void;
  let P: number;

  const url = (host: string, path: string) => `https://${host}:${P}${path}`;
  /** what the backend received since `from`, without the browser's own favicon requests */
  const receivedSince = (from: number) => echo.received.slice(from).map((r) => r.url).filter((u) => u !== '/favicon.ico');
  const withCertificate = (cert: CertFiles) =>
    browser.newContext({
      ignoreHTTPSErrors: true,
      clientCertificates: [{ origin: url('secure.corp.test', ''), cert: Buffer.from(cert.certPem), key: Buffer.from(cert.keyPem) }],
    });

  before(async () => {
    assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is not installed (apt-get install -y chromium)`);
    ca = new TestCa(t.dir);
    const server = ca.server(['*.corp.test', 'gate.test']);
    eng = ca.client('/CN=alice/O=Acme/OU=engineering');
    sales = ca.client('/CN=bob/O=Acme/OU=sales');
    echo = await startEcho();
    gh = await startGatehouse(t.dir, {
      server: { https: '127.0.0.1:0', authHost: 'gate.test', workers: 1, accessLog: false, tls: { cert: server.cert, key: server.key } },
      store: { sqlite: { path: join(t.dir, 'gatehouse.db') } },
      identity: { certificates: { trust: [ca.cert] } },
      routes: [
        { name: 'app', host: 'app.corp.test', aliases: ['app.internal'], to: echo.origin, auth: 'public' },
        { name: 'secure', host: 'secure.corp.test', to: echo.origin, auth: 'certificate', allow: { certificateSubject: { OU: 'engineering' } } },
      ],
    });
    P = gh.httpsPort;
    restoreDns = resolveToLoopback((h) => h === 'gate.test' || h.endsWith('.corp.test'));
    // the loopback address stays itself (Playwright's own proxy for client certificates listens there)
    browser = await launchChromium({ hostRules: ['MAP * ~NOTFOUND', 'EXCLUDE 127.0.0.1'], trust: [server.certPem] });
    plain = await browser.newContext();
  });
  after(async () => {
    await browser?.close();
    restoreDns?.();
    await gh?.close();
    await echo?.close();
    t.cleanup();
  });

  it('loads a public route page', async () => {
    const page = await plain.newPage();
    const before = echo.received.length;
    const res = await page.goto(url('app.corp.test', '/hello?from=chromium'));
    assert.equal(res?.status(), 200);
    const seen = JSON.parse(await page.locator('body').innerText()) as { url: string; headers: Record<string, string> };
    assert.equal(seen.url, '/hello?from=chromium');
    assert.match(seen.headers['user-agent'] ?? '', /Chrome/);
    assert.deepEqual(receivedSince(before), ['/hello?from=chromium']);
    await page.close();
  });

  it('with a client certificate, loads a certificate route and sees the backend’s answer', async () => {
    const context = await withCertificate(eng);
    try {
      const page = await context.newPage();
      const before = echo.received.length;
      const res = await page.goto(url('secure.corp.test', '/dashboard'));
      assert.equal(res?.status(), 200);
      const seen = JSON.parse(await page.locator('body').innerText()) as { url: string };
      assert.equal(seen.url, '/dashboard');
      assert.deepEqual(receivedSince(before), ['/dashboard']);
    } finally {
      await context.close();
    }
  });

  it('with a certificate that does not match, sees Gatehouse’s 403 page', async () => {
    const context = await withCertificate(sales);
    try {
      const page = await context.newPage();
      const before = echo.received.length;
      const res = await page.goto(url('secure.corp.test', '/dashboard'));
      assert.equal(res?.status(), 403);
      assert.equal(res?.headers()['x-gatehouse-error'], 'ERR_CERT_SUBJECT_MISMATCH');
      const text = await page.locator('body').innerText();
      assert.match(text, /Client certificate not allowed here/);
      assert.match(text, /OU=sales/);
      assert.deepEqual(receivedSince(before), []);
    } finally {
      await context.close();
    }
  });

  it('without a certificate, sees Gatehouse’s 403 page', async () => {
    const page = await plain.newPage();
    const before = echo.received.length;
    const res = await page.goto(url('secure.corp.test', '/dashboard'));
    assert.equal(res?.status(), 403);
    assert.equal(res?.headers()['x-gatehouse-error'], 'ERR_CERT_MISSING');
    assert.match(await page.title(), /403/);
    const text = await page.locator('body').innerText();
    assert.match(text, /A client certificate is required/);
    assert.match(text, /ERR_CERT_MISSING/);
    assert.deepEqual(receivedSince(before), []);
    await page.close();
  });

  it('a redirect to the application’s internal name lands on the public URL', async () => {
    const page = await plain.newPage();
    const before = echo.received.length;
    const res = await page.goto(url('app.corp.test', '/redirect?to=http://app.internal/landed?x=1'));
    assert.equal(page.url(), url('app.corp.test', '/landed?x=1'));
    assert.equal(res?.status(), 200);
    assert.equal((JSON.parse(await page.locator('body').innerText()) as { url: string }).url, '/landed?x=1');
    // and to its upstream address, too
    await page.goto(url('app.corp.test', '/redirect'));
    assert.equal(page.url(), url('app.corp.test', '/landed'));
    assert.deepEqual(receivedSince(before), ['/redirect?to=http://app.internal/landed?x=1', '/landed?x=1', '/redirect', '/landed']);
    await page.close();
  });
});
