/**
 * One keep-alive HTTP/1.1 connection over TLS, one request at a time, for the revocation case: the bench must
 * know which server process holds the connection (`serverPid`, from `ss`) and must time each answer itself.
 * Enough HTTP for Gatehouse's and the backend's answers: a status line, headers, a Content-Length body (or
 * chunked, read to the end).
 */
import { execFile } from 'node:child_process';
import { isIP } from 'node:net';
import { connect, type TLSSocket } from 'node:tls';

export interface Answer {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: string;
  /** performance.now() when the request was written and when the answer was complete */
  readonly sentAt: number;
  readonly receivedAt: number;
}

export class KeepAliveClient {
  readonly #socket: TLSSocket;
  readonly #host: string;
  readonly #port: number;
  #buffer: Buffer = Buffer.alloc(0);
  #waiting: { resolve: (a: Answer) => void; reject: (e: Error) => void; sentAt: number } | undefined;
  #failure: Error | undefined;

  private constructor(socket: TLSSocket, host: string, port: number) {
    this.#socket = socket;
    this.#host = host;
    this.#port = port;
    socket.on('data', (c: Buffer) => {
      this.#buffer = this.#buffer.length ? Buffer.concat([this.#buffer, c]) : c;
      this.#parse();
    });
    const fail = (err: Error) => {
      this.#failure ??= err;
      const w = this.#waiting;
      this.#waiting = undefined;
      w?.reject(err);
    };
    socket.on('error', fail);
    socket.on('close', () => fail(new Error('the connection closed')));
  }

  /** Opens the connection (TLS, no certificate check: the bench's own CA on loopback). */
  static open(port: number, host: string): Promise<KeepAliveClient> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port, ...(isIP(host) ? {} : { servername: host }), rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] });
      socket.setNoDelay(true);
      socket.once('secureConnect', () => {
        socket.off('error', reject);
        resolve(new KeepAliveClient(socket, host, port));
      });
      socket.once('error', reject);
    });
  }

  get localPort(): number {
    return this.#socket.localPort ?? 0;
  }

  get alive(): boolean {
    return !this.#failure && !this.#socket.destroyed;
  }

  request(path: string, headers: Record<string, string> = {}, timeoutMs = 5000): Promise<Answer> {
    if (this.#failure) return Promise.reject(this.#failure);
    if (this.#waiting) return Promise.reject(new Error('one request at a time'));
    const lines = [`GET ${path} HTTP/1.1`, `Host: ${this.#host}:${this.#port}`, ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)];
    return new Promise<Answer>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiting = undefined;
        reject(new Error(`no answer to GET ${path} within ${timeoutMs} ms`));
        this.#socket.destroy();
      }, timeoutMs);
      this.#waiting = {
        resolve: (a) => {
          clearTimeout(timer);
          resolve(a);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
        sentAt: performance.now(),
      };
      this.#socket.write(`${lines.join('\r\n')}\r\n\r\n`);
    });
  }

  #parse(): void {
    const w = this.#waiting;
    if (!w) return;
    const end = this.#buffer.indexOf('\r\n\r\n');
    if (end < 0) return;
    const head = this.#buffer.subarray(0, end).toString('latin1').split('\r\n');
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head[0] ?? '')?.[1] ?? 0);
    const headers: Record<string, string> = {};
    for (const line of head.slice(1)) {
      const i = line.indexOf(':');
      if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
    }
    const rest = this.#buffer.subarray(end + 4);
    let body: Buffer;
    let used: number;
    if (headers['content-length'] !== undefined) {
      const n = Number(headers['content-length']);
      if (rest.length < n) return;
      body = rest.subarray(0, n);
      used = n;
    } else if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
      const chunks: Buffer[] = [];
      let at = 0;
      for (;;) {
        const nl = rest.indexOf('\r\n', at);
        if (nl < 0) return;
        const size = parseInt(rest.subarray(at, nl).toString('latin1'), 16);
        if (rest.length < nl + 2 + size + 2) return;
        if (size === 0) {
          used = nl + 4;
          break;
        }
        chunks.push(rest.subarray(nl + 2, nl + 2 + size));
        at = nl + 2 + size + 2;
      }
      body = Buffer.concat(chunks);
    } else {
      body = Buffer.alloc(0);
      used = 0;
    }
    this.#buffer = rest.subarray(used);
    this.#waiting = undefined;
    w.resolve({ status, headers, body: body.toString('utf8'), sentAt: w.sentAt, receivedAt: performance.now() });
  }

  close(): void {
    this.#socket.destroy();
  }
}

/**
 * The pid of the server process holding the other end of a connection from local port `clientPort` to server
 * port `serverPort` (one Gatehouse worker), from `ss`.
 */
export function serverPid(serverPort: number, clientPort: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    execFile('ss', ['-tnpH', 'state', 'established', `( sport = :${serverPort} and dport = :${clientPort} )`], { timeout: 5000 }, (err, stdout) => {
      if (err) return resolve(undefined);
      const m = /pid=(\d+)/.exec(stdout);
      resolve(m ? Number(m[1]) : undefined);
    });
  });
}
