/**
 * The relay between Gatehouse instances. A connector keeps its session with one instance (the one its connection
 * landed on); a request for it that arrives at another instance is relayed: that instance finds, in the presence
 * records every instance keeps (kind `connector`, mirrored in memory), which instances hold a session of that name,
 * and opens a stream to one of them over mutual TLS; the instance at the other end dials its own session and joins
 * the two streams. Its streams are bytes both ways, exactly as a local dial's, so HTTP, WebSockets and TCP tunnels
 * go through unchanged.
 *
 * - The wire: HTTP/2 over TLS (ALPN `h2`) to the peer listener (`server.peer`), one pooled session per peer
 *   instance, each relay one `CONNECT` stream with `:authority` = `NAME.connector.invalid:443`. The peer answers
 *   `200` and then carries bytes, or `502` with `gatehouse-relay-reason`: `no-session` (it holds no session of that
 *   name any more: the next instance is tried) or `backend` (its connector could not reach the backend: final).
 * - Identity: each instance gets a certificate from the internal CA at start (kind `instance`, EKU serverAuth and
 *   clientAuth, DNS name `ID.instance.gatehouse.invalid`, two days, renewed by itself), its key never stored. Both
 *   sides require the other's certificate to chain to the internal CA and to have a CA record of kind `instance`,
 *   not revoked; the dialling side also checks the name is the instance the presence record named.
 * - Failure: an instance that cannot be reached (a refused or failed connection) is passed over for 5 s (twice as long
 *   at each failure in a row, up to a minute) while another one can be tried; its presence records expire by themselves (35 s) if it died. Streams in flight through an
 *   instance that dies fail (the request answers 502). A relay never relays again: the far side dials locally only.
 */
import {
  connect as http2Connect,
  constants,
  createSecureServer,
  type ClientHttp2Session,
  type ClientHttp2Stream,
  type Http2SecureServer,
  type IncomingHttpHeaders,
  type ServerHttp2Session,
  type ServerHttp2Stream,
} from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { checkServerIdentity, type PeerCertificate, type TLSSocket } from 'node:tls';
import { GatehouseError, formatListen, messageOf, type ListenAddress, type Logger, type Registry } from '../core/index.ts';
import { canonicalSerialFromNode } from '../pki/index.ts';
import { instanceHost, type InstanceCertificate, type InternalCa } from '../ca/index.ts';
import { WINDOW_BYTES } from './protocol/index.ts';
import type { ConnectorPresence } from './records.ts';

/** Answer header of a refused relay: `no-session` (try another instance) or `backend` (the connector failed). */
export const RELAY_REASON_HEADER = 'gatehouse-relay-reason';
const MESSAGE_HEADER = 'gatehouse-relay-message';
/** How long an instance that could not be reached is passed over: doubled for each failure in a row, up to the most. */
const COOLDOWN_MS = 5_000;
const MAX_COOLDOWN_MS = 60_000;
/** How long opening a connection to a peer may take before the next instance is tried. */
const CONNECT_TIMEOUT_MS = 3_000;
/** PINGs on pooled sessions; one that misses this many in a row is dropped. */
const PING_INTERVAL_MS = 10_000;
const MISSED_PINGS = 3;
/** How often the instance certificate is checked for renewal (and issued, when the CA came later). */
const RENEW_CHECK_MS = 60_000;

/** A local dial found no session of that name here (as opposed to a connector that could not reach its backend). */
export class NoLocalSession extends GatehouseError {
  constructor(message: string) {
    super('ERR_UPSTREAM_UNREACHABLE', message);
  }
}

export interface PeerRelayOptions {
  /** this instance's id (presence records name it) */
  readonly instance: string;
  readonly ca: InternalCa;
  /**
   * The presence records of every instance, from memory, with those past their expiry marked `expired`: while the
   * store is down nobody can refresh theirs, so a relay tries them after the live ones rather than not at all.
   */
  readonly presence: () => Iterable<{ readonly value: ConnectorPresence; readonly expired?: boolean }>;
  /** a stream through a session this process holds; rejects with `NoLocalSession` when it holds none of that name */
  readonly dialLocal: (name: string, options: { readonly signal?: AbortSignal }) => Promise<Duplex>;
  readonly log: Logger;
  readonly metrics: Registry;
}

interface Peer {
  readonly instance: string;
  readonly url: string;
  session: ClientHttp2Session | undefined;
  opening: Promise<ClientHttp2Session> | undefined;
  unanswered: number;
}

/** A refused relay stream: `final` when the connector itself failed (no use trying another instance). */
class RelayRefused extends GatehouseError {
  constructor(
    message: string,
    readonly final: boolean,
  ) {
    super('ERR_UPSTREAM_UNREACHABLE', message);
  }
}

export class PeerRelay {
  readonly #o: PeerRelayOptions;
  readonly #server: Http2SecureServer;
  readonly #peers = new Map<string, Peer>();
  /** instances that could not be reached: passed over until `until` */
  readonly #cooling = new Map<string, { until: number; failures: number }>();
  readonly #inbound = new Set<ServerHttp2Session>();
  readonly #relays;
  #credentials: InstanceCertificate | undefined;
  /** the serial of the CA that issued `#credentials`, and its bundle (what peers' certificates must chain to) */
  #issuedUnder: string | undefined;
  #caPem = '';
  #issuing: Promise<void> | undefined;
  #advertise: string | undefined;
  #turn = 0;
  #state: 'new' | 'listening' | 'closing' | 'closed' = 'new';
  #timer: NodeJS.Timeout | undefined;
  #renewTimer: NodeJS.Timeout | undefined;
  #unsubscribe: (() => void) | undefined;

  constructor(options: PeerRelayOptions) {
    this.#o = options;
    this.#relays = options.metrics.counter('gatehouse_peer_relays_total', 'Streams relayed between instances, by direction and result');
    // the context (certificate, CA) comes with the instance certificate: until then handshakes fail
    this.#server = createSecureServer({
      allowHTTP1: false,
      requestCert: true,
      rejectUnauthorized: true,
      settings: { initialWindowSize: WINDOW_BYTES, enablePush: false },
    });
    this.#server.on('session', (session: ServerHttp2Session) => this.#accept(session));
    this.#server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => this.#relayIn(stream, headers));
    this.#server.on('tlsClientError', () => undefined);
    this.#server.on('sessionError', () => undefined);
  }

  /** `https://HOST:PORT` the other instances dial, once listening. */
  get advertise(): string | undefined {
    return this.#advertise;
  }

  get instance(): string {
    return this.#o.instance;
  }

  // ------------------------------------------------------------------------------------------ lifecycle

  /** Gets the instance certificate and listens; `advertise` defaults to the address it listens on. */
  async listen(at: ListenAddress, advertise?: string): Promise<string> {
    if (this.#state !== 'new') throw new GatehouseError('ERR_NOT_READY', `the peer relay was already ${this.#state}`);
    await this.refresh();
    const address = await new Promise<AddressInfo>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen({ host: at.host, port: at.port }, () => {
        this.#server.off('error', reject);
        resolve(this.#server.address() as AddressInfo);
      });
    });
    this.#state = 'listening';
    this.#advertise = advertise?.replace(/\/$/, '') ?? `https://${formatListen({ host: at.host, port: address.port })}`;
    this.#unsubscribe = this.#o.ca.onRevoked((record) => {
      if (record.kind !== 'instance') return;
      if (record.serial === this.#credentials?.serial) void this.refresh(true);
      for (const s of this.#inbound) if (peerSerial(s.socket as TLSSocket) === record.serial) s.destroy();
      for (const p of this.#peers.values()) if (p.session && peerSerial(p.session.socket as TLSSocket) === record.serial) this.#drop(p);
    });
    this.#timer = setInterval(() => this.#beat(), PING_INTERVAL_MS).unref();
    this.#renewTimer = setInterval(() => {
      const c = this.#credentials;
      if (!c || Date.now() >= c.renewAt) void this.refresh();
    }, RENEW_CHECK_MS).unref();
    this.#o.log.info('peer_listening', { instance: this.#o.instance, listen: formatListen({ host: address.address, port: address.port }), advertise: this.#advertise });
    return this.#advertise;
  }

  /**
   * Issues this instance's certificate (again with `force`, or when it is due or the CA changed) and uses it for
   * new connections both ways. Without an active internal CA the relay cannot work yet: logged, tried again later.
   */
  async refresh(force = false): Promise<void> {
    if (this.#issuing) return this.#issuing;
    const ca = this.#o.ca;
    if (ca.info()?.state !== 'active') {
      if (this.#credentials || this.#state === 'new') {
        this.#o.log.warn('peer_relay_unavailable', { message: 'the relay between instances needs the internal CA (gatehouse ca init): requests for connectors held by other instances fail until then' });
      }
      this.#credentials = undefined;
      return;
    }
    const current = this.#credentials;
    const caSerial = ca.info()?.serial;
    if (!force && current && Date.now() < current.renewAt && this.#issuedUnder === caSerial) return;
    this.#issuing = (async () => {
      try {
        const issued = await ca.instanceCertificate(this.#o.instance);
        const caPem = ca.caBundlePem();
        this.#credentials = issued;
        this.#issuedUnder = caSerial;
        this.#caPem = caPem;
        // pooled sessions keep the old certificate until they end; new connections both ways use this one
        this.#server.setSecureContext({ cert: issued.certPem, key: issued.keyPem, ca: caPem, minVersion: 'TLSv1.3' });
      } catch (err) {
        this.#o.log.warn('peer_certificate_failed', { instance: this.#o.instance, error: messageOf(err) });
      } finally {
        this.#issuing = undefined;
      }
    })();
    return this.#issuing;
  }

  /** Stops taking relays; those in flight go on until they end (or `destroy`). */
  async close(): Promise<void> {
    if (this.#state === 'closed') return;
    this.#stop();
    for (const p of this.#peers.values()) p.session?.close();
    for (const s of this.#inbound) s.close();
    await new Promise<void>((resolve) => (this.#server.listening ? this.#server.close(() => resolve()) : resolve()));
    this.#state = 'closed';
  }

  /** Ends every relay now. */
  async destroy(): Promise<void> {
    this.#stop();
    for (const p of this.#peers.values()) this.#drop(p);
    for (const s of this.#inbound) s.destroy();
    await new Promise<void>((resolve) => (this.#server.listening ? this.#server.close(() => resolve()) : resolve()));
    this.#state = 'closed';
  }

  #stop(): void {
    if (this.#state !== 'closed') this.#state = 'closing';
    clearInterval(this.#timer);
    clearInterval(this.#renewTimer);
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
  }

  // ------------------------------------------------------------------------------------------ dialling out

  /**
   * A stream to the backend of connector `name` through another instance that holds a session of it. Rejects with
   * `ERR_UPSTREAM_UNREACHABLE` when none does, or none can be reached, or the connector could not reach its backend.
   */
  async dial(name: string, options: { readonly signal?: AbortSignal } = {}): Promise<Duplex> {
    const candidates = this.#candidates(name);
    if (candidates.length === 0) {
      this.#relays.inc({ direction: 'out', result: 'no-session' });
      throw new NoLocalSession(`no connector named ${name} is connected to this or any other instance`);
    }
    if (this.#state !== 'listening' || !this.#credentials) {
      this.#relays.inc({ direction: 'out', result: 'unavailable' });
      throw new GatehouseError('ERR_UPSTREAM_UNREACHABLE', `connector ${name} is connected to another instance, and this one cannot relay to it (no peer certificate: is there an internal CA?)`);
    }
    const failures: string[] = [];
    for (const peer of candidates) {
      if (options.signal?.aborted) throw options.signal.reason as Error;
      try {
        const stream = await this.#open(peer, name, options.signal);
        this.#relays.inc({ direction: 'out', result: 'ok' });
        return stream;
      } catch (err) {
        if (options.signal?.aborted) throw err;
        if (err instanceof RelayRefused && err.final) {
          this.#relays.inc({ direction: 'out', result: 'failed' });
          throw err;
        }
        if (!(err instanceof RelayRefused)) {
          const failures = (this.#cooling.get(peer.instance)?.failures ?? 0) + 1;
          this.#cooling.set(peer.instance, { until: Date.now() + Math.min(COOLDOWN_MS * 2 ** (failures - 1), MAX_COOLDOWN_MS), failures });
        }
        failures.push(`${peer.url}: ${messageOf(err)}`);
      }
    }
    this.#relays.inc({ direction: 'out', result: 'failed' });
    throw new GatehouseError('ERR_UPSTREAM_UNREACHABLE', `connector ${name} is connected to other instances, and none of them could be reached (${failures.join('; ')})`);
  }

  /**
   * The instances holding a session of `name`, other than this one, in turn: those with a live presence record and
   * not cooling down first, then those cooling down, then those whose records expired (the store is down).
   */
  #candidates(name: string): Peer[] {
    const urls = new Map<string, { url: string; live: boolean }>();
    for (const { value: p, expired } of this.#o.presence()) {
      if (p.name !== name || !p.instance || !p.peer || p.instance === this.#o.instance) continue;
      const held = urls.get(p.instance);
      if (!held || (!held.live && !expired)) urls.set(p.instance, { url: p.peer, live: !expired });
    }
    const now = Date.now();
    const all = [...urls].map(([instance, { url, live }]) => {
      let peer = this.#peers.get(instance);
      if (!peer || peer.url !== url) {
        if (peer) this.#drop(peer);
        peer = { instance, url, session: undefined, opening: undefined, unanswered: 0 };
        this.#peers.set(instance, peer);
      }
      return { peer, live };
    });
    const start = all.length ? this.#turn++ % all.length : 0;
    const rotated = [...all.slice(start), ...all.slice(0, start)];
    const rank = ({ peer, live }: { peer: Peer; live: boolean }) => (!live ? 2 : (this.#cooling.get(peer.instance)?.until ?? 0) > now ? 1 : 0);
    return rotated.sort((a, b) => rank(a) - rank(b)).map((c) => c.peer);
  }

  async #open(peer: Peer, name: string, signal: AbortSignal | undefined): Promise<ClientHttp2Stream> {
    const session = await this.#session(peer, signal);
    return new Promise((resolve, reject) => {
      let stream: ClientHttp2Stream;
      try {
        stream = session.request({ ':method': 'CONNECT', ':authority': `${name}.connector.invalid:443` });
      } catch (err) {
        this.#drop(peer);
        return reject(new GatehouseError('ERR_UPSTREAM_UNREACHABLE', `instance ${peer.instance} cannot take a stream: ${messageOf(err)}`, { cause: err }));
      }
      let settled = false;
      const settle = () => {
        if (settled) return false;
        settled = true;
        signal?.removeEventListener('abort', onAbort);
        return true;
      };
      const onAbort = () => {
        if (!settle()) return;
        stream.close(constants.NGHTTP2_CANCEL);
        reject(signal!.reason as Error);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      stream.on('error', (err) => {
        if (settle()) reject(new GatehouseError('ERR_UPSTREAM_UNREACHABLE', `the relay stream to instance ${peer.instance} failed: ${messageOf(err)}`, { cause: err }));
      });
      stream.once('close', () => {
        if (settle()) reject(new GatehouseError('ERR_UPSTREAM_UNREACHABLE', `instance ${peer.instance} closed the relay stream before the connector answered`));
      });
      stream.once('response', (headers) => {
        if (!settle()) return;
        const status = Number(headers[':status']);
        if (status === 200) return resolve(stream);
        stream.close(constants.NGHTTP2_CANCEL);
        const reason = headers[RELAY_REASON_HEADER];
        const message = decodeHeader(headers[MESSAGE_HEADER]) ?? `instance ${peer.instance} refused the relay (status ${status})`;
        reject(new RelayRefused(message, reason === 'backend'));
      });
    });
  }

  /** The pooled session to `peer`, opened when there is none (one opening shared by every dial that waits for it). */
  #session(peer: Peer, signal: AbortSignal | undefined): Promise<ClientHttp2Session> {
    const s = peer.session;
    if (s && !s.closed && !s.destroyed) return Promise.resolve(s);
    peer.opening ??= this.#connect(peer).finally(() => (peer.opening = undefined));
    if (!signal) return peer.opening;
    const opening = peer.opening;
    return new Promise((resolve, reject) => {
      const onAbort = () => reject(signal.reason as Error);
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      opening.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
    });
  }

  #connect(peer: Peer): Promise<ClientHttp2Session> {
    const credentials = this.#credentials!;
    const expected = instanceHost(peer.instance);
    return new Promise((resolve, reject) => {
      const session = http2Connect(peer.url, {
        ca: this.#caPem,
        cert: credentials.certPem,
        key: credentials.keyPem,
        servername: expected,
        ALPNProtocols: ['h2'],
        minVersion: 'TLSv1.3',
        settings: { initialWindowSize: WINDOW_BYTES, enablePush: false },
        checkServerIdentity: (_host: string, cert: PeerCertificate) => checkServerIdentity(expected, cert) ?? this.#checkPeer(cert.serialNumber, peer.instance),
      });
      const timer = setTimeout(() => fail(new Error(`no connection within ${CONNECT_TIMEOUT_MS} ms`)), CONNECT_TIMEOUT_MS);
      const fail = (err: Error) => {
        clearTimeout(timer);
        session.destroy();
        reject(new GatehouseError('ERR_UPSTREAM_UNREACHABLE', `instance ${peer.instance} at ${peer.url} cannot be reached: ${messageOf(err)}`, { cause: err }));
      };
      session.once('error', fail);
      session.once('connect', () => {
        clearTimeout(timer);
        session.off('error', fail);
        session.on('error', () => undefined);
        session.setLocalWindowSize(WINDOW_BYTES);
        session.once('close', () => {
          if (peer.session === session) peer.session = undefined;
        });
        session.on('goaway', () => {
          if (peer.session === session) peer.session = undefined;
        });
        peer.session = session;
        peer.unanswered = 0;
        this.#cooling.delete(peer.instance);
        resolve(session);
      });
    });
  }

  #drop(peer: Peer): void {
    peer.session?.destroy();
    peer.session = undefined;
  }

  /** PINGs every pooled session; drops one whose last pings went unanswered; forgets old failures. */
  #beat(): void {
    const now = Date.now();
    for (const [instance, c] of this.#cooling) if (c.until < now - MAX_COOLDOWN_MS) this.#cooling.delete(instance);
    for (const [instance, peer] of this.#peers) {
      const s = peer.session;
      if (!s) {
        if (!peer.opening) this.#peers.delete(instance);
        continue;
      }
      if (peer.unanswered >= MISSED_PINGS) {
        this.#o.log.warn('peer_unresponsive', { instance, url: peer.url });
        this.#drop(peer);
        continue;
      }
      peer.unanswered++;
      try {
        s.ping((err) => {
          if (!err) peer.unanswered = 0;
        });
      } catch {
        // too many pings outstanding: counted as unanswered
      }
    }
  }

  /** An Error when `serial` is not a live instance certificate of this CA (for `instance`, when given). */
  #checkPeer(serialNumber: string, instance?: string): Error | undefined {
    let serial: string;
    try {
      serial = canonicalSerialFromNode(serialNumber);
    } catch (err) {
      return err as Error;
    }
    const record = this.#o.ca.recordOf(serial);
    if (!record) return new Error(`the internal CA has no record of certificate ${serial}`);
    if (record.revoked) return new Error(`certificate ${serial} was revoked`);
    if (record.kind !== 'instance') return new Error(`certificate ${serial} is a ${record.kind} certificate, not an instance certificate`);
    if (instance !== undefined && record.instance !== instance) return new Error(`certificate ${serial} is instance ${record.instance}'s, not ${instance}'s`);
    return undefined;
  }

  // ------------------------------------------------------------------------------------------ relaying in

  #accept(session: ServerHttp2Session): void {
    const socket = session.socket as TLSSocket;
    const peer = socket.getPeerX509Certificate?.();
    const refused = peer ? this.#checkPeer(peer.serialNumber) : new Error('no client certificate');
    if (refused || this.#state !== 'listening') {
      this.#o.log.warn('peer_refused', { address: socket.remoteAddress, reason: refused ? refused.message : 'closing' });
      session.destroy();
      return;
    }
    session.on('error', () => undefined);
    session.setLocalWindowSize(WINDOW_BYTES);
    this.#inbound.add(session);
    session.once('close', () => this.#inbound.delete(session));
  }

  #relayIn(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    stream.on('error', () => undefined);
    const refuse = (status: number, reason: 'no-session' | 'backend' | 'refused', message: string) => {
      this.#relays.inc({ direction: 'in', result: reason });
      if (stream.destroyed || stream.headersSent) return void stream.destroy();
      stream.respond({ ':status': status, [RELAY_REASON_HEADER]: reason, [MESSAGE_HEADER]: encodeURIComponent(message) }, { endStream: true });
    };
    if (!this.#inbound.has(stream.session as ServerHttp2Session)) return refuse(403, 'refused', 'this peer is not an instance of this Gatehouse');
    const name = /^([a-z0-9-]{1,64})\.connector\.invalid(?::\d+)?$/.exec(String(headers[':authority'] ?? ''))?.[1];
    if (headers[':method'] !== 'CONNECT' || !name) return refuse(400, 'refused', 'a relay is CONNECT NAME.connector.invalid:443');
    const abort = new AbortController();
    stream.once('close', () => abort.abort(new Error('the relaying instance went away')));
    this.#o.dialLocal(name, { signal: abort.signal }).then(
      (upstream) => {
        if (stream.destroyed || abort.signal.aborted) return void upstream.destroy();
        this.#relays.inc({ direction: 'in', result: 'ok' });
        stream.respond({ ':status': 200 });
        splice(stream, upstream);
      },
      (err: unknown) => refuse(502, err instanceof NoLocalSession ? 'no-session' : 'backend', messageOf(err)),
    );
  }
}

/** The canonical serial of the certificate a TLS socket's peer presented, or undefined. */
function peerSerial(socket: TLSSocket): string | undefined {
  try {
    const cert = socket.getPeerX509Certificate?.();
    return cert ? canonicalSerialFromNode(cert.serialNumber) : undefined;
  } catch {
    return undefined;
  }
}

function decodeHeader(value: string | string[] | undefined): string | undefined {
  if (typeof value !== 'string') return undefined;
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

/** Joins two byte streams: each end is the other's end (a half-close), a reset or failure of either destroys both. */
function splice(a: Duplex, b: Duplex): void {
  a.pipe(b);
  b.pipe(a);
  const broken = (side: Duplex) => !(side.readableEnded && side.writableFinished);
  a.on('error', () => b.destroy());
  b.on('error', () => a.destroy());
  a.once('close', () => {
    if (broken(a)) b.destroy();
  });
  b.once('close', () => {
    if (broken(b)) a.destroy();
  });
}
