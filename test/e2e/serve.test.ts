import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { get as httpGet } from 'node:http';
import { request as httpsRequest, Agent } from 'node:https';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  TestCa,
  curl,
  listeningPort,
  startEcho,
  startServe,
  tempDir,
  type Backend,
  type CertFiles,
  type ServeProcess,
} from '../harness/index.ts';


function config(server: CertFiles, ca: TestCa, echo: Backend, extra: { workers?: number; routes?: unknown[] } = {}) {
  return {
    server: {
      https: '127.0.0.1:0',
      metrics: '127.0.0.1:0',
      authHost: 'gate.test',
      workers: extra.workers ?? 1,
      tls: { cert: server.cert, key: server.key },
      shutdownTimeout: '10s',
    },
    identity: { certificates: { trust: [ca.cert] } },
    routes: [
      { name: 'app', host: 'app.corp.test', to: echo.origin, auth: 'public' },
      { name: 'secure', host: 'secure.corp.test', to: echo.origin, auth: 'certificate', allow: { certificateSubject: { OU: 'engineering' } } },
      ...(extra.routes ?? []),
    ],
  };
}

function httpText(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    httpGet(url, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).on('error', reject);
  });
}

/** GET through Gatehouse with node's https client (keep-alive agent given), resolving host to 127.0.0.1. */
function get(port: number, host: string, path: string, ca: string, agent?: Agent): Promise<{ status: number; body: string; error?: string }> {
  return new Promise((resolve) => {
    const req = httpsRequest(
      { host: '127.0.0.1', port, path, servername: host, headers: { host: `${host}:${port}` }, ca, agent: agent ?? false },
      (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', (err) => resolve({ status: 0, body: '', error: err.message }));
    req.end();
  });
}

describe('gatehouse serve', () => {
  const t = tempDir();
  let ca: TestCa;
  let server: CertFiles;
  let client: CertFiles;
  let echo: Backend;

  before(async () => {
    ca = new TestCa(t.dir);
    server = ca.server(['*.corp.test', 'gate.test']);
    client = ca.client('/CN=alice/OU=engineering');
    echo = await startEcho();
  });
  after(async () => {
    await echo.close();
    t.cleanup();
  });

  describe('one process', () => {
    let p: ServeProcess;
    let port: number;
    before(async () => {
      p = await startServe(t.dir, config(server, ca, echo));
      port = listeningPort(p, 'https');
    });
    after(async () => {
      await p.stop();
    });

    it('writes one JSON access log line per request with the decision and timings', async () => {
      const r = await curl(['--cacert', ca.cert, '--cert', client.cert, '--key', client.key, '--resolve', `secure.corp.test:${port}:127.0.0.1`, `https://secure.corp.test:${port}/logged?token=secret`]);
      assert.equal(r.status, 200);
      const line = await p.waitFor((l) => l.event === 'request' && l.id === r.headers['x-request-id']);
      assert.equal(line.route, 'secure');
      assert.equal(line.path, '/logged', 'the query string (which may hold secrets) is not logged');
      assert.equal(line.decision, 'allow');
      assert.match(String(line.reason), /certificateSubject OU=engineering/);
      assert.match(String(line.subject), /OU=engineering/);
      assert.equal(line.status, 200);
      assert.ok(Number(line.bytesOut) > 0);
      assert.equal(typeof line.upstreamMs, 'number');
      assert.equal(typeof line.totalMs, 'number');
      assert.ok(!JSON.stringify(p.lines).includes('token=secret'));
      const denied = await curl(['--cacert', ca.cert, '--resolve', `secure.corp.test:${port}:127.0.0.1`, `https://secure.corp.test:${port}/`]);
      const dl = await p.waitFor((l) => l.event === 'request' && l.id === denied.headers['x-request-id']);
      assert.equal(dl.decision, 'deny');
      assert.equal(dl.code, 'ERR_CERT_MISSING');
    });

    it('serves /metrics, /healthz and /readyz', async () => {
      const mport = listeningPort(p, 'metrics');
      await get(port, 'app.corp.test', '/m', ca.certPem);
      const m = await httpText(`http://127.0.0.1:${mport}/metrics`);
      assert.equal(m.status, 200);
      assert.match(m.body, /gatehouse_requests_total\{route="app",status="200"\} \d+/);
      assert.match(m.body, /gatehouse_request_duration_seconds_bucket\{route="app",le="0.005"\}/);
      assert.equal((await httpText(`http://127.0.0.1:${mport}/healthz`)).status, 200);
      assert.equal((await httpText(`http://127.0.0.1:${mport}/readyz`)).status, 200);
    });

    it('keeps serving the old configuration when the new file is bad, and reports its problems', async () => {
      const good = readFileSync(p.configFile, 'utf8');
      p.writeConfig(good.replace('auth: public', 'auth: public\n    upsteam: {}'));
      const rejected = await p.waitFor((l) => l.event === 'config_rejected');
      assert.match(JSON.stringify(rejected.problems), /gatehouse\.yaml:\d+:\d+: routes\[0\]\.upsteam: unknown key/);
      assert.equal((await get(port, 'app.corp.test', '/still', ca.certPem)).status, 200);
      // a good file with a new route is picked up
      const cfg = config(server, ca, echo, { routes: [{ name: 'new', host: 'new.corp.test', to: echo.origin, auth: 'public' }] });
      p.writeConfig(cfg);
      await p.waitFor((l) => l.event === 'config_reloaded' && l.routes === 3);
      assert.equal((await get(port, 'new.corp.test', '/fresh', ca.certPem)).status, 200);
    });

    it('fails no request during good reloads (SIGHUP)', async () => {
      const agent = new Agent({ keepAlive: true, maxSockets: 4 });
      let failures = 0;
      let done = 0;
      let stop = false;
      const loop = async () => {
        while (!stop) {
          const r = await get(port, 'app.corp.test', '/during-reload', ca.certPem, done % 3 === 0 ? undefined : agent);
          if (r.status !== 200) failures++;
          done++;
        }
      };
      const loops = [loop(), loop(), loop(), loop()];
      const reloadsBefore = p.lines.filter((l) => l.event === 'config_reloaded').length;
      for (let i = 0; i < 5; i++) {
        // touch the file with a harmless change so the reload builds a new state
        p.writeConfig(config(server, ca, echo, { routes: [{ name: `r${i}`, host: `r${i}.corp.test`, to: echo.origin, auth: 'public' }] }));
        await p.waitFor((l) => l.event === 'config_reloaded' && p.lines.filter((x) => x.event === 'config_reloaded').length > reloadsBefore + i);
        p.child.kill('SIGHUP');
      }
      stop = true;
      await Promise.all(loops);
      agent.destroy();
      assert.ok(done > 50, `only ${done} requests were made`);
      assert.equal(failures, 0);
    });
  });

  describe('several workers', () => {
    let p: ServeProcess;
    let port: number;
    before(async () => {
      p = await startServe(t.dir, config(server, ca, echo, { workers: 2 }));
      port = listeningPort(p, 'https');
    });
    after(async () => {
      await p.stop();
    });

    it('resumes TLS sessions on any worker', async () => {
      const sess = join(t.dir, 'session.pem');
      // s_client sends one request and waits for the answer, so the session ticket has arrived when it exits
      const sclient = (args: string[]) =>
        new Promise<{ stdout: string }>((resolve) => {
          const child = execFile(
            'openssl',
            ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'app.corp.test', '-CAfile', ca.cert, '-tls1_3', '-ign_eof', ...args],
            { timeout: 10_000 },
            (_err, stdout) => resolve({ stdout: String(stdout) }),
          );
          child.stdin?.end('GET / HTTP/1.1\r\nHost: app.corp.test\r\nConnection: close\r\n\r\n');
        });
      await sclient(['-sess_out', sess]);
      let reused = 0;
      for (let i = 0; i < 16; i++) {
        const r = await sclient(['-sess_in', sess]);
        if (/Reused, TLSv1\.3/.test(r.stdout)) reused++;
      }
      assert.equal(reused, 16, 'every connection resumed the session');
      const m = await httpText(`http://127.0.0.1:${listeningPort(p, 'metrics')}/metrics`);
      const resumedWorkers = [...m.body.matchAll(/gatehouse_tls_connections_total\{worker="(\d+)",resumed="true"\} (\d+)/g)].filter((x) => Number(x[2]) > 0);
      assert.ok(resumedWorkers.length >= 1, m.body);
      const workers = [...m.body.matchAll(/gatehouse_process_resident_memory_bytes\{worker="(\d+)"\}/g)].map((x) => x[1]);
      assert.equal(new Set(workers).size, 2, 'metrics come from both workers');
    });

    it('drains requests in flight on SIGTERM and exits 0', async () => {
      const slow = get(port, 'app.corp.test', '/slow?ms=800', ca.certPem);
      await new Promise((r) => setTimeout(r, 200));
      const code = p.stop('SIGTERM');
      const r = await slow;
      assert.equal(r.status, 200);
      assert.equal(r.body, 'slow');
      assert.equal(await code, 0);
    });
  });
});
