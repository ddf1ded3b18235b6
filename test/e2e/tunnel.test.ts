/**
 * TCP tunnels through the front door (`CONNECT` to a `tcp` route), against an in-process Gatehouse with a real
 * OpenID provider and plain TCP backends on 127.0.0.1: the decision and its refusal codes, half-close in both
 * directions, backpressure towards a reader that does not read, the idle timeout, a certificate route, the
 * store records and the closing of a tunnel when its record, token or user goes, the metrics, and the real
 * `gatehouse tunnel` command (stdin/stdout, refusals as one line, the browser sign-in when there is no token).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { Socket } from 'node:net';
import type { Browser } from 'playwright-core';
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { TestCa, deadPort, send, signInInBrowser, startGatehouse, startSignInWorld, tempDir, type CertFiles, type SignInWorld } from '../harness/index.ts';
import { loginInBrowser } from '../harness/idp.ts';
import { launchChromium, newContext } from '../harness/browser.ts';
import { closed, connectRoute, readAll, spawnGatehouse, startTcpBackend, startTcpEcho, type TcpBackend } from '../harness/tunnels.ts';
import type { Gatehouse } from '../../src/app/index.ts';
import type { TunnelRecord } from '../../src/tunnel/index.ts';

const ALICE = { email: 'alice@example.com', password: 'alice-password' };
const BOB = { email: 'bob@example.com', password: 'bob-password' };
const CAROL = { email: 'carol@example.com', password: 'carol-password' };
const DAVE = { email: 'dave@example.com', password: 'dave-password' };
const ROOT = { email: 'root@example.com', password: 'root-password' };

describe('TCP tunnels', { timeout: 150_000 }, () => {
  const t = tempDir('gatehouse-tunnel-');
  let w: SignInWorld;
  let g: Gatehouse;
  let port: number;
  let clientCa: TestCa;
  let engineer: CertFiles;
  let echo: TcpBackend;
  let scripted: TcpBackend;
  let idle: TcpBackend;
  let dead: number;
  const tokens: Record<string, string> = {};

  before(async () => {
    clientCa = new TestCa(t.dir, 'clients');
    engineer = clientCa.client('/CN=laptop/OU=eng');
    [echo, scripted, idle] = await Promise.all([startTcpEcho(), startTcpBackend(), startTcpEcho()]);
    dead = await deadPort();
    w = await startSignInWorld({
      users: [ALICE, BOB, CAROL, DAVE, ROOT],
      identity: { admins: [ROOT.email], certificates: { trust: [clientCa.cert] } },
      routes: [
        { name: 'echo', host: 'echo.corp.test', aliases: ['echo-alias'], to: undefined, tcp: `127.0.0.1:${echo.port}`, allow: { users: [ALICE.email, DAVE.email] } },
        { name: 'scripted', host: 'scripted.corp.test', to: undefined, tcp: `127.0.0.1:${scripted.port}`, allow: { users: [ALICE.email] } },
        { name: 'sre-box', host: 'sre-box.corp.test', to: undefined, tcp: `127.0.0.1:${echo.port}`, allow: { roles: ['sre'] } },
        { name: 'idle', host: 'idle.corp.test', to: undefined, tcp: `127.0.0.1:${idle.port}`, allow: { users: [ALICE.email] }, upstream: { timeouts: { read: '1s' } } },
        { name: 'dead', host: 'dead.corp.test', to: undefined, tcp: `127.0.0.1:${dead}`, allow: { users: [ALICE.email] } },
        { name: 'cert', host: 'cert.corp.test', to: undefined, tcp: `127.0.0.1:${echo.port}`, auth: 'certificate', allow: { certificateSubject: { OU: 'eng' } } },
        // a templated target: loopback only with allowLoopback
        { name: 'ports', host: '*-tcp.corp.test', to: undefined, tcp: `{1}:${echo.port}`, auth: 'public' },
        { name: 'ports-open', host: '*-open.corp.test', to: undefined, tcp: `{1}:${echo.port}`, auth: 'public', upstream: { allowLoopback: true } },
        { name: 'web', host: 'web.corp.test', allow: { users: [ALICE.email] } },
      ],
      roles: [{ name: 'sre', grants: ['sre-box'] }],
    });
    g = w.main.gh!.g;
    port = w.main.port;
    await g.services.directory.addMember('sre', CAROL.email, { actor: { email: ROOT.email } });
    for (const u of [ALICE, BOB, CAROL, DAVE]) tokens[u.email] = (await g.services.sessions.issueToken(u.email, 'tests', 3_600_000, 'api')).token;
  });

  after(async () => {
    await w?.close();
    await Promise.all([echo?.close(), scripted?.close(), idle?.close()]);
    t.cleanup();
  });

  const as = (email: string, header = 'proxy-authorization') => ({ [header]: `Bearer ${tokens[email]}` });
  const open = (target: string, headers: Record<string, string> = as(ALICE.email), extra: { cert?: string; key?: string } = {}) =>
    connectRoute(target, { port, ca: w.ca.certPem, headers, ...extra });

  async function roundTrip(tunnel: Socket, text: string): Promise<string> {
    const got = new Promise<string>((res) => {
      let text = '';
      const on = (c: Buffer) => {
        text += c.toString();
        if (text.length < expected.length) return;
        tunnel.off('data', on);
        tunnel.pause();
        res(text);
      };
      tunnel.on('data', on);
    });
    const expected = text;
    tunnel.write(text);
    tunnel.resume();
    return got;
  }

  describe('the decision', () => {
    it('opens a tunnel for an allowed token (Proxy-Authorization or Authorization), by host, alias or route name, any port', async () => {
      for (const [target, headers] of [
        ['echo.corp.test:22', as(ALICE.email)],
        ['echo.corp.test:443', as(ALICE.email, 'authorization')],
        ['echo-alias:2222', as(ALICE.email)],
        ['echo:22', as(ALICE.email)],
      ] as const) {
        const { response, tunnel } = await open(target, headers);
        assert.equal(response.status, 200, `${target}: ${response.raw}`);
        assert.match(response.headers['x-gatehouse-tunnel'] ?? '', /^[0-9A-Z]{26}$/);
        assert.ok(response.headers['x-request-id']);
        assert.equal(await roundTrip(tunnel, `hello ${target}`), `hello ${target}`);
        tunnel.destroy();
      }
    });

    it('refuses with the same codes as HTTP: not signed in, bad token, not allowed, no route, web route on another port', async () => {
      const cases: Array<[string, Record<string, string>, number, string]> = [
        ['echo.corp.test:22', {}, 401, 'ERR_NOT_SIGNED_IN'],
        ['echo.corp.test:22', { 'proxy-authorization': 'Bearer gh_not-a-token' }, 401, 'ERR_TOKEN_INVALID'],
        ['echo.corp.test:22', as(BOB.email), 403, 'ERR_POLICY_DENIED'],
        ['sre-box.corp.test:22', as(ALICE.email), 403, 'ERR_POLICY_DENIED'],
        ['nowhere.corp.test:22', as(ALICE.email), 403, 'ERR_PROXY_DESTINATION_FORBIDDEN'],
        ['web.corp.test:22', as(ALICE.email), 403, 'ERR_PROXY_DESTINATION_FORBIDDEN'],
        ['cert.corp.test:22', as(ALICE.email), 403, 'ERR_CERT_MISSING'],
        ['dead.corp.test:22', as(ALICE.email), 502, 'ERR_UPSTREAM_UNREACHABLE'],
        ['localhost-tcp.corp.test:22', {}, 403, 'ERR_UPSTREAM_FORBIDDEN'],
        ['127-tcp.corp.test:22', {}, 403, 'ERR_UPSTREAM_FORBIDDEN'], // the name "127" resolves to 0.0.0.127: the resolved address is checked
        ['nonexistent-host-tcp.corp.test:22', {}, 502, 'ERR_UPSTREAM_UNREACHABLE'],
      ];
      const before = echo.accepted.length;
      for (const [target, headers, status, code] of cases) {
        const { response } = await open(target, headers);
        assert.equal(response.status, status, `${target}: ${response.raw}`);
        assert.equal(response.headers['x-gatehouse-error'], code, target);
        assert.equal((JSON.parse(response.body) as { error: { code: string } }).error.code, code);
      }
      assert.equal(echo.accepted.length, before, 'no refused tunnel reached the backend');
      const { response, tunnel } = await open('localhost-open.corp.test:22', {});
      assert.equal(response.status, 200, 'allowLoopback lets a templated target reach loopback');
      tunnel.destroy();
      const sre = await open('sre-box.corp.test:22', as(CAROL.email));
      assert.equal(sre.response.status, 200, 'a store-seeded role member');
      sre.tunnel.destroy();
    });

    it('opens an auth: certificate route with a client certificate and records the device', async () => {
      const { response, tunnel } = await open('cert.corp.test:22', {}, { cert: engineer.certPem, key: engineer.keyPem });
      assert.equal(response.status, 200, response.raw);
      assert.equal(await roundTrip(tunnel, 'with a certificate'), 'with a certificate');
      const rec = await g.store.get<TunnelRecord>('tunnel', response.headers['x-gatehouse-tunnel']!);
      assert.equal(rec?.value.via, 'certificate');
      assert.ok(rec?.value.device);
      tunnel.destroy();
    });
  });

  describe('the byte stream', () => {
    it('forwards a FIN from the client and keeps the other direction flowing (half-close)', async () => {
      const { response, tunnel } = await open('scripted.corp.test:22');
      assert.equal(response.status, 200);
      const up = await scripted.next();
      const upGot = readAll(up);
      tunnel.end('request');
      assert.equal((await upGot).toString(), 'request', 'the upstream read the request and then its end');
      const clientGot = readAll(tunnel);
      up.write('answer after your FIN, ');
      up.end('then mine');
      assert.equal((await clientGot).toString(), 'answer after your FIN, then mine');
      await closed(tunnel);
    });

    it('forwards a FIN from the upstream and keeps the client able to send (half-close)', async () => {
      const { tunnel } = await open('scripted.corp.test:22');
      const up = await scripted.next();
      const clientGot = readAll(tunnel);
      up.end('banner, then my FIN');
      assert.equal((await clientGot).toString(), 'banner, then my FIN');
      const upGot = readAll(up);
      tunnel.write('still talking ');
      tunnel.end('and done');
      assert.equal((await upGot).toString(), 'still talking and done');
      await closed(tunnel);
    });

    it('holds at most a socket buffer for a reader that does not read, then delivers all 64 MiB intact', async () => {
      const { tunnel } = await open('scripted.corp.test:22');
      const tunnelId = g.services.tunnels.list().find((x) => x.route === 'scripted')?.id;
      assert.ok(tunnelId);
      tunnel.pause();
      const up = await scripted.next();
      const total = 64 * 1024 * 1024;
      const block = randomBytes(256 * 1024);
      const sent = createHash('sha256');
      let written = 0;
      let blocked = false;
      const pumpMore = () => {
        while (written < total) {
          sent.update(block);
          written += block.length;
          if (!up.write(block)) {
            blocked = true;
            return;
          }
        }
        up.end();
      };
      up.on('drain', () => {
        blocked = false;
        pumpMore();
      });
      pumpMore();
      // let the pipes fill: the upstream's writes stop being accepted, and Gatehouse's own buffers stay small
      let maxBuffered = 0;
      const samples = Date.now() + 1500;
      while (Date.now() < samples) {
        const local = g.services.tunnels.local().find((x) => x.id === tunnelId);
        maxBuffered = Math.max(maxBuffered, local?.buffered ?? 0);
        await new Promise((r) => setTimeout(r, 20));
      }
      const stalledAt = written - (blocked ? up.writableLength : 0);
      assert.ok(blocked, 'the upstream is blocked: nobody drains what it sends');
      assert.ok(stalledAt < 24 * 1024 * 1024, `only kernel buffers and a bounded amount are in flight, not ${stalledAt} bytes`);
      assert.ok(maxBuffered <= 1024 * 1024, `Gatehouse held at most ${maxBuffered} bytes in its write buffers`);
      const received = createHash('sha256');
      let count = 0;
      tunnel.on('data', (c: Buffer) => {
        received.update(c);
        count += c.length;
      });
      tunnel.resume();
      await new Promise<void>((r) => tunnel.once('end', () => r()));
      assert.equal(count, total);
      assert.equal(received.digest('hex'), sent.digest('hex'));
      tunnel.end();
      await closed(tunnel);
    });

    it('ends a tunnel that moved no byte for the route\'s read timeout, and not one that is busy', async () => {
      const quiet = await open('idle.corp.test:22');
      const busy = await open('idle.corp.test:22');
      const started = Date.now();
      const ticker = setInterval(() => busy.tunnel.write('.'), 200);
      try {
        const ms = await closed(quiet.tunnel, 4000);
        assert.ok(Date.now() - started >= 900 && ms < 3000, `closed after ${Date.now() - started} ms`);
        await new Promise((r) => setTimeout(r, 600));
        assert.equal(busy.tunnel.destroyed, false, 'the busy tunnel is still open');
      } finally {
        clearInterval(ticker);
      }
      await closed(busy.tunnel, 4000);
    });
  });

  describe('the registry', () => {
    it('keeps a store record per open tunnel with its user, route, client and bytes, and deletes it on close', async () => {
      const { response, tunnel } = await open('echo.corp.test:22');
      const id = response.headers['x-gatehouse-tunnel']!;
      await roundTrip(tunnel, 'x'.repeat(1000));
      const rec = await g.store.get<TunnelRecord>('tunnel', id);
      assert.ok(rec, 'a record');
      assert.equal(rec.value.user, ALICE.email);
      assert.equal(rec.value.route, 'echo');
      assert.equal(rec.value.host, 'echo.corp.test');
      assert.equal(rec.value.client, '127.0.0.1');
      assert.equal(rec.value.via, 'token');
      assert.ok(rec.expiresAt && rec.expiresAt > Date.now());
      const listed = g.services.tunnels.get(id);
      assert.equal(listed?.bytesIn, 1000);
      assert.equal(listed?.bytesOut, 1000);

      // the JSON API: mine for alice, nothing (and 404 to close it) for bob
      const api = (email: string, method = 'GET', path = '/api/v1/tunnels') =>
        send('gate.test', port, w.ca.certPem, { method, path, headers: { authorization: `Bearer ${tokens[email]}`, accept: 'application/json' } });
      const mine = await api(ALICE.email);
      assert.equal(mine.status, 200);
      const row = (JSON.parse(mine.body.toString()) as { tunnels: Array<Record<string, unknown>> }).tunnels.find((x) => x.id === id);
      assert.deepEqual({ ...row, since: typeof row?.since }, {
        id, user: ALICE.email, route: 'echo', host: 'echo.corp.test', client: '127.0.0.1', via: 'token', device: null, since: 'string', bytesIn: 1000, bytesOut: 1000,
      });
      const bobs = JSON.parse((await api(BOB.email)).body.toString()) as { tunnels: unknown[] };
      assert.deepEqual(bobs.tunnels, []);
      assert.equal((await api(BOB.email, 'DELETE', `/api/v1/tunnels/${id}`)).status, 404);
      assert.equal((await api(BOB.email, 'GET', '/api/v1/tunnels?all=true')).status, 403);
      assert.equal(tunnel.destroyed, false);
      tunnel.end();
      await closed(tunnel);
      await waitUntil(async () => (await g.store.get('tunnel', id)) === undefined, 'the record is deleted');
    });

    it('closes a tunnel within a second when its record is deleted (by any process), its token revoked, its user disabled or its role lost', async () => {
      const extra = (await g.services.sessions.issueToken(ALICE.email, 'revoke-me', 3_600_000, 'api')).token;
      const byRecord = await open('echo.corp.test:22');
      const byToken = await open('echo.corp.test:22', { 'proxy-authorization': `Bearer ${extra}` });
      const byUser = await open('echo.corp.test:22', as(DAVE.email));
      const byRole = await open('sre-box.corp.test:22', as(CAROL.email));
      for (const x of [byRecord, byToken, byUser, byRole]) assert.equal(x.response.status, 200, x.response.raw);

      // the record is deleted behind the registry's back, as another process would: the owner sees it in the store
      await g.store.delete('tunnel', byRecord.response.headers['x-gatehouse-tunnel']!);
      assert.ok((await closed(byRecord.tunnel, 1500)) < 1500, 'record deleted');

      await g.services.sessions.revokeToken(createHash('sha256').update(extra).digest('base64url'));
      assert.ok((await closed(byToken.tunnel, 1500)) < 1500, 'token revoked');

      await g.services.directory.disable(DAVE.email, { email: ROOT.email });
      assert.ok((await closed(byUser.tunnel, 1500)) < 1500, 'user disabled');

      await g.services.directory.removeMember('sre', CAROL.email, { email: ROOT.email });
      assert.ok((await closed(byRole.tunnel, 1500)) < 1500, 'role lost');
    });

    it('lists and closes tunnels across processes that share the store', async () => {
      // a second Gatehouse on the same store, as another worker or instance would be
      const config = parse(readFileSync(w.main.gh!.configFile, 'utf8')) as { server: Record<string, unknown> };
      const other = await startGatehouse(w.dir, { ...config, server: { ...config.server, https: '127.0.0.1:0' } }, { name: 'second.yaml' });
      try {
        const extra = (await g.services.sessions.issueToken(ALICE.email, 'elsewhere', 3_600_000, 'api')).token;
        const there = await connectRoute('echo.corp.test:22', { port: other.httpsPort, ca: w.ca.certPem, headers: { 'proxy-authorization': `Bearer ${extra}` } });
        assert.equal(there.response.status, 200, there.response.raw);
        const id = there.response.headers['x-gatehouse-tunnel']!;
        await waitUntil(() => g.services.tunnels.get(id)?.user === ALICE.email, 'this process lists the other one\'s tunnel');
        assert.equal(g.services.tunnels.local().some((x) => x.id === id), false);
        assert.equal(await g.services.tunnels.closeTunnel(id), true);
        assert.ok((await closed(there.tunnel, 1500)) < 1500, 'closed by its owner');

        const again = await connectRoute('echo.corp.test:22', { port: other.httpsPort, ca: w.ca.certPem, headers: { 'proxy-authorization': `Bearer ${extra}` } });
        assert.equal(again.response.status, 200);
        await g.services.sessions.revokeToken(createHash('sha256').update(extra).digest('base64url'));
        assert.ok((await closed(again.tunnel, 1500)) < 1500, 'a token revoked in this process closes the other one\'s tunnel');
      } finally {
        await other.close();
      }
    });

    it('counts open tunnels and bytes in the metrics', async () => {
      const metric = (name: string) => g.metrics.snapshot().find((m) => m.name === name)?.values ?? {};
      const bytesBefore = (metric('gatehouse_tunnel_bytes_total')['route="echo",direction="in"'] as number | undefined) ?? 0;
      await waitUntil(() => (metric('gatehouse_tunnels_open')['route="echo"'] ?? 0) === 0, 'no tunnel of the earlier tests is open');
      const { tunnel } = await open('echo.corp.test:22');
      assert.equal(metric('gatehouse_tunnels_open')['route="echo"'], 1);
      await roundTrip(tunnel, 'y'.repeat(500));
      assert.equal(metric('gatehouse_tunnel_bytes_total')['route="echo",direction="in"'], bytesBefore + 500);
      tunnel.destroy();
      await waitUntil(async () => metric('gatehouse_tunnels_open')['route="echo"'] === 0, 'the gauge goes back to 0');
    });
  });

  describe('the dashboard', () => {
    it('lists my open tunnels on the Sessions page and closes one', async () => {
      const browser: Browser = await launchChromium({ trust: [w.server.certPem] });
      try {
        const { response, tunnel } = await open('echo.corp.test:22');
        const id = response.headers['x-gatehouse-tunnel']!;
        const context = await newContext(browser);
        const page = await context.newPage();
        const violations: string[] = [];
        page.on('console', (m) => {
          if (/Content.Security.Policy|Refused to/i.test(m.text())) violations.push(m.text());
        });
        await signInInBrowser(page, `https://gate.test:${port}/sessions`, ALICE);
        const row = page.locator(`[data-testid="tunnels-table"] [data-testid="tunnel-row"][data-id="${id}"]`);
        await row.waitFor();
        assert.match(await row.innerText(), /echo\s+echo\.corp\.test\s+127\.0\.0\.1/);
        await row.locator('[data-testid="close-tunnel"]').click();
        assert.ok((await closed(tunnel, 1500)) < 1500, 'closed from the dashboard');
        await row.waitFor({ state: 'detached' });
        assert.deepEqual(violations, []);
        await context.close();
      } finally {
        await browser.close();
      }
    });
  });

  describe('gatehouse tunnel', () => {
    const home = join(t.dir, 'home');
    const env = { HOME: home, XDG_CONFIG_HOME: join(home, 'xdg') };
    const via = () => `https://gate.test:${port}`;
    const base = () => ['--via', via(), '--resolve', 'gate.test:127.0.0.1', '--ca', w.ca.cert];

    it('bridges stdin and stdout, half-close included, and prints nothing else on stdout', async () => {
      const run = spawnGatehouse(['tunnel', 'echo.corp.test:22', ...base(), '--token', tokens[ALICE.email]!], env);
      run.child.stdin!.end('through the command line\n');
      assert.equal(await run.exited, 0, run.stderr);
      assert.equal(run.stdout.toString(), 'through the command line\n');
      assert.equal(run.stderr, '');
    });

    it('says in one line why it was refused', async () => {
      const cases: Array<[string[], RegExp]> = [
        [['echo.corp.test', '--token', tokens[BOB.email]!], /^gatehouse: refused echo\.corp\.test:22 through https:\/\/gate\.test:\d+: .*\(ERR_POLICY_DENIED\)\n$/],
        [['nowhere.corp.test', '--token', tokens[ALICE.email]!], /^gatehouse: no such route: nowhere\.corp\.test:22 .*\(ERR_PROXY_DESTINATION_FORBIDDEN\)\n$/],
        [['echo.corp.test', '--token', 'gh_bogus'], /^gatehouse: not signed in to https:\/\/gate\.test:\d+: .*\(ERR_TOKEN_INVALID\); pass a valid --token\n$/],
        [['echo.corp.test', '--no-sign-in'], /^gatehouse: not signed in to https:\/\/gate\.test:\d+: .*\(ERR_NOT_SIGNED_IN\); sign in with: gatehouse login --via https:\/\/gate\.test:\d+\n$/],
      ];
      const runs = cases.map(([args]) => spawnGatehouse(['tunnel', ...args.slice(0, 1), ...base(), ...args.slice(1)], env));
      for (const [i, run] of runs.entries()) {
        run.child.stdin!.end();
        assert.equal(await run.exited, 1, run.stderr);
        assert.match(run.stderr, cases[i]![1]);
        assert.equal(run.stdout.length, 0);
      }
    });

    it('signs in through the browser once when there is no token, stores it, then tunnels', async () => {
      const browser: Browser = await launchChromium({ trust: [w.server.certPem] });
      try {
        const run = spawnGatehouse(['tunnel', 'echo', ...base(), '--no-browser'], env);
        const [, url] = await run.waitForStderr(/Open this URL to sign in: (\S+)/);
        const context = await newContext(browser);
        const page = await context.newPage();
        await page.goto(url!);
        assert.equal(await loginInBrowser(page, ALICE), 'submitted');
        await context.close();
        await run.waitForStderr(/signed in to https:\/\/gate\.test:\d+ as alice@example\.com/);
        run.child.stdin!.end('after signing in');
        assert.equal(await run.exited, 0, run.stderr);
        assert.equal(run.stdout.toString(), 'after signing in');
        // the stored token serves the next run without a browser
        const again = spawnGatehouse(['tunnel', 'echo', ...base(), '--no-sign-in'], env);
        again.child.stdin!.end('stored');
        assert.equal(await again.exited, 0, again.stderr);
        assert.equal(again.stdout.toString(), 'stored');
      } finally {
        await browser.close();
      }
    });
  });
});

async function waitUntil(test: () => Promise<boolean> | boolean, what: string, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await test())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
