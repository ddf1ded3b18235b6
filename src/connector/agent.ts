/**
 * The connector agent (`gatehouse connect`): runs beside a backend, dials out to the Gatehouse auth host over TLS
 * with its connector certificate, upgrades the connection and serves HTTP/2 on it; every `CONNECT` stream Gatehouse
 * opens becomes one connection to the backend (`--to`), TLS included for an `https://` backend. The backend needs
 * no inbound port.
 *
 * A supervisor keeps the links: it reconnects with exponential backoff and jitter (capped at 30 s), and with
 * several Gatehouse workers keeps opening links, naming the workers it holds, until it has one to each (bounded
 * attempts, then a pause). Both sides PING every 10 s and drop a link after three missed. Renewed credentials roll
 * the links over: new links first, then the old ones are closed gracefully (GOAWAY: their streams finish).
 * One log line per state change.
 */
import { request as httpsRequest } from 'node:https';
import { connect as netConnect, isIP, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { constants, createServer as createH2Server, type Http2Server, type IncomingHttpHeaders, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type { IncomingMessage } from 'node:http';
import { GatehouseError, isErrorCode, messageOf, type ErrorCode, type Logger } from '../core/index.ts';
import {
  CONNECTOR_PATH,
  HELD_HEADER,
  MISSED_PINGS,
  NAME_HEADER,
  PING_INTERVAL_MS,
  REASON_HEADER,
  SESSION_HEADER,
  TARGET_HEADER,
  UPGRADE_PROTOCOL,
  VERSION_HEADER,
  WINDOW_BYTES,
  WORKER_HEADER,
  backoffDelay,
  formatHeld,
  formatWorker,
  parseWorker,
  type ConnectorTarget,
  type WorkerSlot,
} from './protocol/index.ts';
import type { ConnectorCredentials } from './agent-credentials.ts';

export interface AgentOptions {
  /** `https://AUTHHOST[:PORT]` */
  readonly via: string;
  readonly name: string;
  readonly target: ConnectorTarget;
  /** for an `https://` target: a PEM CA to trust (default the system's), or no verification at all */
  readonly targetTls?: { readonly ca?: string | undefined; readonly insecure?: boolean | undefined };
  readonly credentials: ConnectorCredentials;
  /** CAs to trust for the Gatehouse (undefined: the system's) */
  readonly trust: readonly string[] | undefined;
  readonly log: Logger;
  readonly version: string;
  readonly pingIntervalMs?: number;
  /** reconnect delays: exponential from `baseMs` to `capMs`, with jitter (500 ms and 30 s) */
  readonly backoff?: { readonly baseMs: number; readonly capMs: number };
  /** ms to reach the backend for one stream (10 s) */
  readonly backendTimeoutMs?: number;
  /** how often to check whether the certificate is due for renewal (1 h) */
  readonly renewCheckMs?: number;
}

interface Link {
  readonly socket: TLSSocket;
  readonly session: ServerHttp2Session;
  readonly worker: WorkerSlot;
  readonly id: string;
  readonly generation: number;
  unanswered: number;
  retiring: boolean;
}

type Attempt = { readonly link: Link } | { readonly declined: WorkerSlot };

/** A refusal the Gatehouse answered (HTTP status other than 101). */
class Refused extends GatehouseError {
  constructor(code: ErrorCode, message: string, readonly httpStatus: number) {
    super(code, message);
  }
}

const UPGRADE_TIMEOUT_MS = 15_000;
/** declined connections (a worker already held) per worker before a pause */
const DECLINES_PER_WORKER = 8;
const COVERAGE_PAUSE_MS = 30_000;
/**
 * How long a link being closed (stopping, or rolled over to new credentials) may finish its open streams before
 * they are cut (a TCP tunnel may stay open for hours).
 */
const RETIRE_GRACE_MS = 30_000;

export class ConnectorAgent {
  readonly #o: AgentOptions;
  readonly #server: Http2Server;
  readonly #links = new Set<Link>();
  #state: 'new' | 'running' | 'closing' | 'closed' = 'new';
  /** how many workers the Gatehouse has, as its last answer said */
  #workers = 1;
  #wake: (() => void) | undefined;
  #beat: NodeJS.Timeout | undefined;
  #renewTimer: NodeJS.Timeout | undefined;
  #run: Promise<void> | undefined;
  #claim: ((session: ServerHttp2Session) => void) | undefined;
  #incomplete = false;

  constructor(options: AgentOptions) {
    this.#o = options;
    this.#server = createH2Server({ settings: { initialWindowSize: WINDOW_BYTES, enablePush: false }, maxSessionMemory: 64 });
    this.#server.on('session', (session: ServerHttp2Session) => this.#claim?.(session));
    this.#server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => this.#serve(stream, headers));
  }

  /** Links open now, by worker. */
  get links(): ReadonlyArray<{ readonly worker: string; readonly session: string }> {
    return [...this.#links].map((l) => ({ worker: formatWorker(l.worker), session: l.id }));
  }

  start(): void {
    if (this.#state !== 'new') throw new GatehouseError('ERR_NOT_READY', `the connector was already ${this.#state}`);
    this.#state = 'running';
    const interval = this.#o.pingIntervalMs ?? PING_INTERVAL_MS;
    this.#beat = setInterval(() => this.#heartbeat(), interval);
    if (this.#o.credentials.renewable) {
      this.#renewTimer = setInterval(() => void this.#renewIfDue(), this.#o.renewCheckMs ?? 3_600_000);
      this.#renewTimer.unref();
      void this.#renewIfDue();
    }
    this.#run = this.#supervise();
  }

  /** Stops: links close gracefully (streams in flight finish), then resolves. */
  async close(): Promise<void> {
    if (this.#state === 'closed' || this.#state === 'closing') return this.#run;
    this.#state = 'closing';
    this.#stopTimers();
    this.#wake?.();
    const ended = [...this.#links].map((l) => new Promise<void>((r) => (l.socket.destroyed ? r() : l.socket.once('close', () => r()))));
    for (const l of this.#links) l.session.close();
    // streams still open after the grace period (a long TCP tunnel) are cut
    const deadline = setTimeout(() => {
      for (const l of this.#links) l.session.destroy();
    }, RETIRE_GRACE_MS);
    await Promise.all([...ended, this.#run]);
    clearTimeout(deadline);
    this.#state = 'closed';
    this.#o.log.info('connector_stopped', { name: this.#o.name });
  }

  /** Stops now: every link and stream ends. */
  destroy(): void {
    this.#state = 'closed';
    this.#stopTimers();
    this.#wake?.();
    for (const l of this.#links) {
      l.session.destroy();
      l.socket.destroy();
    }
  }

  #stopTimers(): void {
    clearInterval(this.#beat);
    clearInterval(this.#renewTimer);
  }

  get #running(): boolean {
    return this.#state === 'running';
  }

  // ------------------------------------------------------------------------------------------ the supervisor

  /** Links of the current credentials, and whether they cover every worker. */
  #covered(): boolean {
    const generation = this.#o.credentials.current.generation;
    const current = [...this.#links].filter((l) => l.generation === generation && !l.retiring);
    if (current.length === 0) return false;
    return new Set(current.map((l) => l.worker.id)).size >= this.#workers;
  }

  async #supervise(): Promise<void> {
    let failures = 0;
    let declined = 0;
    while (this.#running) {
      if (this.#covered()) {
        this.#retireOld();
        if (this.#incomplete) {
          this.#incomplete = false;
          this.#o.log.info('connector_workers_covered', { workers: this.#workers });
        }
        await this.#sleep(undefined);
        continue;
      }
      let attempt: Attempt;
      try {
        attempt = await this.#open();
      } catch (err) {
        if (!this.#running) break;
        failures++;
        const delay = backoffDelay(failures - 1, { baseMs: this.#o.backoff?.baseMs ?? 500, capMs: this.#o.backoff?.capMs ?? 30_000 });
        const code = err instanceof GatehouseError ? err.code : undefined;
        this.#o.log[err instanceof Refused ? 'error' : 'warn'](err instanceof Refused ? 'connector_refused' : 'connector_unreachable', {
          name: this.#o.name,
          via: this.#o.via,
          ...(code ? { code } : {}),
          error: messageOf(err),
          attempt: failures,
          retryInMs: delay,
        });
        await this.#sleep(delay);
        continue;
      }
      if ('link' in attempt) {
        failures = 0;
        declined = 0;
        if (!this.#running) {
          attempt.link.session.close();
          break;
        }
        continue;
      }
      // a worker we already hold took the connection: try again soon, within bounds
      this.#workers = attempt.declined.count;
      declined++;
      if (declined >= DECLINES_PER_WORKER * this.#workers) {
        declined = 0;
        this.#incomplete = true;
        const held = formatHeld([...this.#links].map((l) => l.worker.id));
        this.#o.log.warn('connector_workers_incomplete', { name: this.#o.name, workers: this.#workers, held, retryInMs: COVERAGE_PAUSE_MS });
        await this.#sleep(COVERAGE_PAUSE_MS);
      } else {
        await this.#sleep(backoffDelay(0, { baseMs: 100, capMs: 100 }));
      }
    }
  }

  /** Sleeps `ms` (forever when undefined) or until something changes: a link ends, credentials renew, stop. */
  #sleep(ms: number | undefined): Promise<void> {
    if (!this.#running) return Promise.resolve();
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const done = (): void => {
        clearTimeout(timer);
        if (this.#wake === done) this.#wake = undefined;
        resolve();
      };
      if (ms !== undefined) timer = setTimeout(done, ms);
      this.#wake = done;
    });
  }

  /** Closes, gracefully, the links of older credentials once the current ones cover every worker. */
  #retireOld(): void {
    const generation = this.#o.credentials.current.generation;
    for (const l of this.#links) {
      if (l.generation === generation || l.retiring) continue;
      l.retiring = true;
      l.session.close();
      setTimeout(() => l.session.destroy(), RETIRE_GRACE_MS).unref();
    }
  }

  // ------------------------------------------------------------------------------------------ one link

  /** Opens one link: TLS with the connector certificate, the upgrade, and the HTTP/2 server session on it. */
  #open(): Promise<Attempt> {
    const via = new URL(this.#o.via);
    const credentials = this.#o.credentials.current;
    const held = [...this.#links].filter((l) => l.generation === credentials.generation && !l.retiring).map((l) => l.worker.id);
    const host = via.hostname.startsWith('[') ? via.hostname.slice(1, -1) : via.hostname;
    return new Promise((resolve, reject) => {
      const req = httpsRequest({
        host,
        port: via.port ? Number(via.port) : 443,
        ...(isIP(host) ? {} : { servername: host }),
        method: 'GET',
        path: CONNECTOR_PATH,
        agent: false,
        cert: credentials.certPem,
        key: credentials.keyPem,
        ...(this.#o.trust ? { ca: [...this.#o.trust] } : {}),
        headers: {
          host: via.host,
          connection: 'Upgrade',
          upgrade: UPGRADE_PROTOCOL,
          'user-agent': `gatehouse-connector/${this.#o.version}`,
          [NAME_HEADER]: this.#o.name,
          [VERSION_HEADER]: this.#o.version,
          [TARGET_HEADER]: this.#o.target.authority,
          ...(held.length ? { [HELD_HEADER]: formatHeld(held) } : {}),
        },
      });
      req.setTimeout(UPGRADE_TIMEOUT_MS, () => req.destroy(new Error(`no answer within ${UPGRADE_TIMEOUT_MS / 1000} s`)));
      req.on('error', (err) => reject(new GatehouseError('ERR_UPSTREAM_UNREACHABLE', `cannot reach ${via.origin}: ${messageOf(err)}`, { cause: err })));
      req.on('response', (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.length < 16 && chunks.push(c));
        res.on('error', () => undefined);
        res.on('end', () => {
          const worker = parseWorker(res.headers[WORKER_HEADER]);
          if (res.statusCode === 409 && worker) return resolve({ declined: worker });
          let code: ErrorCode = 'ERR_UPSTREAM_PROTOCOL';
          let message = `HTTP ${res.statusCode}`;
          try {
            const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { error?: { code?: string; message?: string } };
            if (body.error?.code && isErrorCode(body.error.code)) code = body.error.code;
            if (body.error?.message) message = body.error.message;
          } catch {
            // not our JSON: keep the status
          }
          reject(new Refused(code, `${via.origin} refused the connector: ${message}`, res.statusCode ?? 0));
        });
      });
      req.on('upgrade', (res: IncomingMessage, socket: Socket, head: Buffer) => {
        const tls = socket as TLSSocket;
        if (String(res.headers.upgrade ?? '').toLowerCase() !== UPGRADE_PROTOCOL) {
          socket.destroy();
          return reject(new Refused('ERR_UPSTREAM_PROTOCOL', `${via.origin} answered 101 for another protocol (${String(res.headers.upgrade)})`, 101));
        }
        const worker = parseWorker(res.headers[WORKER_HEADER]) ?? { id: 1, count: 1 };
        const id = String(res.headers[SESSION_HEADER] ?? '');
        if (!this.#running) {
          socket.destroy();
          return reject(new GatehouseError('ERR_NOT_READY', 'stopping'));
        }
        try {
          resolve({ link: this.#adopt(tls, head, worker, id, credentials.generation) });
        } catch (err) {
          socket.destroy();
          reject(err);
        }
      });
      req.end();
    });
  }

  #adopt(socket: TLSSocket, head: Buffer, worker: WorkerSlot, id: string, generation: number): Link {
    socket.setTimeout(0);
    socket.setKeepAlive(true, 30_000);
    if (head.length) socket.unshift(head);
    // node:http2 servers hand sockets whose ALPN said http/1.1 to HTTP/1 (or drop them): this one was upgraded
    (socket as { alpnProtocol: string | false | null }).alpnProtocol = 'h2';
    let session: ServerHttp2Session | undefined;
    this.#claim = (s) => (session = s);
    this.#server.emit('connection', socket);
    this.#claim = undefined;
    if (!session) {
      socket.destroy();
      throw new GatehouseError('ERR_INTERNAL', 'the HTTP/2 session did not start');
    }
    const link: Link = { socket, session, worker, id, generation, unanswered: 0, retiring: false };
    const s = session;
    s.once('connect', () => s.setLocalWindowSize(WINDOW_BYTES));
    if (!s.connecting) s.setLocalWindowSize(WINDOW_BYTES);
    let reason = 'closed by Gatehouse';
    s.on('error', (err) => (reason = messageOf(err)));
    s.on('goaway', () => (reason = 'Gatehouse is going away'));
    socket.on('error', (err) => (reason = messageOf(err)));
    this.#links.add(link);
    this.#workers = worker.count;
    this.#o.log.info('connector_connected', { name: this.#o.name, via: this.#o.via, worker: formatWorker(worker), session: id });
    let gone = false;
    const ended = (): void => {
      if (gone) return;
      gone = true;
      this.#links.delete(link);
      socket.destroy();
      if (!link.retiring || this.#running) {
        this.#o.log.info('connector_disconnected', { name: this.#o.name, worker: formatWorker(worker), session: id, reason: link.retiring ? 'rolled over to new credentials' : reason });
      }
      this.#wake?.();
    };
    s.once('close', ended);
    socket.once('close', ended);
    return link;
  }

  #heartbeat(): void {
    for (const l of this.#links) {
      if (l.unanswered >= MISSED_PINGS) {
        l.session.destroy(new Error(`no answer to ${MISSED_PINGS} pings`));
        continue;
      }
      l.unanswered++;
      try {
        l.session.ping((err) => {
          if (!err) l.unanswered = 0;
        });
      } catch {
        // too many pings outstanding: counted as unanswered
      }
    }
  }

  async #renewIfDue(): Promise<void> {
    if (!this.#running || Date.now() < this.#o.credentials.renewAt) return;
    try {
      await this.renew();
    } catch (err) {
      this.#o.log.error('connector_renewal_failed', { name: this.#o.name, error: messageOf(err), code: err instanceof GatehouseError ? err.code : undefined });
    }
  }

  /**
   * Renews the certificate now (enrolled credentials only; it happens by itself when due) and rolls the links
   * over: links with the new certificate to every worker first, then the old ones close gracefully.
   */
  async renew(): Promise<void> {
    const next = await this.#o.credentials.renew(this.#o.name, { via: this.#o.via, trust: this.#o.trust });
    this.#o.log.info('connector_certificate_renewed', { name: this.#o.name, serial: next.serial, notAfter: new Date(next.notAfter).toISOString() });
    this.#wake?.();
  }

  // ------------------------------------------------------------------------------------------ streams

  /** One `CONNECT` stream: a connection to the backend, bytes both ways, ends and resets passed on. */
  #serve(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    stream.on('error', () => undefined);
    const t = this.#o.target;
    if (headers[':method'] !== 'CONNECT') {
      stream.respond({ ':status': 405, [REASON_HEADER]: 'a connector only takes CONNECT' }, { endStream: true });
      return;
    }
    if (headers[':authority'] !== t.authority) {
      stream.respond({ ':status': 403, [REASON_HEADER]: `this connector only reaches ${t.authority}` }, { endStream: true });
      return;
    }
    const tlsOptions = this.#o.targetTls;
    const backend: Socket = t.tls
      ? tlsConnect({
          host: t.host,
          port: t.port,
          ...(isIP(t.host) ? {} : { servername: t.host }),
          ALPNProtocols: ['http/1.1'],
          ...(tlsOptions?.ca ? { ca: tlsOptions.ca } : {}),
          rejectUnauthorized: !(tlsOptions?.insecure ?? false),
        })
      : netConnect({ host: t.host, port: t.port, allowHalfOpen: true });
    const timeoutMs = this.#o.backendTimeoutMs ?? 10_000;
    const timer = setTimeout(() => backend.destroy(new Error(`no connection within ${timeoutMs} ms`)), timeoutMs);
    let open = false;
    backend.once(t.tls ? 'secureConnect' : 'connect', () => {
      clearTimeout(timer);
      if (stream.destroyed) return void backend.destroy();
      open = true;
      backend.setNoDelay(true);
      stream.respond({ ':status': 200 });
      stream.pipe(backend);
      backend.pipe(stream);
    });
    backend.on('error', (err) => {
      clearTimeout(timer);
      if (stream.destroyed) return;
      if (!open && !stream.headersSent) {
        const code = (err as NodeJS.ErrnoException).code;
        stream.respond({ ':status': 502, [REASON_HEADER]: `${code ? `${code}: ` : ''}${messageOf(err)}`.replace(/[\r\n]+/g, ' ').slice(0, 300) }, { endStream: true });
      } else stream.close(constants.NGHTTP2_CONNECT_ERROR);
    });
    backend.on('close', () => {
      clearTimeout(timer);
      // the backend went away before both directions ended: the stream is reset, not ended
      if (!stream.destroyed && open && !(backend.readableEnded && stream.writableEnded)) stream.close(constants.NGHTTP2_CONNECT_ERROR);
    });
    stream.on('close', () => backend.destroy());
  }
}
