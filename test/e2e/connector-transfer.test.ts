/**
 * Bulk transfer through a connector, with `gatehouse serve` and `gatehouse connect` as real processes: a 1 GiB
 * request body and a 1 GiB response body, generated and checksummed on the fly (never held anywhere), while the
 * Gatehouse process's resident memory stays bounded (the HTTP/2 windows, not the body, set what is buffered).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { request, type RequestOptions } from 'node:https';
import type { IncomingMessage } from 'node:http';
import { join } from 'node:path';
import { TestCa, listeningPort, runCli, startServe, tempDir, type ServeProcess } from '../harness/index.ts';
import { event, generatedBody, startConnector, startConnectorBackend, type ConnectorBackend, type ConnectorProcess } from '../harness/connectors.ts';

/** 1 GiB (TRANSFER_BYTES to try another size) */
const GiB = Number(process.env.TRANSFER_BYTES) || 1024 ** 3;
const HOST = 'big.corp.test';

/** Resident memory of a process (bytes), from /proc. */
function rss(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0) * 1024;
}

/** Samples `pid`'s RSS every 100 ms until stopped; returns the peak. */
function watchRss(pid: number): { stop: () => number } {
  let peak = rss(pid);
  const timer = setInterval(() => (peak = Math.max(peak, rss(pid))), 100);
  return {
    stop: () => {
      clearInterval(timer);
      return Math.max(peak, rss(pid));
    },
  };
}

const MiB = (n: number) => `${(n / 1024 / 1024).toFixed(0)} MiB`;

describe('connector: 1 GiB each way', () => {
  const t = tempDir('gatehouse-connector-transfer-');
  let ca: TestCa;
  let serve: ServeProcess;
  let backend: ConnectorBackend;
  let agent: ConnectorProcess;
  let port: number;
  let baseline: number;

  const options = (method: string, path: string): RequestOptions => ({
    host: '127.0.0.1',
    port,
    servername: HOST,
    method,
    path,
    ca: ca.certPem,
    agent: false,
    headers: { host: `${HOST}:${port}` },
  });

  before(async () => {
    ca = new TestCa(t.dir);
    const server = ca.server(['*.corp.test', 'gate.test']);
    backend = await startConnectorBackend('big');
    serve = await startServe(t.dir, {
      server: { https: '127.0.0.1:0', authHost: 'gate.test', workers: 1, accessLog: false, tls: { cert: server.cert, key: server.key } },
      store: { sqlite: { path: join(t.dir, 'gatehouse.db') } },
      identity: { secretsKey: 'connector-transfer-secrets-key-0123456789' },
      connectors: [{ name: 'big' }],
      routes: [{ name: 'big', host: HOST, to: 'connector:big', auth: 'public', upstream: { maxBodySize: '2g' } }],
    });
    port = listeningPort(serve, 'https');
    const init = await runCli(['ca', 'init', '-c', serve.configFile]);
    assert.equal(init.code, 0, init.stderr);
    await serve.waitFor((l) => l.event === 'config_reloaded');
    const issued = await runCli(['ca', 'issue', '-c', serve.configFile, '--connector', 'big', '--out', join(t.dir, 'big')]);
    assert.equal(issued.code, 0, issued.stderr);
    agent = startConnector(t.dir, ['--via', `https://gate.test:${port}`, '--name', 'big', '--to', `http://127.0.0.1:${backend.port}`, '--cert', join(t.dir, 'big.crt'), '--key', join(t.dir, 'big.key'), '--ca', ca.cert]);
    await agent.waitFor(event('connector_connected'));
    await serve.waitFor((l) => l.event === 'connector_connected');
    baseline = rss(serve.child.pid!);
  });

  after(async () => {
    await agent?.stop();
    await serve?.stop();
    await backend?.close();
    t.cleanup();
  });

  it('streams a 1 GiB request body through, with memory bounded', async (c) => {
    const { stream, digest } = generatedBody(GiB);
    const memory = watchRss(serve.child.pid!);
    const started = performance.now();
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request({ ...options('PUT', '/upload'), headers: { host: `${HOST}:${port}`, 'content-length': String(GiB) } }, (res: IncomingMessage) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      stream.pipe(req);
    });
    const seconds = (performance.now() - started) / 1000;
    const peak = memory.stop();
    assert.equal(answer.status, 200, answer.body);
    const got = JSON.parse(answer.body) as { bytes: number; sha256: string };
    assert.equal(got.bytes, GiB);
    assert.equal(got.sha256, digest(), 'the backend received exactly the bytes sent');
    c.diagnostic(`upload: ${MiB(GiB)} in ${seconds.toFixed(1)} s = ${(GiB / 1024 / 1024 / seconds).toFixed(0)} MiB/s; Gatehouse RSS ${MiB(baseline)} before, peak ${MiB(peak)}`);
    assert.ok(peak - baseline < 256 * 1024 * 1024, `Gatehouse's memory grew by ${MiB(peak - baseline)}`);
  });

  it('streams a 1 GiB response body through, with memory bounded', async (c) => {
    const memory = watchRss(serve.child.pid!);
    const started = performance.now();
    const before = backend.downloads.length;
    const got = await new Promise<{ status: number; bytes: number; sha256: string }>((resolve, reject) => {
      const req = request(options('GET', `/download?n=${GiB}`), (res: IncomingMessage) => {
        const hash = createHash('sha256');
        let bytes = 0;
        res.on('data', (d: Buffer) => {
          bytes += d.length;
          hash.update(d);
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes, sha256: hash.digest('hex') }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end();
    });
    const seconds = (performance.now() - started) / 1000;
    const peak = memory.stop();
    assert.equal(got.status, 200);
    assert.equal(got.bytes, GiB);
    assert.equal(backend.downloads.length, before + 1);
    assert.equal(got.sha256, backend.downloads.at(-1), 'the client received exactly the bytes the backend sent');
    c.diagnostic(`download: ${MiB(GiB)} in ${seconds.toFixed(1)} s = ${(GiB / 1024 / 1024 / seconds).toFixed(0)} MiB/s; Gatehouse RSS ${MiB(baseline)} before, peak ${MiB(peak)}`);
    assert.ok(peak - baseline < 256 * 1024 * 1024, `Gatehouse's memory grew by ${MiB(peak - baseline)}`);
  });
});
