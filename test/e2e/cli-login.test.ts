/**
 * `gatehouse login` and `gatehouse token issue | list | revoke`, as real child processes against an in-process
 * Gatehouse with a login route in front of the echo app and a real OpenID provider; the browser step runs in
 * headless Chromium.
 *
 * The CLI children resolve the test names (`gate.test`, `*.corp.test`) to 127.0.0.1 through a tiny preload
 * (`--import data:…` that wraps `dns.lookup`); everything else about them is the shipped executable. Their HOME
 * and XDG_CONFIG_HOME point into a temporary folder.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Browser } from 'playwright-core';
import { TestCa, deadPort, send, startEcho, startGatehouse, tempDir, type Backend, type CertFiles, type RunningGatehouse } from '../harness/index.ts';
import { loginInBrowser, startIdp, type RunningIdp } from '../harness/idp.ts';
import { launchChromium, newContext } from '../harness/browser.ts';
import { RESOLVER } from '../harness/connectors.ts';

const bin = resolve(import.meta.dirname, '../../bin/gatehouse.mjs');
const ALICE = { email: 'alice@example.com', password: 'wonderland', groups: ['sre'] };
const ROUTE = 'app.corp.test';

interface Cli {
  readonly child: ChildProcess;
  stdout: string;
  stderr: string;
  readonly exited: Promise<number | null>;
  /** resolves with the first match of `pattern` in stderr, now or later */
  waitForStderr(pattern: RegExp, ms?: number): Promise<RegExpMatchArray>;
}

describe('gatehouse login and gatehouse token', () => {
  const t = tempDir();
  const home = join(t.dir, 'home');
  const xdg = join(home, 'xdg');
  let ca: TestCa;
  let server: CertFiles;
  let echo: Backend;
  let idp: RunningIdp;
  let gh: RunningGatehouse;
  let browser: Browser;
  let port: number;
  const children = new Set<ChildProcess>();

  function cli(args: readonly string[]): Cli {
    const child = spawn(process.execPath, ['--import', `data:text/javascript,${encodeURIComponent(RESOLVER)}`, bin, ...args], {
      env: { ...process.env, HOME: home, XDG_CONFIG_HOME: xdg, GATEHOUSE_CA: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.add(child);
    const waiters: Array<() => boolean> = [];
    const self: Cli = {
      child,
      stdout: '',
      stderr: '',
      exited: new Promise((r) => child.on('exit', (code) => (children.delete(child), r(code)))),
      waitForStderr: (pattern, ms = 15_000) =>
        new Promise((res, rej) => {
          const timer = setTimeout(() => rej(new Error(`${pattern} not seen on stderr within ${ms} ms: ${self.stderr}`)), ms);
          const check = () => {
            const m = self.stderr.match(pattern);
            if (!m) return false;
            clearTimeout(timer);
            res(m);
            return true;
          };
          if (!check()) waiters.push(check);
        }),
    };
    child.stdout!.on('data', (c: Buffer) => (self.stdout += c.toString()));
    child.stderr!.on('data', (c: Buffer) => {
      self.stderr += c.toString();
      for (let i = waiters.length - 1; i >= 0; i--) if (waiters[i]!()) waiters.splice(i, 1);
    });
    return self;
  }

  async function run(args: readonly string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
    const c = cli(args);
    const code = await c.exited;
    return { code, stdout: c.stdout, stderr: c.stderr };
  }

  const viaUrl = () => `https://gate.test:${port}`;
  const bearer = (token: string) => send(ROUTE, port, ca.certPem, { path: '/whoami', headers: { authorization: `Bearer ${token}`, accept: 'application/json' } });
  const tokens = async (extra: string[] = []) => {
    const r = await run(['token', 'list', '-c', gh.configFile, '--json', ...extra]);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as Array<{ id: string; user: string; name: string; kind: string; created: string; expires: string }>;
  };
  /** Polls until the bearer token is refused (a running Gatehouse learns of a revocation through the store's feed). */
  async function refusedSoon(token: string): Promise<Awaited<ReturnType<typeof bearer>>> {
    const deadline = Date.now() + 5000;
    for (;;) {
      const a = await bearer(token);
      if (a.status !== 200 || Date.now() > deadline) return a;
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  before(async () => {
    ca = new TestCa(t.dir);
    server = ca.server(['*.corp.test', 'gate.test']);
    port = await deadPort(); // the front door's port must be known before the IdP client is registered
    [echo, idp, browser] = await Promise.all([
      startEcho(),
      startIdp({
        users: [ALICE],
        clients: [{ clientId: 'gh', clientSecret: 'secret-secret-secret', redirectUris: [`https://gate.test:${port}/.gatehouse/callback`] }],
      }),
      launchChromium({ trust: [server.certPem] }),
    ]);
    gh = await startGatehouse(t.dir, {
      server: { https: `127.0.0.1:${port}`, authHost: 'gate.test', workers: 1, tls: { cert: server.cert, key: server.key } },
      store: { sqlite: { path: join(t.dir, 'gh.db') } },
      identity: {
        oidc: { issuer: idp.issuer, clientId: 'gh', clientSecret: 'secret-secret-secret', groupsClaim: 'groups', scopes: ['openid', 'email', 'profile', 'groups'] },
        admins: [],
      },
      routes: [{ name: 'app', host: ROUTE, to: echo.origin, auth: 'login', allow: { users: [ALICE.email] } }],
    });
  });

  after(async () => {
    for (const c of children) c.kill('SIGKILL');
    await browser?.close();
    await gh?.close();
    await idp?.close();
    await echo?.close();
    t.cleanup();
  });

  it('has --help on login and on each token command', async () => {
    const all = await Promise.all([['login'], ['token'], ['token', 'issue'], ['token', 'list'], ['token', 'revoke']].map((cmd) => run([...cmd, '--help'])));
    for (const r of all) {
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^Usage: gatehouse (login|token)/);
    }
    assert.match(all[0]!.stdout, /--via <url>/);
    assert.match(all[0]!.stdout, /--no-browser/);
    assert.match(all[2]!.stdout, /--ttl <duration>/);
  });

  it('signs in through the browser, stores a private token that works as a bearer token, and revocation ends it', async () => {
    const login = cli(['login', '--via', viaUrl(), '--no-browser', '--ca', ca.cert]);
    const [, url] = await login.waitForStderr(/Open this URL to sign in: (\S+)/);
    const signInUrl = new URL(url!);
    assert.equal(signInUrl.origin + signInUrl.pathname, `${viaUrl()}/.gatehouse/cli`);
    assert.equal(signInUrl.searchParams.get('code_challenge_method'), 'S256');

    const context = await newContext(browser);
    try {
      const page = await context.newPage();
      await page.goto(signInUrl.href);
      assert.equal(await loginInBrowser(page, ALICE), 'submitted');
      assert.equal(new URL(page.url()).hostname, '127.0.0.1'); // back on the CLI's loopback
      assert.match(await page.locator('body').innerText(), /You can close this tab/);
    } finally {
      await context.close();
    }
    assert.equal(await login.exited, 0, login.stderr);
    assert.match(login.stderr, new RegExp(`Signed in to ${viaUrl()} as ${ALICE.email} \\(token valid until `));
    assert.equal(login.stdout, '');

    const dir = join(xdg, 'gatehouse');
    const file = join(dir, 'credentials.json');
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const stored = JSON.parse(readFileSync(file, 'utf8')) as { logins: Record<string, { via: string; token: string; user: string; expires: string }> };
    const entry = stored.logins[viaUrl()];
    assert.ok(entry, JSON.stringify(Object.keys(stored.logins)));
    assert.equal(entry.user, ALICE.email);
    assert.match(entry.token, /^gh_/);
    assert.ok(Date.parse(entry.expires) > Date.now());

    const before = echo.received.length;
    const ok = await bearer(entry.token);
    assert.equal(ok.status, 200, ok.body.toString());
    const seen = echo.received.slice(before).at(-1);
    assert.ok(seen);
    assert.equal(seen.headers['x-gatehouse-user'], ALICE.email);
    assert.equal(seen.headers.authorization, undefined);

    const listed = (await tokens(['--user', ALICE.email])).filter((x) => x.kind === 'cli');
    assert.equal(listed.length, 1);
    assert.equal(listed[0]!.user, ALICE.email);
    assert.ok(!JSON.stringify(listed).includes(entry.token));
    const revoke = await run(['token', 'revoke', '-c', gh.configFile, listed[0]!.id.slice(0, 10)]);
    assert.equal(revoke.code, 0, revoke.stderr);
    assert.match(revoke.stderr, /^Revoked token /);

    const refused = await refusedSoon(entry.token);
    assert.equal(refused.status, 401);
    assert.equal(refused.headers['x-gatehouse-error'], 'ERR_TOKEN_INVALID');
    assert.equal((await tokens()).some((x) => x.id === listed[0]!.id), false);
  });

  it('issues an API token from the shell: only the token on stdout, the asked expiry, usable and revocable', async () => {
    const issued = await run(['token', 'issue', '-c', gh.configFile, '--user', ALICE.email, '--ttl', '2h', '--name', 'ci']);
    assert.equal(issued.code, 0, issued.stderr);
    assert.match(issued.stdout, /^gh_[A-Za-z0-9_-]{43}\n$/);
    const token = issued.stdout.trim();
    assert.match(issued.stderr, /Issued token \S+ "ci" for alice@example\.com, valid until /);
    assert.ok(!issued.stderr.includes(token));

    const ok = await bearer(token);
    assert.equal(ok.status, 200, ok.body.toString());

    const mine = (await tokens()).filter((x) => x.name === 'ci');
    assert.equal(mine.length, 1);
    const row = mine[0]!;
    assert.equal(row.kind, 'api');
    assert.equal(row.user, ALICE.email);
    const lifetime = Date.parse(row.expires) - Date.parse(row.created);
    assert.equal(lifetime, 2 * 3_600_000);
    assert.ok(Math.abs(Date.parse(row.created) - Date.now()) < 60_000);

    const table = await run(['token', 'list', '-c', gh.configFile]);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^ID\s+USER\s+NAME\s+KIND\s+CREATED\s+EXPIRES\n/);
    assert.ok(table.stdout.includes(row.id.slice(0, 12)));
    assert.ok(!table.stdout.includes(token));

    const unknown = await run(['token', 'revoke', '-c', gh.configFile, 'zzzz-not-an-id']);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /^gatehouse: no live token has an id starting with zzzz-not-an-id.*\n$/);

    // two stored tokens whose ids share a prefix (ids are SHA-256 in base64url, so this is made by hand)
    const now = Date.now();
    for (const id of ['AmbiguousPrefix1', 'AmbiguousPrefix2']) {
      await gh.g.store.put('token', id, { user: 'svc-deploy', name: 'x', created: now, expires: now + 600_000, kind: 'api' }, { expiresAt: now + 600_000 });
    }
    const ambiguous = await run(['token', 'revoke', '-c', gh.configFile, 'AmbiguousPre']);
    assert.equal(ambiguous.code, 1);
    assert.equal(ambiguous.stderr, 'gatehouse: more than one token has an id starting with AmbiguousPre: give more characters\n');
    assert.equal((await tokens(['--user', 'svc-deploy'])).length, 2);
    const exact = await run(['token', 'revoke', '-c', gh.configFile, 'AmbiguousPrefix2']);
    assert.equal(exact.code, 0, exact.stderr);
    assert.deepEqual((await tokens(['--user', 'svc-deploy'])).map((x) => x.id), ['AmbiguousPrefix1']);

    // an id may start with "-" (base64url): "--" ends the options, as for any command, and the refusal says so
    const unquoted = await run(['token', 'revoke', '-c', gh.configFile, '-Xy3']);
    assert.equal(unquoted.code, 1);
    assert.match(unquoted.stderr, /unknown option '-Xy3'[\s\S]*an id that starts with '-' goes after '--': gatehouse token revoke -c FILE -- ID-PREFIX/);
    const revoke = await run(['token', 'revoke', '-c', gh.configFile, '--', row.id]);
    assert.equal(revoke.code, 0, revoke.stderr);
    const refused = await refusedSoon(token);
    assert.equal(refused.status, 401);
    assert.equal(refused.headers['x-gatehouse-error'], 'ERR_TOKEN_INVALID');
  });

  it('rejects a loopback answer whose state does not match', async () => {
    const login = cli(['login', '--via', viaUrl(), '--no-browser', '--ca', ca.cert]);
    const [, url] = await login.waitForStderr(/Open this URL to sign in: (\S+)/);
    const loopback = new URL(new URL(url!).searchParams.get('redirect_uri')!);
    assert.equal(loopback.hostname, '127.0.0.1');
    loopback.searchParams.set('code', 'stolen-code');
    loopback.searchParams.set('state', 'not-the-state');
    const res = await fetch(loopback);
    assert.equal(res.status, 400);
    assert.match(await res.text(), /state mismatch/);
    assert.equal(await login.exited, 1);
    assert.match(login.stderr, /\ngatehouse: the sign-in answer does not match this login \(state mismatch\); run gatehouse login again\n$/);
  });

  it('fails with one clear line when nothing listens at --via', async () => {
    const dead = await deadPort();
    const r = await run(['login', '--via', `https://gate.test:${dead}`, '--no-browser', '--ca', ca.cert]);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, `gatehouse: cannot reach https://gate.test:${dead}: connection refused (is --via right, and is Gatehouse running there?)\n`);
    assert.equal(r.stdout, '');
  });
});
