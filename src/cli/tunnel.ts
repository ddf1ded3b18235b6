/**
 * `gatehouse tunnel NAME-or-HOST[:PORT] --via URL`: a byte stream to a `tcp` route, for SSH's `ProxyCommand`
 * (stdin/stdout) or as a local port (`--listen`).
 *
 * On the wire: TLS to the front door named by `--via` (SNI = its host; the client certificate from
 * `--cert/--key` when given), then `CONNECT HOST:PORT HTTP/1.1` with `Proxy-Authorization: Bearer TOKEN`; a
 * `200` makes the connection the tunnel, anything else is Gatehouse's coded refusal (JSON), reported as one
 * line. The token is `--token`, else `$GATEHOUSE_TOKEN`, else the stored login (`gatehouse login`); when the
 * Gatehouse answers 401 and the token was not given explicitly, the browser sign-in runs once (as `gatehouse
 * login` does, storing the new token) and the tunnel is tried again. stdout carries only tunnel bytes.
 */
import { lookup as dnsLookup } from 'node:dns';
import { closeSync, fstatSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { createServer, isIP, Socket, type AddressInfo, type LookupFunction } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { GatehouseError, formatDuration, isErrorCode, messageOf, type ErrorCode } from '../core/index.ts';
import { Pump } from '../tunnel/index.ts';
import { TLS_TRUST_CODES, loadTrust, signIn, storedToken, viaOrigin } from './login.ts';

export interface TunnelCliOptions {
  readonly target: string;
  readonly via: string;
  readonly token?: string | undefined;
  readonly cert?: string | undefined;
  readonly key?: string | undefined;
  readonly ca?: string | undefined;
  readonly listen?: string | undefined;
  /** `HOST:ADDRESS` or curl's `HOST:PORT:ADDRESS`: connect to ADDRESS for HOST (SNI and Host stay HOST) */
  readonly resolve?: readonly string[];
  /** open the browser for a sign-in (the URL is printed either way) */
  readonly browser: boolean;
  /** sign in through the browser when needed; false: fail with a message instead */
  readonly signIn: boolean;
  readonly timeoutMs?: number | undefined;
  readonly env?: NodeJS.ProcessEnv;
}

/** The port sent when the target names none: SSH's. A `tcp` route ignores it anyway. */
const DEFAULT_PORT = 22;
const ANSWER_TIMEOUT_MS = 15_000;
const MAX_HEAD = 16_384;

/** A refusal from the Gatehouse: its status and code. */
export class TunnelRefused extends GatehouseError {
  constructor(
    readonly httpStatus: number,
    code: ErrorCode,
    message: string,
  ) {
    super(code, message);
  }
}

/** `NAME-or-HOST[:PORT]` (IPv6 in brackets) → host and port. */
export function parseTunnelTarget(text: string): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:.]+\]|[a-zA-Z0-9](?:[a-zA-Z0-9.-]*[a-zA-Z0-9])?)(?::(\d{1,5}))?$/.exec(text.trim());
  const port = m?.[2] === undefined ? DEFAULT_PORT : Number(m[2]);
  if (!m || port < 1 || port > 65535) throw new GatehouseError('ERR_USAGE', `"${text}" is not NAME, HOST or HOST:PORT (e.g. db.corp.example.com:22)`);
  return { host: m[1]!.toLowerCase(), port };
}

/** `--resolve HOST:ADDRESS` or `HOST:PORT:ADDRESS` (IPv6 addresses in brackets). */
export function parseResolve(entry: string): { host: string; port: number | undefined; address: string } {
  const m = /^([^:\s]+):(?:(\d{1,5}):)?(\[[0-9a-fA-F:.]+\]|[0-9.]+)$/.exec(entry.trim());
  const address = m ? m[3]!.replace(/^\[|\]$/g, '') : '';
  if (!m || !isIP(address)) throw new GatehouseError('ERR_USAGE', `--resolve "${entry}" must be HOST:ADDRESS or HOST:PORT:ADDRESS (an IP address)`);
  return { host: m[1]!.toLowerCase(), port: m[2] === undefined ? undefined : Number(m[2]), address };
}

/** `--listen ADDRESS:PORT`, loopback only: anyone who can reach the port uses the tunnel as you. */
export function parseListen(text: string): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:]+\]|[0-9.]+|localhost):(\d{1,5})$/.exec(text.trim());
  const host = m ? m[1]!.replace(/^\[|\]$/g, '') : '';
  const loopback = host === 'localhost' || host === '::1' || (isIP(host) === 4 && host.startsWith('127.'));
  if (!m || Number(m[2]) > 65535) throw new GatehouseError('ERR_USAGE', `--listen "${text}" must be ADDRESS:PORT, e.g. 127.0.0.1:2222 (port 0: any free port)`);
  if (!loopback) throw new GatehouseError('ERR_USAGE', `--listen ${text}: only a loopback address (127.0.0.1, [::1], localhost): whoever reaches the port uses the tunnel as you`);
  return { host: host === 'localhost' ? '127.0.0.1' : host, port: Number(m[2]) };
}

/** A lookup that answers the `--resolve` names itself and asks DNS for the rest. */
function resolvingLookup(entries: ReadonlyArray<{ host: string; address: string }>): LookupFunction | undefined {
  if (entries.length === 0) return undefined;
  return ((hostname: string, options: { all?: boolean }, callback: (...args: unknown[]) => void) => {
    const hit = entries.find((e) => e.host === hostname.toLowerCase());
    if (!hit) return dnsLookup(hostname, options, callback as never);
    const family = isIP(hit.address);
    if (options?.all) process.nextTick(callback, null, [{ address: hit.address, family }]);
    else process.nextTick(callback, null, hit.address, family);
  }) as unknown as LookupFunction;
}

interface Credential {
  readonly token: string | undefined;
  /** where it came from: an explicit one is never replaced by a sign-in */
  readonly source: 'flag' | 'env' | 'stored' | 'signed-in' | 'none';
}

/** Everything one `gatehouse tunnel` run needs to open tunnels, and the sign-in that runs at most once. */
class TunnelClient {
  readonly #o: TunnelCliOptions;
  readonly #origin: string;
  readonly #via: URL;
  readonly #target: { host: string; port: number };
  readonly #lookup: LookupFunction | undefined;
  #credential: Promise<Credential> | undefined;
  #signingIn: Promise<Credential> | undefined;
  #tls: { ca: string[] | undefined; cert: string | undefined; key: string | undefined } | undefined;

  constructor(o: TunnelCliOptions) {
    this.#o = o;
    this.#origin = viaOrigin(o.via);
    this.#via = new URL(this.#origin);
    this.#target = parseTunnelTarget(o.target);
    const viaPort = Number(this.#via.port || 443);
    const entries = (o.resolve ?? []).map(parseResolve).filter((e) => e.port === undefined || e.port === viaPort);
    this.#lookup = resolvingLookup(entries);
    if ((o.cert === undefined) !== (o.key === undefined)) throw new GatehouseError('ERR_USAGE', '--cert and --key go together');
  }

  get origin(): string {
    return this.#origin;
  }

  get target(): string {
    return `${this.#target.host}:${this.#target.port}`;
  }

  async #tlsMaterial(): Promise<{ ca: string[] | undefined; cert: string | undefined; key: string | undefined }> {
    if (this.#tls) return this.#tls;
    const read = async (file: string | undefined, what: string) => {
      if (file === undefined) return undefined;
      try {
        return await readFile(file, 'utf8');
      } catch (err) {
        throw new GatehouseError('ERR_USAGE', `cannot read the ${what} ${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : messageOf(err)}`, { cause: err });
      }
    };
    this.#tls = { ca: await loadTrust(this.#o.ca, this.#o.env), cert: await read(this.#o.cert, 'certificate'), key: await read(this.#o.key, 'key') };
    return this.#tls;
  }

  #firstCredential(): Promise<Credential> {
    this.#credential ??= (async (): Promise<Credential> => {
      const env = this.#o.env ?? process.env;
      if (this.#o.token) return { token: this.#o.token, source: 'flag' };
      if (env.GATEHOUSE_TOKEN) return { token: env.GATEHOUSE_TOKEN, source: 'env' };
      const stored = await storedToken(this.#origin, env);
      return stored ? { token: stored.token, source: 'stored' } : { token: undefined, source: 'none' };
    })();
    return this.#credential;
  }

  /** The browser sign-in, once per run however many tunnels wait for it. */
  #signIn(): Promise<Credential> {
    this.#signingIn ??= (async (): Promise<Credential> => {
      const login = await signIn(this.#origin, {
        caFile: this.#o.ca,
        openBrowser: this.#o.browser,
        lookup: this.#lookup,
        name: `tunnel on ${hostname()}`,
        ...(this.#o.timeoutMs !== undefined ? { timeoutMs: this.#o.timeoutMs } : {}),
        ...(this.#o.env ? { env: this.#o.env } : {}),
      });
      process.stderr.write(`gatehouse: signed in to ${login.via} as ${login.user}\n`);
      const signedIn: Credential = { token: login.token, source: 'signed-in' };
      this.#credential = Promise.resolve(signedIn);
      return signedIn;
    })();
    return this.#signingIn;
  }

  /** An open tunnel (a TLS socket past the `200`), signing in first when the Gatehouse asks for it. */
  async open(): Promise<TLSSocket> {
    let credential = await this.#firstCredential();
    for (;;) {
      try {
        return await this.#connect(credential.token);
      } catch (err) {
        if (!(err instanceof TunnelRefused) || err.httpStatus !== 401) throw err;
        const mayReplace = credential.source === 'stored' || credential.source === 'none';
        if (!mayReplace || !this.#o.signIn) throw this.#notSignedIn(err, credential);
        credential = await this.#signIn();
      }
    }
  }

  #notSignedIn(err: TunnelRefused, credential: Credential): GatehouseError {
    const how =
      credential.source === 'flag'
        ? 'pass a valid --token'
        : credential.source === 'env'
          ? 'set GATEHOUSE_TOKEN to a valid token'
          : credential.source === 'signed-in'
            ? 'the new sign-in was refused too'
            : `sign in with: gatehouse login --via ${this.#origin}`;
    return new TunnelRefused(err.httpStatus, err.code, `not signed in to ${this.#origin}: ${err.message.replace(/ \(ERR_[A-Z_]+\)$/, '')} (${err.code}); ${how}`);
  }

  /** One TLS connection and CONNECT; resolves with the tunnel, rejects with TunnelRefused or a one-line error. */
  async #connect(token: string | undefined): Promise<TLSSocket> {
    const tls = await this.#tlsMaterial();
    const host = this.#via.hostname.replace(/^\[|\]$/g, '');
    const port = Number(this.#via.port || 443);
    return new Promise<TLSSocket>((resolve, reject) => {
      const socket = tlsConnect({
        host,
        port,
        ...(isIP(host) ? {} : { servername: host }),
        ...(tls.ca ? { ca: tls.ca } : {}),
        ...(tls.cert && tls.key ? { cert: tls.cert, key: tls.key } : {}),
        ...(this.#lookup ? { lookup: this.#lookup } : {}),
        ALPNProtocols: ['http/1.1'],
      });
      socket.allowHalfOpen = true; // stdin's end is sent as our FIN; the answer keeps flowing
      let head = Buffer.alloc(0);
      let settled = false;
      const fail = (err: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        socket.destroy();
        reject(err);
      };
      const timer = setTimeout(() => fail(new GatehouseError('ERR_UPSTREAM_TIMEOUT', `${this.#origin} did not answer within ${formatDuration(ANSWER_TIMEOUT_MS)}`)), ANSWER_TIMEOUT_MS);
      socket.on('error', (err) => fail(this.#unreachable(err)));
      socket.once('secureConnect', () => {
        const lines = [
          `CONNECT ${this.target} HTTP/1.1`,
          `Host: ${this.target}`,
          'User-Agent: gatehouse-cli',
          'Accept: application/json',
          ...(token ? [`Proxy-Authorization: Bearer ${token}`] : []),
        ];
        socket.write(lines.join('\r\n') + '\r\n\r\n');
      });
      const onData = (chunk: Buffer) => {
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) {
          if (head.length > MAX_HEAD) fail(new GatehouseError('ERR_UPSTREAM_PROTOCOL', `${this.#origin} answered the CONNECT with something that is not HTTP`));
          return;
        }
        socket.off('data', onData);
        socket.pause();
        const status = /^HTTP\/1\.[01] (\d{3})/.exec(head.subarray(0, end).toString('latin1'));
        if (!status) return fail(new GatehouseError('ERR_UPSTREAM_PROTOCOL', `${this.#origin} answered the CONNECT with something that is not HTTP`));
        const rest = head.subarray(end + 4);
        if (status[1] === '200') {
          settled = true;
          clearTimeout(timer);
          if (rest.length) socket.unshift(rest);
          return resolve(socket);
        }
        // a refusal: its body (JSON, we asked for it) until Gatehouse closes
        const headers = head.subarray(0, end).toString('latin1');
        let body = rest;
        socket.on('data', (c: Buffer) => {
          if (body.length < 65_536) body = Buffer.concat([body, c]);
        });
        const done = () => fail(this.#refused(Number(status[1]), headers, body.toString('utf8')));
        socket.once('end', done);
        socket.once('close', done);
        socket.resume();
      };
      socket.on('data', onData);
      socket.once('close', () => fail(new GatehouseError('ERR_UPSTREAM_PROTOCOL', `${this.#origin} closed the connection without answering the CONNECT`)));
    });
  }

  #refused(status: number, headers: string, text: string): TunnelRefused {
    const header = /\r\nx-gatehouse-error:\s*([A-Z_]+)/i.exec(headers)?.[1];
    let code: ErrorCode = header && isErrorCode(header) ? header : 'ERR_UPSTREAM_PROTOCOL';
    let message = `HTTP ${status}`;
    try {
      const parsed = JSON.parse(text) as { error?: { code?: string; message?: string } };
      if (parsed.error?.message) message = parsed.error.message;
      if (parsed.error?.code && isErrorCode(parsed.error.code)) code = parsed.error.code;
    } catch {
      // not JSON: the status and the header's code
    }
    const what = `${this.target} through ${this.#origin}`;
    if (code === 'ERR_PROXY_DESTINATION_FORBIDDEN' || code === 'ERR_ROUTE_NOT_FOUND') {
      return new TunnelRefused(status, code, `no such route: ${what}: ${message} (${code})`);
    }
    return new TunnelRefused(status, code, `refused ${what}: ${message} (${code})`);
  }

  #unreachable(err: NodeJS.ErrnoException): GatehouseError {
    const code = err.code ?? '';
    let why: string;
    if (code === 'ECONNREFUSED') why = 'connection refused (is --via right, and is Gatehouse running there?)';
    else if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') why = `the name ${this.#via.hostname} does not resolve (--resolve HOST:ADDRESS names its address)`;
    else if (code === 'ECONNRESET') why = 'the connection was reset (is it the HTTPS port?)';
    else if (TLS_TRUST_CODES.has(code)) why = `its certificate is not trusted (${messageOf(err)}); pass --ca FILE or set GATEHOUSE_CA`;
    else why = messageOf(err);
    return new GatehouseError('ERR_UPSTREAM_UNREACHABLE', `cannot reach ${this.#origin}: ${why}`, { cause: err });
  }
}

/**
 * stdin and stdout as raw byte streams; pipes and sockets get their own non-blocking handles, and stdout is
 * closed once flushed when the tunnel's far end finished (libuv never closes fds 0-2 itself: a pipe's reader
 * would wait for its EOF until we exit).
 */
function stdio(): { input: Readable; output: Writable; closeOutput: () => void } {
  const isStream = (fd: number) => {
    try {
      const s = fstatSync(fd);
      return s.isFIFO() || s.isSocket();
    } catch {
      return false;
    }
  };
  const input: Readable = isStream(0) ? new Socket({ fd: 0, readable: true, writable: false }) : process.stdin;
  if (isStream(1)) {
    const output = new Socket({ fd: 1, readable: false, writable: true });
    output.on('error', () => undefined);
    let closing = false;
    const closeOutput = () => {
      if (closing) return;
      closing = true;
      output.write('', () => {
        output.destroy();
        try {
          closeSync(1);
        } catch {
          // already closed
        }
      });
    };
    return { input, output, closeOutput };
  }
  return { input, output: process.stdout, closeOutput: () => undefined };
}

/** stdin → tunnel and tunnel → stdout, with backpressure and half-close; resolves when both are done. */
function bridgeStdio(tunnel: TLSSocket): Promise<void> {
  const { input, output, closeOutput } = stdio();
  return new Promise((resolve, reject) => {
    let inputDone = false;
    let outputDone = false;
    let farEnded = false;
    const check = () => {
      if (inputDone && outputDone) resolve();
    };
    input.on('data', (chunk: Buffer) => {
      if (!tunnel.write(chunk)) input.pause();
    });
    tunnel.on('drain', () => input.resume());
    input.once('end', () => {
      tunnel.end();
      inputDone = true;
      check();
    });
    input.on('error', () => {
      tunnel.end();
      inputDone = true;
      check();
    });
    tunnel.on('data', (chunk: Buffer) => {
      if (!output.write(chunk)) tunnel.pause();
    });
    tunnel.resume(); // paused after the CONNECT answer was read
    output.on('drain', () => tunnel.resume());
    tunnel.once('end', () => {
      farEnded = true;
      closeOutput();
      outputDone = true;
      check();
    });
    tunnel.on('error', (err) => {
      // after the far end's FIN, a reset only says the tunnel is gone (Gatehouse closed it): 'close' follows
      if (!farEnded) reject(new GatehouseError('ERR_UPSTREAM_UNREACHABLE', `the tunnel broke: ${messageOf(err)}`, { cause: err }));
    });
    tunnel.once('close', () => {
      // Gatehouse ended the tunnel (closed, revoked, idle, shut down): nothing more will come either way
      outputDone = true;
      if (!inputDone) {
        input.destroy();
        inputDone = true;
      }
      closeOutput();
      check();
    });
  });
}

/** `gatehouse tunnel`: resolves with the exit code. */
export async function runTunnel(o: TunnelCliOptions): Promise<number> {
  const client = new TunnelClient(o);
  if (o.listen === undefined) {
    const tunnel = await client.open();
    await bridgeStdio(tunnel);
    return 0;
  }
  const at = parseListen(o.listen);
  const server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (conn) => {
    conn.on('error', () => undefined);
    client.open().then(
      (tunnel) => {
        if (conn.destroyed) return tunnel.destroy();
        new Pump(conn, tunnel, { idleMs: 0 }).start();
        conn.resume();
      },
      (err: unknown) => {
        process.stderr.write(`gatehouse: ${messageOf(err)}\n`);
        conn.destroy();
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(new GatehouseError('ERR_USAGE', `cannot listen on ${o.listen}: ${err.code === 'EADDRINUSE' ? 'the port is in use' : messageOf(err)}`, { cause: err })),
    );
    server.listen({ host: at.host, port: at.port }, () => resolve());
  });
  const a = server.address() as AddressInfo;
  const shown = a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
  process.stderr.write(`gatehouse: listening on ${shown}; each connection is a tunnel to ${client.target} through ${client.origin} (Ctrl-C ends)\n`);
  await new Promise<void>((resolve) => {
    const stop = () => {
      server.close();
      resolve();
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  return 0;
}
