/**
 * Upgrades (WebSocket): the checked request is sent upstream with its Upgrade header; a 101 joins the two
 * sockets byte for byte, any other answer is relayed as it is and the connection closed.
 */
import { request as httpRequest, STATUS_CODES, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { LookupFunction, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { ErrorCode } from '../core/index.ts';
import type { UpstreamTarget } from './route-table.ts';
import type { UpstreamTls } from './upstream-pool.ts';
import { classifyUpstreamError, UpstreamTimeoutError } from './forward.ts';
import { clientResponseHeaders } from './headers.ts';

export interface UpgradeRequest {
  readonly req: IncomingMessage;
  readonly socket: Duplex;
  readonly head: Buffer;
  readonly target: UpstreamTarget;
  readonly tls: UpstreamTls | undefined;
  readonly lookup: LookupFunction | undefined;
  readonly path: string;
  readonly headers: string[];
  readonly connectTimeout: number;
  readonly readTimeout: number;
  readonly requestId: string;
  readonly onRefuse: (code: ErrorCode, message: string) => void;
  readonly onDone: (status: number, bytesIn: number, bytesOut: number) => void;
  /** a route behind a connector: the connection is a stream through it (plain HTTP/1.1 inside; `target` and `tls` unused) */
  readonly dial?: (() => Promise<Duplex>) | undefined;
}

function head(status: number, message: string | undefined, raw: readonly string[]): string {
  let s = `HTTP/1.1 ${status} ${message ?? STATUS_CODES[status] ?? ''}\r\n`;
  for (let i = 0; i < raw.length; i += 2) s += `${raw[i]}: ${raw[i + 1]}\r\n`;
  return s + '\r\n';
}

export function proxyWebSocket(u: UpgradeRequest): void {
  const https = u.target.protocol === 'https:' && !u.dial;
  const dial = u.dial;
  const options = {
    host: u.target.hostname,
    port: u.target.port,
    method: u.req.method,
    path: u.path,
    headers: u.headers,
    lookup: u.lookup,
    ...(dial
      ? {
          // no agent: node:http then takes the connection from createConnection, which may answer later
          createConnection: (_o: unknown, done: (err: Error | null, socket?: Duplex) => void) => {
            dial().then((stream) => done(null, stream), (err: Error) => done(err));
            return undefined;
          },
        }
      : { agent: false }),
    ...(https
      ? { ca: u.tls?.ca, servername: u.tls?.serverName ?? u.target.hostname, rejectUnauthorized: !(u.tls?.insecureSkipVerify ?? false) }
      : {}),
  };
  const upReq = https ? httpsRequest(options as never) : httpRequest(options as never);
  let settled = false;
  const timer = setTimeout(() => upReq.destroy(new UpstreamTimeoutError('connect', u.connectTimeout)), u.connectTimeout + u.readTimeout);
  u.socket.on('close', () => {
    if (!settled) upReq.destroy();
  });

  upReq.on('upgrade', (res: IncomingMessage, upSocket: Socket, upHead: Buffer) => {
    settled = true;
    clearTimeout(timer);
    const raw: string[] = [];
    for (let i = 0; i < res.rawHeaders.length; i += 2) {
      const lower = res.rawHeaders[i]!.toLowerCase();
      if (lower === 'x-gatehouse-error' || lower === 'x-request-id') continue;
      raw.push(res.rawHeaders[i]!, res.rawHeaders[i + 1]!);
    }
    raw.push('x-request-id', u.requestId);
    u.socket.write(head(101, res.statusMessage, raw));
    if (upHead.length) u.socket.write(upHead);
    if (u.head.length) upSocket.write(u.head);
    let bytesIn = u.head.length;
    let bytesOut = upHead.length;
    u.socket.on('data', (c: Buffer) => (bytesIn += c.length));
    upSocket.on('data', (c: Buffer) => (bytesOut += c.length));
    upSocket.setTimeout(0);
    u.socket.pipe(upSocket).pipe(u.socket);
    const end = (): void => {
      upSocket.destroy();
      u.socket.destroy();
    };
    upSocket.on('error', end);
    upSocket.on('close', end);
    u.socket.on('error', end);
    let reported = false;
    u.socket.on('close', () => {
      end();
      if (!reported) {
        reported = true;
        u.onDone(101, bytesIn, bytesOut);
      }
    });
  });

  upReq.on('response', (res: IncomingMessage) => {
    // the upstream declined the upgrade: relay its answer
    settled = true;
    clearTimeout(timer);
    const raw = clientResponseHeaders(res.rawHeaders, u.requestId);
    raw.push('connection', 'close');
    u.socket.write(head(res.statusCode ?? 502, res.statusMessage, raw));
    let bytesOut = 0;
    res.on('data', (c: Buffer) => {
      bytesOut += c.length;
      u.socket.write(c);
    });
    res.on('end', () => {
      u.socket.end();
      u.onDone(res.statusCode ?? 502, 0, bytesOut);
    });
  });

  upReq.on('error', (err) => {
    clearTimeout(timer);
    if (settled) return;
    settled = true;
    const c = classifyUpstreamError(err);
    u.onRefuse(c.code, c.message);
  });
  upReq.end();
}
