/**
 * Low-level probes for proxy tests, all on 127.0.0.1: raw HTTP/1.1 exchanges over plain or TLS sockets
 * (CONNECT, absolute-form, forged Host), a sentinel server that records every connection it gets (the
 * "must never be reached" destination of open-proxy tests), and a file server (CRLs over http).
 */
import { createServer as createNetServer, connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { createServer as createHttpServer } from 'node:http';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';

export interface RawResponse {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: string;
  readonly raw: string;
}

/** Parses the first response in `raw` (head and whatever follows it). */
export function parseRawResponse(raw: string): RawResponse {
  const end = raw.indexOf('\r\n\r\n');
  const head = end < 0 ? raw : raw.slice(0, end);
  const lines = head.split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
  const headers: Record<string, string> = {};
  for (const l of lines.slice(1)) {
    const c = l.indexOf(':');
    if (c > 0) headers[l.slice(0, c).toLowerCase()] = l.slice(c + 1).trim();
  }
  return { status: m ? Number(m[1]) : 0, headers, body: end < 0 ? '' : raw.slice(end + 4), raw };
}

/** Every socket a probe opened, so a failing test cannot leave one open (and the process running). */
const opened = new Set<Duplex>();

function track<T extends Duplex>(s: T): T {
  opened.add(s);
  s.once('close', () => opened.delete(s));
  return s;
}

/** Destroys every socket the probes opened that is still open; call it in `after`. */
export function destroyProbes(): void {
  for (const s of opened) s.destroy();
  opened.clear();
}

export function connectPlain(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = track(netConnect({ host: '127.0.0.1', port }, () => {
      s.off('error', reject);
      resolve(s);
    }));
    s.once('error', reject);
  });
}

export interface TlsProbeOptions {
  /** SNI; none for IP literals */
  readonly servername?: string;
  readonly ca: string;
  readonly cert?: string;
  readonly key?: string;
  /** verify the server certificate (default true) */
  readonly verify?: boolean;
  /** run TLS over this socket (a CONNECT tunnel) instead of a new TCP connection */
  readonly socket?: Duplex;
  readonly port?: number;
}

export function connectTls(o: TlsProbeOptions): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = track(tlsConnect(
      {
        ...(o.socket ? { socket: o.socket } : { host: '127.0.0.1', port: o.port }),
        ...(o.servername ? { servername: o.servername } : {}),
        ca: o.ca,
        ...(o.cert ? { cert: o.cert, key: o.key } : {}),
        rejectUnauthorized: o.verify !== false,
        ALPNProtocols: ['http/1.1'],
      },
      () => {
        s.off('error', reject);
        resolve(s);
      },
    ));
    s.once('error', reject);
  });
}

/** Reads until the peer ends the stream (or `timeoutMs`), then parses the first response. */
export function readToEnd(socket: Duplex, timeoutMs = 5000): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no end of response within ${timeoutMs} ms; got: ${Buffer.concat(chunks).toString('latin1').slice(0, 300)}`));
    }, timeoutMs);
    socket.on('data', (c: Buffer) => chunks.push(c));
    const done = () => {
      clearTimeout(timer);
      resolve(parseRawResponse(Buffer.concat(chunks).toString('latin1')));
    };
    socket.once('end', done);
    socket.once('close', done);
    socket.once('error', () => undefined);
  });
}

/** Writes `request` and reads the answer to the end (Gatehouse closes after every refusal it writes raw). */
export function exchange(socket: Duplex, request: string, timeoutMs = 5000): Promise<RawResponse> {
  const answer = readToEnd(socket, timeoutMs);
  socket.write(request);
  return answer;
}

/**
 * Sends `CONNECT target` (with `headers`, by default only Host) and waits for the response head. On 200 the
 * socket is the open tunnel, paused (any bytes after the head are pushed back); otherwise the whole refusal is read.
 */
export function openTunnel<T extends Duplex>(socket: T, target: string, timeoutMs = 5000, headers: Record<string, string> = { Host: target }): Promise<{ response: RawResponse; tunnel: T }> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer to CONNECT ${target} within ${timeoutMs} ms`));
    }, timeoutMs);
    const onData = (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      socket.off('data', onData);
      socket.pause();
      const head = parseRawResponse(buf.subarray(0, end + 4).toString('latin1'));
      const rest = buf.subarray(end + 4);
      if (head.status === 200) {
        clearTimeout(timer);
        if (rest.length) socket.unshift(rest);
        resolve({ response: head, tunnel: socket });
        return;
      }
      if (rest.length) socket.unshift(rest);
      socket.resume();
      readToEnd(socket, timeoutMs).then((body) => {
        clearTimeout(timer);
        resolve({ response: { ...head, body: body.raw, raw: head.raw + body.raw }, tunnel: socket });
      }, reject);
    };
    socket.on('data', onData);
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.write(`CONNECT ${target} HTTP/1.1\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`);
  });
}

/** A TCP server that must never be reached: it counts connections and bytes and answers like a web server. */
export interface Sentinel {
  readonly port: number;
  readonly connections: number;
  readonly bytes: number;
  close(): Promise<void>;
}

export async function startSentinel(): Promise<Sentinel> {
  let connections = 0;
  let bytes = 0;
  const sockets = new Set<Socket>();
  const server = createNetServer((s) => {
    connections++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    s.on('data', (c: Buffer) => {
      bytes += c.length;
      s.end('HTTP/1.1 200 OK\r\ncontent-length: 16\r\nconnection: close\r\n\r\nSENTINEL REACHED');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    get connections() {
      return connections;
    },
    get bytes() {
      return bytes;
    },
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

/** Serves the current content of `file` at any path (read on every request), e.g. a CRL URL. */
export interface FileServer {
  readonly url: string;
  readonly requests: number;
  close(): Promise<void>;
}

export async function startFileServer(file: string, path = '/file'): Promise<FileServer> {
  let requests = 0;
  const server = createHttpServer((req, res) => {
    requests++;
    const body = readFileSync(file);
    res.writeHead(200, { 'content-type': 'application/pkix-crl', 'content-length': String(body.length) });
    res.end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}${path}`,
    get requests() {
      return requests;
    },
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
