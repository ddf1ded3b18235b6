/**
 * Wire-level tools for proxy tests: a scriptable backend that records every connection and request as it
 * happens (started, body bytes, complete or cut off, SNI), https requests to the front door under a route's
 * name, a raw TLS exchange for requests no well-behaved client sends, and `waitFor` instead of sleeps.
 */
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, request as httpsRequest, type RequestOptions } from 'node:https';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import type { AddressInfo, Socket } from 'node:net';
import type { Readable } from 'node:stream';

export interface SeenRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  readonly rawHeaders: readonly string[];
  /** the SNI the upstream connection asked for (https backends) */
  readonly servername: string | undefined;
  /** which TCP connection (1, 2, …) carried it */
  readonly connection: number;
  bodyBytes: number;
  /** the whole request, body included, arrived */
  complete: boolean;
  /** the request is over: complete, or cut off */
  closed: boolean;
}

export type BackendHandler = (req: IncomingMessage, res: ServerResponse, seen: SeenRequest) => void;

export interface ScriptedBackend {
  readonly port: number;
  readonly origin: string;
  readonly requests: SeenRequest[];
  /** TCP connections accepted so far */
  readonly connections: number;
  close(): Promise<void>;
}

/** Answers with the request it received as JSON, once the body has arrived. */
export const echoJson: BackendHandler = (req, res, seen) => {
  req.on('end', () => {
    const body = JSON.stringify({ method: req.method, url: req.url, headers: req.headers, rawHeaders: req.rawHeaders, bodyBytes: seen.bodyBytes });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) });
    res.end(body);
  });
};

/** A backend on 127.0.0.1 port 0 (https when `tls` is given) that runs `handler` for every request and records it. */
export async function startBackend(
  handler: BackendHandler = echoJson,
  options: { tls?: { cert: string; key: string }; originHost?: string } = {},
): Promise<ScriptedBackend> {
  const requests: SeenRequest[] = [];
  const sockets = new Set<Socket>();
  const connectionOf = new WeakMap<object, number>();
  let connections = 0;
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const socket = req.socket as Socket & { servername?: string | false };
    const seen: SeenRequest = {
      method: req.method ?? '',
      url: req.url ?? '',
      headers: req.headers,
      rawHeaders: req.rawHeaders,
      servername: typeof socket.servername === 'string' ? socket.servername : undefined,
      connection: connectionOf.get(socket) ?? 0,
      bodyBytes: 0,
      complete: false,
      closed: false,
    };
    requests.push(seen);
    req.on('data', (c: Buffer) => (seen.bodyBytes += c.length));
    req.on('end', () => (seen.complete = true));
    req.on('close', () => {
      seen.complete = req.complete;
      seen.closed = true;
    });
    handler(req, res, seen);
  };
  const server: Server = options.tls ? createHttpsServer({ cert: options.tls.cert, key: options.tls.key }, onRequest) : createServer(onRequest);
  server.on('connection', (s: Socket) => {
    connectionOf.set(s, ++connections);
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('secureConnection', (s: TLSSocket) => {
    const parent = (s as unknown as { _parent?: object })._parent;
    connectionOf.set(s, (parent && connectionOf.get(parent)) ?? connections);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    origin: `${options.tls ? 'https' : 'http'}://${options.originHost ?? '127.0.0.1'}:${port}`,
    requests,
    get connections() {
      return connections;
    },
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

/** Polls `condition` until it holds; fails naming `what` after `timeoutMs`. */
export async function waitFor(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Polls `probe` (every 10 ms) until it is true and returns how many ms that took; fails naming `what` after `limitMs`. */
export async function until(probe: () => boolean | Promise<boolean>, what: string, limitMs = 10_000): Promise<number> {
  const start = Date.now();
  for (;;) {
    if (await probe()) return Date.now() - start;
    if (Date.now() - start > limitMs) throw new Error(`timed out after ${limitMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** https options that reach the front door on 127.0.0.1 under `host` (SNI, certificate name and Host header). */
export function frontDoor(host: string, port: number, ca: string | Buffer): RequestOptions {
  return { host: '127.0.0.1', port, servername: host, ca, agent: false, headers: { host: `${host}:${port}` } };
}

export interface Answer {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly rawHeaders: readonly string[];
  readonly body: Buffer;
}

/** One https request to the front door as `host`; the body, when given, is a buffer or a stream. */
export function send(
  host: string,
  port: number,
  ca: string | Buffer,
  request: { method?: string; path?: string; headers?: Record<string, string | string[]>; body?: Buffer | string | Readable } = {},
): Promise<Answer> {
  const base = frontDoor(host, port, ca);
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      { ...base, method: request.method ?? 'GET', path: request.path ?? '/', headers: { ...base.headers, ...request.headers } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, rawHeaders: res.rawHeaders, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    const body = request.body;
    if (body === undefined || typeof body === 'string' || Buffer.isBuffer(body)) req.end(body);
    else body.pipe(req);
  });
}

/** Every value of a header in a raw header list, any case. */
export function headerValues(raw: readonly string[], name: string): string[] {
  const out: string[] = [];
  const lower = name.toLowerCase();
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.toLowerCase() === lower) out.push(raw[i + 1]!);
  return out;
}

export interface RawAnswer {
  readonly status: number;
  /** lower-case names; repeated headers joined with ", " */
  readonly headers: Record<string, string>;
  readonly body: string;
  /** everything the server sent, as latin1 */
  readonly text: string;
}

function parseRaw(text: string): { answer: RawAnswer; whole: boolean } | undefined {
  const end = text.indexOf('\r\n\r\n');
  if (end < 0) return undefined;
  const lines = text.slice(0, end).split('\r\n');
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0]!)?.[1] ?? 0);
  const headers: Record<string, string> = {};
  for (const line of lines.slice(1)) {
    const c = line.indexOf(':');
    if (c <= 0) continue;
    const name = line.slice(0, c).toLowerCase();
    const value = line.slice(c + 1).trim();
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
  }
  const body = text.slice(end + 4);
  const length = headers['content-length'] === undefined ? undefined : Number(headers['content-length']);
  return { answer: { status, headers, body: length === undefined ? body : body.slice(0, length), text }, whole: length !== undefined && body.length >= length };
}

/**
 * Opens TLS to the front door with `servername` as SNI, writes `data` as it is, and reads one answer: until its
 * Content-Length is complete, or until the server closes. Rejects when nothing complete arrives in time.
 */
export function rawExchange(port: number, servername: string | undefined, ca: string | Buffer, data: string | Buffer, timeoutMs = 5000): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, ca, ...(servername === undefined ? {} : { servername }) });
    let text = '';
    let done = false;
    const settle = (final: boolean): void => {
      if (done) return;
      const parsed = parseRaw(text);
      if (parsed && (parsed.whole || final)) {
        done = true;
        clearTimeout(timer);
        socket.destroy();
        resolve(parsed.answer);
      } else if (final) {
        done = true;
        clearTimeout(timer);
        socket.destroy();
        reject(new Error(`the connection ended without an answer (received ${JSON.stringify(text.slice(0, 200))})`));
      }
    };
    const timer = setTimeout(() => {
      done = true;
      socket.destroy();
      reject(new Error(`no complete answer within ${timeoutMs} ms (received ${JSON.stringify(text.slice(0, 200))})`));
    }, timeoutMs);
    socket.setEncoding('latin1');
    socket.on('secureConnect', () => socket.write(data));
    socket.on('data', (chunk: string) => {
      text += chunk;
      settle(false);
    });
    socket.on('end', () => settle(true));
    socket.on('close', () => settle(true));
    // a server that answers before reading everything may reset the connection: what arrived still counts
    socket.on('error', () => settle(true));
  });
}
