/**
 * The connector hub, inside Gatehouse: connectors dial out to the auth host over TLS with their certificate and
 * upgrade the connection (`GET /.gatehouse/connector`, `Upgrade: gatehouse-connector/1`); the hub checks the
 * certificate, answers 101 and runs an HTTP/2 client session over the socket. It is the `Dialer` the proxy and the
 * tunnels reach connectors through: each dial is one `CONNECT` stream on the session of that name with the fewest
 * open streams (round-robin among equals), so connectors of one name share the load and take over from each other.
 *
 * With several workers a connection lands on one worker and only that worker can use it: the 101 says which
 * worker took it (`gatehouse-worker: 2/4`), and the connector opens further connections, naming the workers it
 * holds, until it has one to each (a worker it already holds declines with 409).
 *
 * It also serves enrollment (`POST /.gatehouse/connector/enroll` with a one-time token) and renewal
 * (`POST /.gatehouse/connector/renew` with the current certificate), keeps each session's presence in the store,
 * and cuts a session off at once when its certificate is revoked.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { GatehouseError, isErrorCode, messageOf, errorStatus, publicMessage, type Dialer, type ErrorCode, type Logger, type Registry } from '../core/index.ts';
import { newId, type Store, type StoreOp } from '../store/index.ts';
import { AUDIT_KIND, type AuditRecord } from '../directory/index.ts';
import type { InternalCa } from '../ca/index.ts';
import {
  CONNECTOR_NAME,
  CONNECTOR_PATH,
  ENROLL_PATH,
  HELD_HEADER,
  NAME_HEADER,
  PING_INTERVAL_MS,
  MISSED_PINGS,
  RENEW_PATH,
  SESSION_HEADER,
  TARGET_HEADER,
  UPGRADE_PROTOCOL,
  VERSION_HEADER,
  WORKER_HEADER,
  formatWorker,
  parseHeld,
  type WorkerSlot,
} from './protocol/index.ts';
import { checkConnectorCertificate } from './certificate-check.ts';
import { HubSession, StreamLost } from './hub-session.ts';
import { NoLocalSession } from './peer-relay.ts';
import {
  ENROLLMENT_KIND,
  ENROLLMENT_TOKEN_PREFIX,
  ENROLLMENT_TTL_MS,
  PRESENCE_KIND,
  type ConnectorPresence,
  type EnrollmentRecord,
} from './records.ts';

export interface ConnectorHubOptions {
  readonly store: Store;
  readonly ca: InternalCa;
  readonly log: Logger;
  readonly metrics: Registry;
  /** the names in `connectors:` of the configuration (a reload brings new ones through `configure`) */
  readonly names: readonly string[];
  /** this process among the workers; {1, 1} when it runs alone */
  readonly worker?: WorkerSlot;
  /** heartbeat (PING and presence refresh); 10 s */
  readonly pingIntervalMs?: number;
  /** this Gatehouse instance: its id and (once listening) its peer address, written into presence records */
  readonly instance?: { readonly id: string; readonly peer: () => string | undefined };
  /** reaches connectors held by other instances, for a name this process holds no session of */
  readonly relay?: Dialer;
}

/** What `GET /connectors` shows: the configured connectors with their live sessions, from the store. */
export interface ConnectorListing {
  readonly name: string;
  readonly sessions: readonly ConnectorPresence[];
}

export interface Enrollment {
  readonly name: string;
  /** the one-time token: shown once, stored only as its SHA-256 */
  readonly token: string;
  readonly expires: number;
}

const MAX_BODY = 64 * 1024;

function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

function peerAddress(socket: Duplex): string {
  const a = (socket as { remoteAddress?: string }).remoteAddress ?? '';
  return a.startsWith('::ffff:') && a.includes('.') ? a.slice(7) : a;
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return typeof v === 'string' ? v.trim() : undefined;
}

function errorBody(code: ErrorCode, message: string): string {
  return JSON.stringify({ error: { code, message } }) + '\n';
}

function rawAnswer(status: number, code: ErrorCode, message: string, requestId: string, extra: readonly string[] = []): string {
  const body = errorBody(code, message);
  let head = `HTTP/1.1 ${status} ${status === 409 ? 'Conflict' : 'Refused'}\r\n`;
  const headers = ['content-type', 'application/json', 'x-gatehouse-error', code, 'x-request-id', requestId, ...extra];
  for (let i = 0; i < headers.length; i += 2) head += `${headers[i]}: ${headers[i + 1]}\r\n`;
  return `${head}content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`;
}

function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        req.pause();
        reject(new GatehouseError('ERR_BODY_TOO_LARGE', `the request body is larger than ${MAX_BODY} bytes`));
      } else chunks.push(c);
    });
    req.on('error', reject);
    req.on('end', () => {
      try {
        const v = JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
        if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error('not an object');
        resolve(v as Record<string, unknown>);
      } catch {
        reject(new GatehouseError('ERR_BAD_REQUEST', 'the body must be a JSON object'));
      }
    });
  });
}

export class ConnectorHub implements Dialer {
  readonly #o: ConnectorHubOptions;
  readonly #worker: WorkerSlot;
  readonly #sessions = new Map<string, HubSession[]>();
  #state: 'new' | 'started' | 'closing' | 'closed' = 'new';
  #turn = 0;
  #timer: NodeJS.Timeout | undefined;
  #unsubscribe: (() => void) | undefined;
  readonly #writes = new Set<Promise<unknown>>();
  readonly #gauge;
  readonly #dials;
  #drained: (() => void) | undefined;
  #closing: Promise<void> | undefined;
  #names: readonly string[];
  #presenceFailing = false;
  #presenceRetry: NodeJS.Timeout | undefined;

  constructor(options: ConnectorHubOptions) {
    this.#o = options;
    this.#names = [...options.names];
    this.#worker = options.worker ?? { id: 1, count: 1 };
    this.#gauge = options.metrics.gauge('gatehouse_connector_sessions', 'Connector sessions held, by connector');
    this.#dials = options.metrics.counter('gatehouse_connector_dials_total', 'Streams opened to connectors, by connector and result');
  }

  // ------------------------------------------------------------------------------------------ lifecycle

  /** The connectors of a new configuration: sessions of a name no longer there end at the next heartbeat. */
  configure(names: readonly string[]): void {
    this.#names = [...names];
  }

  /** Follows revocations and starts the heartbeat. */
  start(): void {
    if (this.#state !== 'new') throw new GatehouseError('ERR_NOT_READY', `the connector hub was already ${this.#state}`);
    this.#state = 'started';
    this.#unsubscribe = this.#o.ca.onRevoked((record) => {
      for (const s of this.#all()) {
        if (s.facts.serial !== record.serial) continue;
        this.#o.log.warn('connector_revoked', { name: s.facts.name, session: s.facts.id, serial: record.serial });
        s.destroy('its certificate was revoked');
      }
    });
    this.#timer = setInterval(() => this.#beat(), this.#o.pingIntervalMs ?? PING_INTERVAL_MS).unref();
  }

  /** Takes no new sessions; the sessions held end when their open streams are done. Resolves when all have ended. */
  close(): Promise<void> {
    if (this.#state === 'closed') return Promise.resolve();
    if (this.#closing) return this.#closing;
    this.#stop();
    const open = this.#all();
    if (open.length === 0) return (this.#closing = this.#settle());
    const drained = new Promise<void>((resolve) => (this.#drained = resolve));
    for (const s of open) s.close();
    return (this.#closing = drained.then(() => this.#settle()));
  }

  /** Ends every session now (streams in flight fail). */
  destroy(): Promise<void> {
    this.#stop();
    for (const s of this.#all()) s.destroy('Gatehouse is stopping');
    return this.#settle();
  }

  #stop(): void {
    if (this.#state === 'new' || this.#state === 'started') this.#state = 'closing';
    clearInterval(this.#timer);
    clearTimeout(this.#presenceRetry);
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
  }

  async #settle(): Promise<void> {
    await Promise.allSettled([...this.#writes]);
    this.#state = 'closed';
  }

  #all(): HubSession[] {
    return [...this.#sessions.values()].flat();
  }

  // ------------------------------------------------------------------------------------------ dialling

  /**
   * A byte stream to the backend of connector `name`: through one of its sessions held by this process, else
   * (with a relay) through another instance that holds one.
   */
  async dial(name: string, options: { readonly signal?: AbortSignal } = {}): Promise<Duplex> {
    try {
      return await this.dialLocal(name, options);
    } catch (err) {
      const relay = this.#o.relay;
      if (!(err instanceof NoLocalSession) || !relay || this.#state !== 'started') throw err;
      return relay.dial(name, options);
    }
  }

  /** A byte stream through one of the sessions of `name` this process holds; `NoLocalSession` when it holds none. */
  async dialLocal(name: string, options: { readonly signal?: AbortSignal } = {}): Promise<Duplex> {
    if (this.#state !== 'started') throw new GatehouseError('ERR_UPSTREAM_UNREACHABLE', 'Gatehouse is stopping: no new streams to connectors');
    const tried = new Set<HubSession>();
    for (;;) {
      const session = this.#pick(name, tried);
      if (!session) {
        this.#dials.inc({ connector: name, result: 'no-session' });
        const where = this.#worker.count > 1 ? ` to worker ${formatWorker(this.#worker)}` : '';
        throw new NoLocalSession(tried.size ? `every session of connector ${name} went away` : `no connector named ${name} is connected${where}`);
      }
      try {
        const stream = await session.open(options.signal);
        this.#dials.inc({ connector: name, result: 'ok' });
        return stream;
      } catch (err) {
        // the session went away before the connector answered: another one of the same name may take it
        if (err instanceof StreamLost && !options.signal?.aborted) {
          tried.add(session);
          continue;
        }
        this.#dials.inc({ connector: name, result: 'failed' });
        throw err;
      }
    }
  }

  /** The available session with the fewest open streams; among equals, each in turn. */
  #pick(name: string, skip: ReadonlySet<HubSession>): HubSession | undefined {
    const list = this.#sessions.get(name);
    if (!list?.length) return undefined;
    const start = this.#turn++ % list.length;
    let best: HubSession | undefined;
    for (let i = 0; i < list.length; i++) {
      const s = list[(start + i) % list.length]!;
      if (!s.available || skip.has(s)) continue;
      if (!best || s.streams < best.streams) best = s;
    }
    return best;
  }

  // ------------------------------------------------------------------------------------------ sessions

  /** Whether the front door should hand this auth-host path to the hub. */
  owns(path: string): boolean {
    return path === CONNECTOR_PATH || path === ENROLL_PATH || path === RENEW_PATH;
  }

  /** `GET /.gatehouse/connector` with `Upgrade: gatehouse-connector/1` on the auth host: the hub takes the socket. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, requestId: string): void {
    const name = header(req, NAME_HEADER) ?? '';
    const address = peerAddress(socket);
    const refuse = (code: ErrorCode, message: string, status: number = errorStatus[code], extra: readonly string[] = []): void => {
      socket.end(rawAnswer(status, code, message, requestId, extra));
      if (status !== 409) this.#o.log.warn('connector_refused', { name: name || undefined, address, code, reason: message, id: requestId });
    };
    socket.on('error', () => socket.destroy());
    if (this.#state !== 'started') return refuse('ERR_NOT_READY', 'Gatehouse is not taking connectors now');
    const upgrade = (header(req, 'upgrade') ?? '').toLowerCase();
    if (req.method !== 'GET' || upgrade !== UPGRADE_PROTOCOL) {
      return refuse('ERR_BAD_REQUEST', `a connector connects with GET ${CONNECTOR_PATH} and Upgrade: ${UPGRADE_PROTOCOL}`);
    }
    if (!CONNECTOR_NAME.test(name) || name.length > 64) return refuse('ERR_BAD_REQUEST', `the ${NAME_HEADER} header must name the connector`);
    if (!this.#names.includes(name)) {
      return refuse('ERR_NOT_FOUND', `no connector named ${name} is configured (connectors: in the configuration file)`);
    }
    const verdict = checkConnectorCertificate(socket, name, this.#o.ca);
    if (!verdict.ok) return refuse(verdict.code, verdict.message);
    const target = header(req, TARGET_HEADER) ?? '';
    if (!/^(?:\[[0-9a-fA-F:.]+\]|[^\s:/[\]]+):\d{1,5}$/.test(target)) return refuse('ERR_BAD_REQUEST', `the ${TARGET_HEADER} header must be HOST:PORT`);
    const worker = formatWorker(this.#worker);
    if (parseHeld(header(req, HELD_HEADER)).has(this.#worker.id)) {
      return refuse('ERR_CONFLICT', `the connector already has a session with worker ${worker}`, 409, [WORKER_HEADER, worker]);
    }
    const id = newId();
    const facts = {
      id,
      name,
      address,
      version: (header(req, VERSION_HEADER) ?? 'unknown').slice(0, 64),
      target,
      serial: verdict.serial,
      notAfter: verdict.notAfter,
      since: Date.now(),
      worker: this.#worker,
    };
    const s = socket as Duplex & { setTimeout?: (ms: number) => void; setKeepAlive?: (on: boolean, ms: number) => void };
    s.setTimeout?.(0);
    s.setKeepAlive?.(true, 30_000);
    const answer =
      'HTTP/1.1 101 Switching Protocols\r\n' +
      `upgrade: ${UPGRADE_PROTOCOL}\r\nconnection: Upgrade\r\n` +
      `${WORKER_HEADER}: ${worker}\r\n${SESSION_HEADER}: ${id}\r\nx-request-id: ${requestId}\r\n\r\n`;
    if (head.length) socket.unshift(head);
    // HTTP/2 takes the socket only once the 101 is written: a write still in flight would land in its session
    socket.write(answer, (err) => {
      if (err || socket.destroyed) return;
      if (this.#state !== 'started') return void socket.destroy();
      this.#attach(socket, facts);
    });
  }

  #attach(socket: Duplex, facts: ConstructorParameters<typeof HubSession>[1]): void {
    const session = new HubSession(socket, facts, (s, reason) => this.#detach(s, reason));
    const list = this.#sessions.get(facts.name) ?? [];
    list.push(session);
    this.#sessions.set(facts.name, list);
    this.#gauge.set({ connector: facts.name }, list.length);
    this.#o.log.info('connector_connected', {
      name: facts.name,
      session: facts.id,
      address: facts.address,
      version: facts.version,
      target: facts.target,
      worker: formatWorker(facts.worker),
      serial: facts.serial,
    });
    this.#present(session);
  }

  #detach(session: HubSession, reason: string): void {
    const { name, id } = session.facts;
    const list = (this.#sessions.get(name) ?? []).filter((s) => s !== session);
    if (list.length) this.#sessions.set(name, list);
    else this.#sessions.delete(name);
    this.#gauge.set({ connector: name }, list.length);
    this.#o.log.info('connector_disconnected', { name, session: id, reason, seconds: Math.round((Date.now() - session.facts.since) / 1000) });
    this.#track(this.#o.store.delete(PRESENCE_KIND, `${name}/${id}`));
    if (this.#drained && this.#all().length === 0) this.#drained();
  }

  /** Writes (or refreshes) a session's presence record. */
  #present(session: HubSession): void {
    const f = session.facts;
    const value: ConnectorPresence = {
      name: f.name,
      session: f.id,
      address: f.address,
      version: f.version,
      target: f.target,
      serial: f.serial,
      since: f.since,
      streams: session.streams,
      worker: formatWorker(f.worker),
      ...(this.#o.instance ? { instance: this.#o.instance.id } : {}),
      ...(this.#o.instance?.peer() ? { peer: this.#o.instance.peer() } : {}),
    };
    const interval = this.#o.pingIntervalMs ?? PING_INTERVAL_MS;
    const put = this.#o.store.put(PRESENCE_KIND, `${f.name}/${f.id}`, value, { expiresAt: Date.now() + interval * MISSED_PINGS + 5_000 });
    // a session that ended meanwhile must not stay listed
    const written = put.then(() => (session.closed ? this.#o.store.delete(PRESENCE_KIND, `${f.name}/${f.id}`) : undefined));
    this.#track(
      written.then(() => {
        if (this.#presenceFailing) this.#o.log.info('connector_presence_restored', {});
        this.#presenceFailing = false;
      }),
      true,
    );
  }

  /**
   * Tracks a store write (shutdown waits for them). A failed presence write (the store is down) is tried again every
   * second, all sessions at once, so that the records are back within a second of the store.
   */
  #track(p: Promise<unknown>, presence = false): void {
    const tracked = p.catch((err: unknown) => {
      if (this.#state !== 'started') return;
      if (!presence || !this.#presenceFailing) this.#o.log.warn('connector_presence_failed', { error: messageOf(err) });
      if (!presence) return;
      this.#presenceFailing = true;
      this.#presenceRetry ??= setTimeout(() => {
        this.#presenceRetry = undefined;
        if (this.#state === 'started') for (const s of this.#all()) if (!s.closed) this.#present(s);
      }, 1000).unref();
    });
    this.#writes.add(tracked);
    void tracked.finally(() => this.#writes.delete(tracked));
  }

  /** Every heartbeat: PINGs, presence, and the end of sessions whose certificate expired or whose name left the configuration. */
  #beat(): void {
    const now = Date.now();
    const configured = new Set(this.#names);
    for (const s of this.#all()) {
      if (!configured.has(s.facts.name)) s.close();
      else if (now > s.facts.notAfter) s.destroy('its certificate expired');
      else {
        s.beat();
        this.#present(s);
      }
    }
  }

  // ------------------------------------------------------------------------------------------ enrollment and renewal

  /** A one-time enrollment token for connector `name` (root admins, through the API). */
  async createEnrollment(name: string, by: string): Promise<Enrollment> {
    if (!this.#names.includes(name)) {
      throw new GatehouseError('ERR_NOT_FOUND', `no connector named ${name} is configured (connectors: in the configuration file)`);
    }
    const token = ENROLLMENT_TOKEN_PREFIX + randomBytes(32).toString('base64url');
    const created = Date.now();
    const expires = created + ENROLLMENT_TTL_MS;
    const value: EnrollmentRecord = { name, created, createdBy: by, expires };
    const audit: AuditRecord = { id: newId(), time: created, actor: by, action: 'connector.enrollment.create', target: `connector:${name}`, after: { name, expires } };
    const ops: StoreOp[] = [
      { op: 'put', kind: ENROLLMENT_KIND, id: hashToken(token), value, options: { ifRevision: 0, expiresAt: expires } },
      { op: 'put', kind: AUDIT_KIND, id: audit.id, value: audit, options: { ifRevision: 0 } },
    ];
    await this.#o.store.transact(ops);
    this.#o.log.info('connector_enrollment_created', { name, by, expires: new Date(expires).toISOString() });
    return { name, token, expires };
  }

  /** The configured connectors and their live sessions (every worker's and instance's), from the store. */
  async list(): Promise<ConnectorListing[]> {
    const sessions: ConnectorPresence[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await this.#o.store.list<ConnectorPresence>(PRESENCE_KIND, { limit: 1000, ...(after ? { after } : {}) });
      sessions.push(...page.map((r) => r.value));
      if (page.length < 1000) break;
      after = page[page.length - 1]!.id;
    }
    return this.#names.map((name) => ({
      name,
      sessions: sessions.filter((s) => s.name === name).sort((a, b) => a.since - b.since || (a.session < b.session ? -1 : 1)),
    }));
  }

  /** `POST /.gatehouse/connector/enroll` and `…/renew` on the auth host; false for any other path. */
  async request(req: IncomingMessage, res: ServerResponse, path: string, requestId: string): Promise<boolean> {
    if (path !== ENROLL_PATH && path !== RENEW_PATH) return false;
    const fail = (code: ErrorCode, message: string): void => {
      const body = errorBody(code, message);
      res.writeHead(errorStatus[code], {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
        'cache-control': 'no-store',
        'x-gatehouse-error': code,
        'x-request-id': requestId,
      });
      res.end(body);
    };
    if (req.method !== 'POST') {
      res.setHeader('allow', 'POST');
      fail('ERR_METHOD_NOT_ALLOWED', `${path} takes POST`);
      return true;
    }
    try {
      if (this.#state !== 'started') throw new GatehouseError('ERR_NOT_READY', 'Gatehouse is not taking connectors now');
      const body = await readJson(req);
      const name = body.name;
      const csr = body.csr;
      if (typeof name !== 'string' || !CONNECTOR_NAME.test(name) || name.length > 64) throw new GatehouseError('ERR_BAD_REQUEST', 'name must be a connector name');
      if (typeof csr !== 'string' || !csr.includes('-----BEGIN CERTIFICATE REQUEST-----')) throw new GatehouseError('ERR_BAD_REQUEST', 'csr must be a PEM certificate request');
      if (!this.#names.includes(name)) throw new GatehouseError('ERR_NOT_FOUND', `no connector named ${name} is configured`);
      let issuedBy: string;
      if (path === ENROLL_PATH) {
        if (typeof body.token !== 'string' || body.token.length > 200) throw new GatehouseError('ERR_BAD_REQUEST', 'token must be the enrollment token');
        await this.#takeToken(name, body.token);
        issuedBy = 'enrollment';
      } else {
        const verdict = checkConnectorCertificate(req.socket, name, this.#o.ca);
        if (!verdict.ok) throw new GatehouseError(verdict.code, `renewal needs the connector's current certificate: ${verdict.message}`);
        issuedBy = `connector:${name}`;
      }
      const issued = await this.#o.ca.issue({ connector: name, csrPem: csr, issuedBy });
      this.#o.log.info(path === ENROLL_PATH ? 'connector_enrolled' : 'connector_renewed', { name, serial: issued.record.serial, address: peerAddress(req.socket) });
      const answer = JSON.stringify({
        name,
        serial: issued.record.serial,
        notAfter: new Date(issued.record.notAfter).toISOString(),
        certificate: issued.certPem + issued.chainPem,
      });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(answer), 'cache-control': 'no-store', 'x-request-id': requestId });
      res.end(answer);
    } catch (err) {
      const code: ErrorCode = err instanceof GatehouseError ? err.code : 'ERR_INTERNAL';
      const message = err instanceof GatehouseError ? publicMessage(err) : 'Gatehouse could not handle this request';
      if (code === 'ERR_INTERNAL') this.#o.log.error('connector_request_failed', { id: requestId, path, error: messageOf(err) });
      else this.#o.log.warn('connector_refused', { path, code, reason: message, address: peerAddress(req.socket), id: requestId });
      if (!res.headersSent) fail(isErrorCode(code) ? code : 'ERR_INTERNAL', message);
      else res.destroy();
    }
    return true;
  }

  /** Takes a one-time token: whoever deletes the record first has it; a token for another name is spent all the same. */
  async #takeToken(name: string, token: string): Promise<void> {
    const invalid = () => new GatehouseError('ERR_TOKEN_INVALID', 'the enrollment token is unknown, used, expired or for another connector');
    const id = hashToken(token);
    const found = await this.#o.store.get<EnrollmentRecord>(ENROLLMENT_KIND, id);
    if (!found) throw invalid();
    const taken = await this.#o.store.delete(ENROLLMENT_KIND, id, { ifRevision: found.revision }).catch((err: unknown) => {
      if (err instanceof GatehouseError && err.code === 'ERR_STORE_CONFLICT') return false;
      throw err;
    });
    if (!taken || found.value.name !== name) throw invalid();
  }
}
