/**
 * For TCP tunnel tests: plain TCP backends on 127.0.0.1 (an echo, and a scripted one that hands each accepted
 * socket to the test), a raw `CONNECT` through the TLS front door with the headers and client certificate a
 * test chooses, and `gatehouse tunnel` as a real child process with its own HOME.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { resolve } from 'node:path';
import { openTunnel, type RawResponse } from './probes.ts';

export const GATEHOUSE_BIN = resolve(import.meta.dirname, '../../bin/gatehouse.mjs');

export interface TcpBackend {
  readonly port: number;
  /** every socket accepted so far, in order */
  readonly accepted: Socket[];
  /** resolves with the next accepted socket (or one accepted already and not yet taken) */
  next(timeoutMs?: number): Promise<Socket>;
  close(): Promise<void>;
}

/**
 * A TCP server with `allowHalfOpen`, so tests see a FIN as `end` and may keep writing. `onSocket` runs for each
 * connection (the echo pipes it back to itself); sockets are also queued for `next()`.
 */
export async function startTcpBackend(onSocket?: (socket: Socket) => void): Promise<TcpBackend> {
  const accepted: Socket[] = [];
  const queue: Socket[] = [];
  const waiting: Array<(s: Socket) => void> = [];
  const server: Server = createServer({ allowHalfOpen: true }, (socket) => {
    socket.on('error', () => undefined);
    accepted.push(socket);
    onSocket?.(socket);
    const w = waiting.shift();
    if (w) w(socket);
    else queue.push(socket);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as AddressInfo).port,
    accepted,
    next: (timeoutMs = 5000) =>
      new Promise((res, rej) => {
        const s = queue.shift();
        if (s) return res(s);
        const timer = setTimeout(() => rej(new Error(`no connection reached the backend within ${timeoutMs} ms`)), timeoutMs);
        waiting.push((x) => {
          clearTimeout(timer);
          res(x);
        });
      }),
    close: () =>
      new Promise<void>((r) => {
        for (const s of accepted) s.destroy();
        server.close(() => r());
      }),
  };
}

/** An echo: every byte back, and its FIN answered with a FIN once the echo is written. */
export function startTcpEcho(): Promise<TcpBackend> {
  return startTcpBackend((s) => s.pipe(s));
}

export interface ConnectOptions {
  readonly port: number;
  readonly ca: string;
  /** SNI: the auth host by default */
  readonly servername?: string;
  readonly headers?: Record<string, string>;
  readonly cert?: string;
  readonly key?: string;
  readonly timeoutMs?: number;
}

/**
 * `CONNECT target` over TLS to the front door. On 200 `tunnel` is the open stream (half-open allowed), paused:
 * `resume()` it (or `readAll`) to read; otherwise the refusal is read to its end and `tunnel` is the closed socket.
 */
export async function connectRoute(target: string, o: ConnectOptions): Promise<{ response: RawResponse; tunnel: TLSSocket }> {
  const timeoutMs = o.timeoutMs ?? 5000;
  const socket = tlsConnect({
    host: '127.0.0.1',
    port: o.port,
    servername: o.servername ?? 'gate.test',
    ca: o.ca,
    ...(o.cert ? { cert: o.cert, key: o.key } : {}),
    ALPNProtocols: ['http/1.1'],
  });
  socket.allowHalfOpen = true;
  await new Promise<void>((res, rej) => {
    const timer = setTimeout(() => {
      socket.destroy();
      rej(new Error(`no TLS connection for CONNECT ${target} within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once('error', (err) => {
      clearTimeout(timer);
      rej(err);
    });
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      res();
    });
  });
  const { response } = await openTunnel(socket, target, timeoutMs, { host: target, accept: 'application/json', ...o.headers });
  socket.removeAllListeners('error');
  socket.on('error', () => undefined);
  if (response.status !== 200) socket.destroy();
  return { response, tunnel: socket };
}

/** Reads everything until the stream ends (or closes); resumes a paused stream. */
export function readAll(stream: NodeJS.ReadableStream & { once: Socket['once'] }, timeoutMs = 10_000): Promise<Buffer> {
  return new Promise((res, rej) => {
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => rej(new Error(`the stream did not end within ${timeoutMs} ms (${Buffer.concat(chunks).length} bytes so far)`)), timeoutMs);
    stream.on('data', (c: Buffer) => chunks.push(c));
    const done = () => {
      clearTimeout(timer);
      res(Buffer.concat(chunks));
    };
    stream.once('end', done);
    stream.once('close', done);
    stream.resume();
  });
}

/**
 * Resolves with how long it took until Gatehouse ended `socket` (its FIN or a close; what is still unread is
 * discarded); rejects after `timeoutMs`.
 */
export function closed(socket: Socket, timeoutMs = 3000): Promise<number> {
  const started = Date.now();
  if (socket.destroyed || socket.readableEnded) return Promise.resolve(0);
  return new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`the socket is still open after ${timeoutMs} ms`)), timeoutMs);
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      res(Date.now() - started);
    };
    socket.once('end', done);
    socket.once('close', done);
    socket.resume();
  });
}

export interface CliRun {
  readonly child: ChildProcess;
  stdout: Buffer;
  stderr: string;
  readonly exited: Promise<number | null>;
  /** resolves with the first match of `pattern` in stderr, now or later */
  waitForStderr(pattern: RegExp, ms?: number): Promise<RegExpMatchArray>;
}

/** `gatehouse ARGS` as a child process; stdin is a pipe the test writes to (or ends). */
export function spawnGatehouse(args: readonly string[], env: NodeJS.ProcessEnv): CliRun {
  const child = spawn(process.execPath, [GATEHOUSE_BIN, ...args], { env: { ...process.env, GATEHOUSE_CA: '', GATEHOUSE_TOKEN: '', ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
  const waiters: Array<() => boolean> = [];
  const run: CliRun = {
    child,
    stdout: Buffer.alloc(0),
    stderr: '',
    exited: new Promise((r) => child.on('exit', (code) => r(code))),
    waitForStderr: (pattern, ms = 15_000) =>
      new Promise((res, rej) => {
        const timer = setTimeout(() => rej(new Error(`${pattern} not seen on stderr within ${ms} ms: ${run.stderr}`)), ms);
        const check = () => {
          const m = run.stderr.match(pattern);
          if (!m) return false;
          clearTimeout(timer);
          res(m);
          return true;
        };
        if (!check()) waiters.push(check);
      }),
  };
  child.stdin!.on('error', () => undefined);
  child.stdout!.on('data', (c: Buffer) => (run.stdout = Buffer.concat([run.stdout, c])));
  child.stderr!.on('data', (c: Buffer) => {
    run.stderr += c.toString();
    for (let i = waiters.length - 1; i >= 0; i--) if (waiters[i]!()) waiters.splice(i, 1);
  });
  return run;
}
