/**
 * `gatehouse demo` as a user meets it: the real CLI in a child process, its banner read from stdout, every
 * curl line it prints pasted into a shell as it is, and the printed demo users signing in with Chromium.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import WebSocket from 'ws';
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet } from 'jose';
import type { Browser, Page } from 'playwright-core';
import { curl, loginInBrowser, runCli, tempDir } from '../harness/index.ts';
import { launchChromium } from '../harness/browser.ts';

const bin = resolve(import.meta.dirname, '../../bin/gatehouse.mjs');

/** The certificate the front door presents for `host` (SNI), PEM. */
function presentedCertificate(port: number, host: string): Promise<string> {
  return new Promise((done, fail) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, servername: host, rejectUnauthorized: false }, () => {
      const pem = socket.getPeerX509Certificate()!.toString();
      socket.destroy();
      done(pem);
    });
    socket.once('error', fail);
  });
}

interface Demo {
  readonly child: ChildProcess;
  readonly banner: string;
  readonly port: number;
  readonly curlLines: string[];
  readonly exited: Promise<number | null>;
  stop(): Promise<number | null>;
}

/** Starts the demo and resolves once its banner is complete (the line that says how to stop). */
function startDemo(args: readonly string[], cwd: string): Promise<Demo> {
  const child = spawn(process.execPath, [bin, 'demo', ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return new Promise((resolveDemo, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`no banner within 20 s; stdout: ${stdout}; stderr: ${stderr}`));
    }, 20_000);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`gatehouse demo exited with ${code} before its banner; stderr: ${stderr}`));
    });
    child.stdout!.on('data', (c: Buffer) => {
      stdout += c.toString();
      if (!/^Stop: .*$/m.test(stdout)) return;
      clearTimeout(timer);
      const port = Number(/https:\/\/echo\.localhost:(\d+)\//.exec(stdout)?.[1]);
      resolveDemo({
        child,
        banner: stdout,
        port,
        curlLines: stdout.split('\n').map((l) => l.trim()).filter((l) => l.startsWith('curl ')),
        exited,
        stop: () => {
          if (child.exitCode === null) child.kill('SIGTERM');
          return exited;
        },
      });
    });
  });
}

/** Runs a printed curl line in a shell from `cwd`, with status and redirect target written instead of the body. */
function runPrinted(line: string, cwd: string): Promise<{ status: number; redirect: string; stderr: string }> {
  const probe = line.replace(/^curl /, "curl -sS --max-time 10 -o /dev/null -w '%{http_code} %{redirect_url}' ");
  return new Promise((done) => {
    execFile('bash', ['-c', probe], { cwd }, (_err, stdout, stderr) => {
      const [status, redirect] = stdout.split(' ');
      done({ status: Number(status), redirect: redirect ?? '', stderr });
    });
  });
}

/** The demo users the banner lists, email → password. */
function bannerUsers(banner: string): Map<string, string> {
  return new Map([...banner.matchAll(/^ +(\w+@demo\.localhost) +(\S+) /gm)].map((m) => [m[1]!, m[2]!]));
}

/** Opens `url` in a fresh context, signs in as `email` at the demo IdP, and returns the page and the final answer's status. */
async function signIn(browser: Browser, url: string, email: string, password: string): Promise<{ page: Page; status: number }> {
  const page = await (await browser.newContext()).newPage();
  await page.goto(url); // → auth host → the IdP's sign-in form
  const landed = page.waitForResponse((r) => r.url() === url);
  assert.equal(await loginInBrowser(page, { email, password }), 'submitted');
  const status = (await landed).status();
  await page.waitForURL(url);
  return { page, status };
}

function mode(path: string): number {
  return statSync(path).mode & 0o777;
}

describe('gatehouse demo', () => {
  const t = tempDir('gatehouse-demo-');
  const demoDir = join(t.dir, 'demo');
  let first: Demo | undefined;
  let second: Demo | undefined;
  let openSocket: WebSocket | undefined;
  after(async () => {
    await Promise.all([first?.stop(), second?.stop()]);
    t.cleanup();
  });

  it('starts on a fresh folder and prints curl lines that work when pasted', async () => {
    first = await startDemo(['--dir', 'demo', '--port', '0'], t.dir);
    const { port, curlLines } = first;
    assert.ok(port > 0, first.banner);
    assert.match(first.banner, /demo\/ca\.crt {3}created now/);
    // the lines the README and the issue promise, with paths relative to where the demo was started
    const expected = [
      `curl --cacert demo/ca.crt https://echo.localhost:${port}/`,
      `curl --cacert demo/ca.crt --cert demo/alice-laptop.crt --key demo/alice-laptop.key https://secure.localhost:${port}/`,
      `curl --cacert demo/ca.crt https://secure.localhost:${port}/`,
      `curl --cacert demo/ca.crt https://app.localhost:${port}/`,
      `curl --cacert demo/ca.crt https://gate.localhost:${port}/.well-known/jwks.json`,
    ];
    for (const line of expected) assert.ok(curlLines.includes(line), `missing: ${line}\n${first.banner}`);
    assert.ok(curlLines.some((l) => l.includes('--cert-type P12 --cert demo/alice-laptop.p12:')));

    for (const line of curlLines) {
      const r = await runPrinted(line, t.dir);
      if (line.includes('redirect.localhost')) {
        assert.equal(r.status, 302, `${line}: ${r.stderr}`);
        assert.equal(r.redirect, `https://redirect.localhost:${port}/welcome`, line);
      } else if (line.includes('secure.localhost') && !line.includes('--cert')) {
        assert.equal(r.status, 403, `${line}: ${r.stderr}`);
      } else if (line.includes('app.localhost')) {
        assert.equal(r.status, 401, `${line}: ${r.stderr}`);
      } else {
        assert.equal(r.status, 200, `${line}: ${r.stderr}`);
      }
    }
  });

  it('refuses the certificate route without a certificate, naming the reason', async () => {
    const r = await curl(['--cacert', join(demoDir, 'ca.crt'), `https://secure.localhost:${first!.port}/`]);
    assert.equal(r.status, 403);
    assert.equal(r.headers['x-gatehouse-error'], 'ERR_CERT_MISSING');
    assert.match(r.body, /client certificate/i);
  });

  it('serves the echo app as JSON to scripts and as HTML to browsers', async () => {
    const url = `https://echo.localhost:${first!.port}/`;
    const json = await curl(['--cacert', join(demoDir, 'ca.crt'), `${url}?json`]);
    const seen = JSON.parse(json.body) as { headers: Record<string, string> };
    assert.equal(seen.headers['x-forwarded-host'], `echo.localhost:${first!.port}`);
    const html = await curl(['--cacert', join(demoDir, 'ca.crt'), '-H', 'accept: text/html', url]);
    assert.match(html.headers['content-type'] ?? '', /text\/html/);
    assert.match(html.body, /x-forwarded-host/);
  });

  it('follows the rewritten redirect to the welcome page', async () => {
    const r = await curl(['--cacert', join(demoDir, 'ca.crt'), '-L', `https://redirect.localhost:${first!.port}/`]);
    assert.equal(r.status, 200);
    assert.match(r.body, /Welcome/);
  });

  it('echoes WebSocket messages through Gatehouse', async () => {
    const port = first!.port;
    const ca = readFileSync(join(demoDir, 'ca.crt'), 'utf8');
    const page = await curl(['--cacert', join(demoDir, 'ca.crt'), `https://ws.localhost:${port}/`]);
    assert.equal(page.status, 200);
    assert.match(page.body, /new WebSocket/);
    // node does not resolve *.localhost: connect to 127.0.0.1 with the demo name as SNI and Host
    const ws = new WebSocket(`wss://ws.localhost:${port}/echo`, {
      createConnection: () => tlsConnect({ host: '127.0.0.1', port, servername: 'ws.localhost', ca }),
    });
    const reply = await new Promise<string>((done, reject) => {
      ws.once('open', () => ws.send('hello through the gate'));
      ws.once('message', (data: Buffer) => done(data.toString()));
      ws.once('error', reject);
    });
    assert.equal(reply, 'hello through the gate');
    openSocket = ws; // left open: stopping must not wait for it, nor fail on its late log line
  });

  it('signs the printed users in through the built-in IdP with Chromium: alice gets in, bob gets 403', async () => {
    const port = first!.port;
    const users = bannerUsers(first!.banner);
    assert.deepEqual([...users.keys()], ['admin@demo.localhost', 'alice@demo.localhost', 'bob@demo.localhost'], first!.banner);
    assert.ok(first!.banner.includes(`Sign in: open https://app.localhost:${port}/`), first!.banner);
    assert.ok(first!.banner.includes(`Sign out: https://app.localhost:${port}/.gatehouse/logout`), first!.banner);
    // the internal CA issued each host its own certificate: Chromium trusts the ones it will be shown
    const shown = await Promise.all(['app.localhost', 'gate.localhost'].map((host) => presentedCertificate(port, host)));
    assert.notEqual(shown[0], shown[1], 'one certificate per host, picked by SNI');
    const browser = await launchChromium({ trust: shown, hostRules: ['MAP *.localhost 127.0.0.1'] });
    try {
      const app = `https://app.localhost:${port}/`;
      const alice = await signIn(browser, app, 'alice@demo.localhost', users.get('alice@demo.localhost')!);
      assert.equal(alice.status, 200);
      const who = await alice.page.locator('#who').innerText();
      assert.match(who, /X-Gatehouse-User\s+alice@demo\.localhost/);
      assert.match(who, /X-Gatehouse-Roles\s+staff/);

      // the assertion the app received verifies against the JWKS the banner's curl line fetches
      const echoed = (await (await alice.page.goto(`${app}?json`))!.json()) as { headers: Record<string, string> };
      const jwks = await curl(['--cacert', join(demoDir, 'ca.crt'), `https://gate.localhost:${port}/.well-known/jwks.json`]);
      assert.equal(jwks.status, 200);
      const { payload } = await jwtVerify(echoed.headers['x-gatehouse-jwt-assertion']!, createLocalJWKSet(JSON.parse(jwks.body) as JSONWebKeySet), {
        issuer: `https://gate.localhost:${port}`,
      });
      assert.equal(payload.email, 'alice@demo.localhost');
      assert.deepEqual(payload.groups, ['staff']);

      const bob = await signIn(browser, app, 'bob@demo.localhost', users.get('bob@demo.localhost')!);
      assert.equal(bob.status, 403);
      assert.match(await bob.page.title(), /403 Access denied/);
      assert.doesNotMatch(await bob.page.content(), /id="who"/);
    } finally {
      await browser.close();
    }
  });

  it('keeps keys, passwords and the configuration owner-only, the CA key only sealed in the store, and prints the p12 password', () => {
    for (const name of ['secrets.key', 'alice-laptop.key', 'alice-laptop.p12', 'alice-laptop.p12.password', 'idp-secrets.json', 'gatehouse.yaml']) {
      assert.equal(mode(join(demoDir, name)), 0o600, name);
    }
    assert.deepEqual(
      readdirSync(demoDir).filter((n) => /\.key$/.test(n)),
      ['alice-laptop.key', 'secrets.key'],
      'no CA or server key on disk: the internal CA keeps them sealed in the store',
    );
    const password = readFileSync(join(demoDir, 'alice-laptop.p12.password'), 'utf8').trim();
    assert.ok(password.length >= 12);
    assert.ok(first!.banner.includes(`password: ${password}`));
    const client = new X509Certificate(readFileSync(join(demoDir, 'alice-laptop.crt')));
    assert.match(client.subject, /^CN=alice@demo\.localhost$/m);
    const ca = new X509Certificate(readFileSync(join(demoDir, 'ca.crt')));
    assert.ok(client.checkIssued(ca) && client.verify(ca.publicKey), 'issued by the internal CA the banner says to trust');
  });

  it('stops on SIGTERM with exit 0, WebSocket still open', async () => {
    const closed = new Promise<void>((done) => openSocket!.once('close', () => done()));
    assert.equal(await first!.stop(), 0);
    await closed;
  });

  it('reuses the CA and the client certificate on a second start (absolute --dir)', async () => {
    const ca = readFileSync(join(demoDir, 'ca.crt'), 'utf8');
    const fingerprint = new X509Certificate(ca).fingerprint256;
    const password = readFileSync(join(demoDir, 'alice-laptop.p12.password'), 'utf8').trim();
    const secrets = readFileSync(join(demoDir, 'idp-secrets.json'), 'utf8');
    second = await startDemo(['--dir', demoDir, '--port', '0'], process.cwd());
    assert.equal(readFileSync(join(demoDir, 'ca.crt'), 'utf8'), ca);
    assert.ok(second.banner.includes(`${join(demoDir, 'ca.crt')}   reused, SHA-256 ${fingerprint}`), second.banner);
    assert.ok(second.banner.includes(`password: ${password}`));
    assert.equal(readFileSync(join(demoDir, 'idp-secrets.json'), 'utf8'), secrets);
    assert.deepEqual(bannerUsers(second.banner), bannerUsers(first!.banner));
    const p12 = second.curlLines.find((l) => l.includes('--cert-type P12'))!;
    assert.ok(p12.includes(`--cacert ${join(demoDir, 'ca.crt')}`), p12);
    assert.equal((await runPrinted(p12, process.cwd())).status, 200);
  });

  it('reports a port in use in one line and exits 1', async () => {
    const r = await runCli(['demo', '--dir', join(t.dir, 'other'), '--port', String(second!.port)]);
    assert.equal(r.code, 1);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, /already in use/);
    assert.equal(await second!.stop(), 0);
  });

  it('has --help', async () => {
    const r = await runCli(['demo', '--help']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /--dir/);
    assert.match(r.stdout, /--port/);
  });
});
