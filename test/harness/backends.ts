/**
 * Sample upstreams for tests, on 127.0.0.1 port 0: an echo app that answers with the request it received,
 * with a few special paths (redirects, slow answers, big bodies, server-sent events).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';

export interface Received {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingMessage['headers'];
  readonly rawHeaders: string[];
  readonly bodyBytes: number;
}

export interface Backend {
  readonly port: number;
  readonly origin: string;
  readonly received: Received[];
  close(): Promise<void>;
}

function handler(self: { origin: string; received: Received[] }) {
  return (req: IncomingMessage, res: ServerResponse) => {
    let bodyBytes = 0;
    req.on('data', (c: Buffer) => (bodyBytes += c.length));
    req.on('end', () => {
      const url = req.url ?? '/';
      self.received.push({ method: req.method ?? '', url, headers: req.headers, rawHeaders: req.rawHeaders, bodyBytes });
      const q = new URL(url, 'http://x').searchParams;
      if (url.startsWith('/redirect')) {
        res.writeHead(302, {
          location: q.get('to') ?? `${self.origin}/landed`,
          refresh: `0; url=${self.origin}/refreshed`,
          'content-location': `${self.origin}/content`,
          'set-cookie': [`a=1; Domain=${new URL(self.origin).hostname}; Path=/`, 'b=2; Domain=other.example; Path=/'],
        });
        res.end();
      } else if (url.startsWith('/slow')) {
        setTimeout(() => res.end('slow'), Number(q.get('ms') ?? 5000)).unref();
      } else if (url.startsWith('/bytes')) {
        const total = Number(q.get('n') ?? 0);
        const chunk = Buffer.alloc(64 * 1024, 0x61);
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(total) });
        let sent = 0;
        const pump = (): void => {
          while (sent < total) {
            const n = Math.min(chunk.length, total - sent);
            sent += n;
            if (!res.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return void res.once('drain', pump);
          }
          res.end();
        };
        pump();
      } else if (url.startsWith('/events')) {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
        let i = 0;
        const t = setInterval(() => {
          res.write(`data: tick ${++i}\n\n`);
          if (i === 3) {
            clearInterval(t);
            res.end();
          }
        }, 50);
      } else {
        const body = JSON.stringify({ method: req.method, url, headers: req.headers, bodyBytes });
        res.writeHead(200, { 'content-type': 'application/json', 'x-backend': 'echo', 'x-gatehouse-error': 'forged-by-backend' });
        res.end(body);
      }
    });
  };
}

async function listen(server: Server, sockets: Set<Socket>): Promise<number> {
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as AddressInfo).port;
}

function closer(server: Server, sockets: Set<Socket>) {
  return () =>
    new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    });
}

export async function startEcho(): Promise<Backend> {
  const self = { origin: '', received: [] as Received[] };
  const server = createServer(handler(self));
  const sockets = new Set<Socket>();
  const port = await listen(server, sockets);
  self.origin = `http://127.0.0.1:${port}`;
  return { port, origin: self.origin, received: self.received, close: closer(server, sockets) };
}

/** An https echo app with its own certificate (for upstream TLS tests). */
export async function startHttpsEcho(cert: string, key: string, originHost = 'localhost'): Promise<Backend> {
  const self = { origin: '', received: [] as Received[] };
  const server = createHttpsServer({ cert, key }, handler(self));
  const sockets = new Set<Socket>();
  const port = await listen(server, sockets);
  self.origin = `https://${originHost}:${port}`;
  return { port, origin: self.origin, received: self.received, close: closer(server, sockets) };
}

/** A port that nothing listens on: bound, then closed. */
export async function deadPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}
