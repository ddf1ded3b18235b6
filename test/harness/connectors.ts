/**
 * Connectors for tests: `gatehouse connect` as a real child process (through bin/gatehouse.mjs, with the test host
 * names resolving to 127.0.0.1 as a preload), its JSON log lines, and a backend behind it (HTTP echo with identity
 * headers, WebSocket echo, streamed uploads and downloads checksummed on the fly, a tag to tell instances apart).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTcpServer, type AddressInfo, type Server as TcpServer, type Socket } from 'node:net';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { Readable } from 'node:stream';
import { WebSocketServer } from 'ws';

const bin = resolve(import.meta.dirname, '../../bin/gatehouse.mjs');

/** Loaded before the CLI in each child: the test names resolve to 127.0.0.1. */
const RESOLVER = `
import dns from 'node:dns';
const real = dns.lookup;
dns.lookup = function lookup(host, options, callback) {
  if (typeof options === 'function') { callback = options; options = {}; }
  if (typeof options === 'number') options = { family: options };
  if (/^(gate\\.test|[a-z0-9-]+\\.corp\\.test)$/i.test(host)) {
    if (options && options.all) return process.nextTick(callback, null, [{ address: '127.0.0.1', family: 4 }]);
    return process.nextTick(callback, null, '127.0.0.1', 4);
  }
  return real.call(this, host, options, callback);
};`;

export interface ConnectorProcess {
  readonly child: ChildProcess;
  readonly lines: Record<string, unknown>[];
  readonly stderr: string[];
  /** the first log line (seen or coming) that satisfies `test`, within `ms` */
  waitFor(test: (line: Record<string, unknown>) => boolean, ms?: number): Promise<Record<string, unknown>>;
  /** how many lines satisfy `test` so far */
  count(test: (line: Record<string, unknown>) => boolean): number;
  readonly exited: Promise<number | null>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Runs `gatehouse connect ARGS` (the resolver preloaded; `dir` holds it). */
export function startConnector(dir: string, args: readonly string[], env: NodeJS.ProcessEnv = {}): ConnectorProcess {
  const preload = join(dir, 'resolve-test-names.mjs');
  writeFileSync(preload, RESOLVER);
  const child = spawn(process.execPath, ['--import', preload, bin, 'connect', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, GATEHOUSE_CA: '', ...env },
  });
  const lines: Record<string, unknown>[] = [];
  const stderr: string[] = [];
  const waiters: Array<{ test: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }> = [];
  createInterface({ input: child.stdout! }).on('line', (text) => {
    let line: Record<string, unknown>;
    try {
      line = JSON.parse(text) as Record<string, unknown>;
    } catch {
      line = { event: 'stdout', text };
    }
    lines.push(line);
    for (let i = waiters.length - 1; i >= 0; i--) {
      if (waiters[i]!.test(line)) {
        waiters[i]!.resolve(line);
        waiters.splice(i, 1);
      }
    }
  });
  createInterface({ input: child.stderr! }).on('line', (text) => stderr.push(text));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return {
    child,
    lines,
    stderr,
    exited,
    count: (test) => lines.filter(test).length,
    waitFor: (test, ms = 15_000) =>
      new Promise((res, rej) => {
        const seen = lines.find(test);
        if (seen) return res(seen);
        const timer = setTimeout(
          () => rej(new Error(`connector log line not seen within ${ms} ms; stderr: ${stderr.join('\n')}; lines: ${JSON.stringify(lines.slice(-5))}`)),
          ms,
        );
        waiters.push({
          test,
          resolve: (l) => {
            clearTimeout(timer);
            res(l);
          },
        });
      }),
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** `event === name` */
export const event = (name: string) => (l: Record<string, unknown>) => l.event === name;

/** A stream of `total` bytes of AES-CTR keystream (cheap, incompressible), hashed as it goes: `digest()` once ended. */
export function generatedBody(total: number, chunkSize = 256 * 1024): { stream: Readable; digest: () => string } {
  const cipher = createCipheriv('aes-128-ctr', randomBytes(16), randomBytes(16));
  const zeros = Buffer.alloc(chunkSize);
  const hash = createHash('sha256');
  let sent = 0;
  const stream = new Readable({
    highWaterMark: chunkSize,
    read() {
      if (sent >= total) return void this.push(null);
      const n = Math.min(chunkSize, total - sent);
      const chunk = cipher.update(n === chunkSize ? zeros : zeros.subarray(0, n));
      sent += n;
      hash.update(chunk);
      this.push(chunk);
    },
  });
  return { stream, digest: () => hash.digest('hex') };
}

export interface ConnectorBackend {
  readonly port: number;
  readonly tag: string;
  /** requests seen: method, url, headers */
  readonly received: Array<{ method: string; url: string; headers: IncomingMessage['headers'] }>;
  /** the SHA-256 of each `/download` body sent in full, in order */
  readonly downloads: string[];
  close(): Promise<void>;
}

/**
 * The backend behind a connector, on 127.0.0.1: `/upload` hashes the body and answers `{bytes, sha256}`; `/download?n=`
 * streams n generated bytes (their SHA-256 kept in `downloads`); `/redirect?to=` redirects; `/ws` is a WebSocket echo
 * (greets with `hello TAG`); anything else echoes the request as JSON. Every answer carries `x-backend: TAG`.
 */
export async function startConnectorBackend(tag: string): Promise<ConnectorBackend> {
  const received: ConnectorBackend['received'] = [];
  const downloads: string[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://backend');
    received.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    if (url.pathname === '/upload') {
      const hash = createHash('sha256');
      let bytes = 0;
      req.on('data', (c: Buffer) => {
        bytes += c.length;
        hash.update(c);
      });
      req.on('end', () => {
        const body = JSON.stringify({ bytes, sha256: hash.digest('hex') });
        res.writeHead(200, { 'content-type': 'application/json', 'x-backend': tag }).end(body);
      });
      return;
    }
    req.resume();
    req.on('end', () => {
      if (url.pathname === '/download') {
        const { stream, digest } = generatedBody(Number(url.searchParams.get('n') ?? 0));
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'x-backend': tag });
        stream.pipe(res, { end: false });
        stream.on('end', () => {
          downloads.push(digest());
          res.end();
        });
      } else if (url.pathname === '/redirect') {
        res.writeHead(302, { location: url.searchParams.get('to') ?? '/', 'x-backend': tag }).end();
      } else if (url.pathname === '/slow') {
        setTimeout(() => res.writeHead(200, { 'x-backend': tag }).end('slow'), Number(url.searchParams.get('ms') ?? 1000)).unref();
      } else {
        const body = JSON.stringify({ tag, method: req.method, url: req.url, headers: req.headers });
        res.writeHead(200, { 'content-type': 'application/json', 'x-backend': tag }).end(body);
      }
    });
  });
  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
    if (!req.url?.startsWith('/ws')) return void socket.destroy();
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.send(`hello ${tag} ${String(req.headers['x-gatehouse-user'] ?? '')}`);
      ws.on('message', (data) => ws.send(`echo ${String(data)}`));
    });
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    tag,
    received,
    downloads,
    close: () =>
      new Promise<void>((r) => {
        for (const ws of wss.clients) ws.terminate();
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

/** A plain TCP echo (what an SSH server is to a tunnel: bytes both ways), greeting with `tag`. */
export async function startTcpEcho(tag: string): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: TcpServer = createTcpServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    s.write(`${tag}\n`);
    s.pipe(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}
