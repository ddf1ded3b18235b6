/**
 * One Gatehouse process: its listeners, its current state and the swap on reload. In a cluster every worker
 * runs one of these and the primary coordinates reloads; with one worker it runs alone.
 */
import cluster from 'node:cluster';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { formatListen, messageOf, Registry, type ListenAddress, type Logger } from '../core/index.ts';
import { formatProblems, loadConfig, locateProblems, type Config } from '../config/index.ts';
import { newId, openStore, StoreMirror, type Store } from '../store/index.ts';
import { AssertionSigner, Keyring, SessionBook } from '../authn/index.ts';
import { FrontDoor, UpstreamPool, forwardProxy, redirectToHttps } from '../proxy/index.ts';
import { DIRECTORY_MIRROR_KINDS, Directory } from '../directory/index.ts';
import { CA_MIRROR_KINDS, InternalCa } from '../ca/index.ts';
import { TUNNEL_MIRROR_KINDS, TunnelRegistry } from '../tunnel/index.ts';
import { ConnectorHub, PeerRelay, PRESENCE_KIND, type ConnectorPresence } from '../connector/index.ts';
import { createSecureContext, type SecureContext } from 'node:tls';
import { buildState, withPublicPort, StateBuildError, type AppState, type Services } from './state.ts';

export interface GatehouseOptions {
  readonly configFile: string;
  readonly log: Logger;
  /** shared by all workers so TLS sessions resume on any of them */
  readonly ticketKeys?: Buffer;
}

export type ReloadResult = { ok: true; generation: number } | { ok: false; problems: string };

export interface Addresses {
  https: string;
  http?: string;
  forwardProxy?: string;
}

function listen(server: HttpServer | HttpsServer, at: ListenAddress): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: at.host, port: at.port }, () => {
      server.off('error', reject);
      resolve(server.address() as AddressInfo);
    });
  });
}

function closeServer(server: HttpServer | HttpsServer | undefined): Promise<void> {
  if (!server?.listening) return Promise.resolve();
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeIdleConnections();
  });
}

/** Loads the file and builds its state; the problems are formatted as `FILE:LINE:COL: message` lines. */
export async function loadState(
  file: string,
  options: { publicPort?: number; log?: Logger; startRevocation?: boolean; services?: Services; config?: Readonly<Config> } = {},
): Promise<{ ok: true; state: AppState } | { ok: false; problems: string }> {
  let config = options.config;
  if (!config) {
    const loaded = await loadConfig(file);
    if (!loaded.ok) return { ok: false, problems: formatProblems(loaded.problems) };
    config = loaded.config;
  }
  try {
    return { ok: true, state: await buildState(config, options) };
  } catch (err) {
    if (err instanceof StateBuildError) return { ok: false, problems: formatProblems(await locateProblems(file, err.problems)) };
    return { ok: false, problems: `${file}: ${messageOf(err)}` };
  }
}

export class Gatehouse {
  readonly metrics: Registry;
  readonly #o: GatehouseOptions;
  readonly #pool = new UpstreamPool();
  #state: AppState;
  #store: Store;
  #https: HttpsServer;
  #http: HttpServer | undefined;
  #forward: HttpServer | undefined;
  #frontDoor: FrontDoor;
  #addresses: Addresses = { https: '' };
  #draining = false;
  readonly #services: Services;
  readonly #mirror: StoreMirror;
  /** the relay to and from the other instances (`server.peer`) */
  readonly #relay: PeerRelay | undefined;
  /** server certificates from the internal CA by the name they cover, for the clients' SNI */
  readonly #sniContexts = new Map<string, { readonly ctx: SecureContext; readonly renewAt: number; readonly state: AppState }>();
  readonly #unsubscribe: Array<() => void> = [];
  #renewTimer: NodeJS.Timeout | undefined;

  private constructor(options: GatehouseOptions, state: AppState, store: Store, services: Services, mirror: StoreMirror, metrics: Registry, relay: PeerRelay | undefined) {
    this.metrics = metrics;
    this.#o = options;
    this.#state = state;
    this.#store = store;
    this.#services = services;
    this.#mirror = mirror;
    this.#relay = relay;
    const getState = () => this.#state.proxy;
    this.#frontDoor = new FrontDoor({
      state: getState,
      pool: this.#pool,
      log: options.log,
      metrics: this.metrics,
      acceptTls: (socket: Duplex) => this.#https.emit('connection', socket),
      tunnels: services.tunnels,
      dialer: services.connectors,
      connectors: services.connectors,
    });
    this.#https = createHttpsServer(
      {
        ...this.#secureOptions(state),
        requestCert: state.tls.clientCas.length > 0,
        rejectUnauthorized: false,
        ALPNProtocols: ['http/1.1'],
        sessionIdContext: 'gatehouse',
        requireHostHeader: false,
        headersTimeout: 20_000,
        requestTimeout: 0,
        keepAliveTimeout: 65_000,
        maxHeaderSize: 16_384,
        ...(options.ticketKeys ? { ticketKeys: options.ticketKeys } : {}),
        SNICallback: (name: string, done: (err: Error | null, ctx?: SecureContext) => void) => this.#sni(name, done),
      },
      this.#frontDoor.handleRequest,
    );
    this.#unsubscribe.push(
      services.ca.onRevoked((record) => {
        const dropped = this.#frontDoor.dropCertificate(record.serial);
        options.log.info('certificate_revoked', { serial: record.serial, user: record.user, droppedConnections: dropped });
      }),
      services.ca.onCaChanged(() => {
        this.#sniContexts.clear();
        void this.reload();
        void this.#relay?.refresh();
      }),
    );
    this.#renewTimer = setInterval(() => {
      const at = this.#state.tls.renewAt;
      if (at !== undefined && Date.now() >= at) void this.reload();
    }, 60_000).unref();
    this.#https.on('upgrade', this.#frontDoor.handleUpgrade);
    this.#https.on('connect', this.#frontDoor.handleConnect);
    this.#https.on('clientError', this.#frontDoor.handleClientError);
    const connections = this.metrics.counter('gatehouse_tls_connections_total', 'TLS connections accepted, by worker and session resumption');
    const worker = String(cluster.worker?.id ?? 0);
    this.#https.on('secureConnection', (socket) => {
      connections.inc({ worker, resumed: socket.isSessionReused() ? 'true' : 'false' });
      const parent = (socket as unknown as { _parent?: object | null })._parent;
      if (parent) FrontDoor.noteTunnelled(socket, parent);
    });
    this.#https.on('tlsClientError', () => {
      // a failed handshake (scanner, wrong protocol): nothing to answer, nothing to log per connection
    });
  }

  /** Reads the configuration, opens the store and starts listening. */
  static async start(options: GatehouseOptions): Promise<Gatehouse> {
    const invalid = (problems: string) => new StateBuildError([{ path: [], message: `the configuration is not valid:\n${problems}` }]);
    const read = await loadConfig(options.configFile);
    if (!read.ok) throw invalid(formatProblems(read.problems));
    const config = read.config;
    const store = await openStore(config.store, '.');
    let mirror: StoreMirror | undefined;
    let signer: AssertionSigner | undefined;
    let ca: InternalCa | undefined;
    let tunnels: TunnelRegistry | undefined;
    let connectors: ConnectorHub | undefined;
    let relay: PeerRelay | undefined;
    // one id for this instance: its workers share the one the primary made
    const instance = (cluster.isWorker && process.env.GATEHOUSE_INSTANCE) || newId();
    try {
      const keyring = await Keyring.open(store, config.identity.secretsKey);
      const mirrorKinds = ['session', 'token', ...DIRECTORY_MIRROR_KINDS, ...CA_MIRROR_KINDS, ...TUNNEL_MIRROR_KINDS, PRESENCE_KIND];
      mirror = new StoreMirror(store, mirrorKinds, {
        onResync: (resync) => options.log.warn('store_resync', { reason: resync.reason, fromRevision: resync.fromRevision }),
        onReloadFailed: (err) => options.log.warn('store_resync_failed', { error: messageOf(err) }),
      });
      await mirror.start();
      ca = new InternalCa({ store, keyring, secretsKeyConfigured: config.identity.secretsKey !== undefined, mirror, log: options.log });
      await ca.start();
      const sessions = new SessionBook(store, mirror, keyring, { ttlMs: config.identity.session.ttl, idleMs: config.identity.session.idle });
      signer = new AssertionSigner({ store, keyring, log: options.log });
      await signer.start();
      const authority = ca;
      const directory = new Directory({
        store,
        mirror,
        sessions,
        settings: { admins: config.identity.admins, roles: config.roles },
        revokeCertificates: async (email, by) => (authority.info()?.state === 'active' ? (await authority.revokeAllOf(email, by, 'user disabled')).length : 0),
      });
      await directory.seed();
      const metrics = new Registry();
      tunnels = new TunnelRegistry({ store, mirror, metrics, log: options.log });
      tunnels.start();
      // with workers, a connector's connection lands on one of them: the hub tells it which, so it can reach all
      const workers = Number(process.env.GATEHOUSE_WORKERS) || 1;
      const presence = mirror;
      if (config.server.peer) {
        relay = new PeerRelay({
          instance,
          ca,
          presence: () => presence.values<ConnectorPresence>(PRESENCE_KIND, { expired: true }),
          dialLocal: (name, o) => connectors!.dialLocal(name, o),
          log: options.log,
          metrics,
        });
      }
      const peer = relay;
      connectors = new ConnectorHub({
        store,
        ca,
        log: options.log,
        metrics,
        names: config.connectors.map((c) => c.name),
        worker: cluster.worker ? { id: cluster.worker.id, count: workers } : { id: 1, count: 1 },
        instance: { id: instance, peer: () => peer?.advertise },
        ...(relay ? { relay } : {}),
      });
      connectors.start();
      const services: Services = { sessions, signer, directory, ca, oidcClients: new Map(), tunnels, connectors };
      const loaded = await loadState(options.configFile, { log: options.log, services, config });
      if (!loaded.ok) throw invalid(loaded.problems);
      const g = new Gatehouse(options, loaded.state, store, services, mirror, metrics, relay);
      try {
        if (relay && config.server.peer) await relay.listen(config.server.peer.listen, config.server.peer.advertise);
        await g.#listen();
      } catch (err) {
        await g.destroy();
        throw err;
      }
      return g;
    } catch (err) {
      await tunnels?.destroy();
      await relay?.destroy();
      await connectors?.destroy();
      ca?.close();
      mirror?.close();
      signer?.destroy();
      await store.close().catch(() => undefined);
      throw err;
    }
  }

  get state(): AppState {
    return this.#state;
  }

  get addresses(): Addresses {
    return this.#addresses;
  }

  get store(): Store {
    return this.#store;
  }

  /** The long-lived services (sessions, directory…): for the JSON API and for tests. */
  get services(): Services {
    return this.#services;
  }

  /** This instance's id (presence records and its peer certificate name it). */
  get instance(): string | undefined {
    return this.#relay?.instance;
  }

  /** Where the other instances reach this one (`server.peer`), once listening. */
  get peerAddress(): string | undefined {
    return this.#relay?.advertise;
  }

  /**
   * SNI without server.tls: the route host's own certificate from the internal CA; anything else gets the default.
   * A certificate this process does not hold yet comes from the store: while the store is unreachable the handshake
   * waits for it a moment only, then goes on with the default one (the client sees a name mismatch, not a hang).
   */
  #sni(name: string, done: (err: Error | null, ctx?: SecureContext) => void): void {
    const state = this.#state;
    const certificateFor = state.tls.certificateFor;
    if (!certificateFor) return done(null);
    let answered = false;
    const once = (err: Error | null, ctx?: SecureContext) => {
      if (answered) return;
      answered = true;
      clearTimeout(timer);
      done(err, ctx);
    };
    const timer = this.#store.reachable?.() === false ? setTimeout(() => once(null), 250) : undefined;
    certificateFor(name).then(
      (issued) => {
        if (!issued) return once(null);
        const cached = this.#sniContexts.get(issued.id);
        if (cached && cached.state === state && cached.renewAt === issued.renewAt) return once(null, cached.ctx);
        const ctx = createSecureContext({ ...this.#secureOptions(state), cert: issued.certPem, key: issued.keyPem });
        if (this.#o.ticketKeys) ctx.context.setTicketKeys(this.#o.ticketKeys);
        this.#sniContexts.set(issued.id, { ctx, renewAt: issued.renewAt, state });
        once(null, ctx);
      },
      (err: unknown) => {
        this.#o.log.error('server_certificate_failed', { host: name, error: messageOf(err) });
        once(null); // the default certificate: the client sees a name mismatch rather than a reset
      },
    );
  }

  #secureOptions(state: AppState) {
    return {
      cert: state.tls.cert,
      key: state.tls.key,
      ...(state.tls.clientCas.length > 0 ? { ca: [...state.tls.clientCas] } : {}),
      minVersion: state.tls.minVersion,
    };
  }

  async #listen(): Promise<void> {
    const server = this.#state.config.server;
    const a = await listen(this.#https, server.https);
    this.#addresses.https = formatListen({ host: a.address, port: a.port });
    this.#state = withPublicPort(this.#state, a.port);
    const getState = () => this.#state.proxy;
    if (server.http) {
      this.#http = createHttpServer({ requireHostHeader: false, headersTimeout: 20_000 }, redirectToHttps(getState));
      const h = await listen(this.#http, server.http);
      this.#addresses.http = formatListen({ host: h.address, port: h.port });
    }
    if (server.forwardProxy) {
      const fp = forwardProxy(getState, this.#frontDoor, this.#o.log);
      this.#forward = createHttpServer({ requireHostHeader: false, headersTimeout: 20_000 }, fp.request);
      this.#forward.on('connect', fp.connect);
      this.#forward.on('clientError', this.#frontDoor.handleClientError);
      const f = await listen(this.#forward, server.forwardProxy);
      this.#addresses.forwardProxy = formatListen({ host: f.address, port: f.port });
    }
  }

  /**
   * Builds a new state from the file beside the old one and swaps it in. A bad file is reported and the old
   * state keeps serving; requests in flight finish on the state they started with.
   */
  async reload(): Promise<ReloadResult> {
    const loaded = await loadState(this.#o.configFile, { log: this.#o.log, services: this.#services });
    if (!loaded.ok) {
      this.#o.log.error('config_rejected', { file: this.#o.configFile, problems: loaded.problems.split('\n') });
      return { ok: false, problems: loaded.problems };
    }
    const next = withPublicPort(loaded.state, Number(this.#addresses.https.split(':').pop()));
    const old = this.#state;
    this.#warnListenerChanges(old.config, next.config);
    if (next.tls.cert !== old.tls.cert || next.tls.key !== old.tls.key || next.tls.clientCas.join() !== old.tls.clientCas.join() || next.tls.minVersion !== old.tls.minVersion) {
      this.#https.setSecureContext(this.#secureOptions(next));
      if (this.#o.ticketKeys) this.#https.setTicketKeys(this.#o.ticketKeys);
      (this.#https as unknown as { requestCert: boolean }).requestCert = next.tls.clientCas.length > 0;
    }
    this.#state = next;
    this.#sniContexts.clear();
    this.#services.tunnels.recheck(); // a tunnel the new configuration no longer allows ends now
    this.#services.directory.configure({ admins: next.config.identity.admins, roles: next.config.roles });
    this.#services.connectors.configure(next.config.connectors.map((c) => c.name));
    this.#services.directory.seed().catch((err: unknown) => this.#o.log.error('directory_seed_failed', { error: messageOf(err) }));
    old.revocation.close();
    this.#o.log.info('config_reloaded', { file: this.#o.configFile, generation: next.proxy.generation, routes: next.config.routes.length });
    return { ok: true, generation: next.proxy.generation };
  }

  #warnListenerChanges(a: Readonly<Config>, b: Readonly<Config>): void {
    for (const key of ['https', 'http', 'forwardProxy', 'metrics', 'workers', 'peer'] as const) {
      if (JSON.stringify(a.server[key]) !== JSON.stringify(b.server[key])) {
        this.#o.log.warn('restart_needed', { setting: `server.${key}`, message: 'listener changes take effect on restart' });
      }
    }
    if (JSON.stringify(a.store) !== JSON.stringify(b.store)) {
      this.#o.log.warn('restart_needed', { setting: 'store', message: 'a store change takes effect on restart' });
    }
  }

  /** Listening, the store answering, and the in-memory copy loaded and following it (not while a resync reloads it). */
  async ready(): Promise<boolean> {
    return !this.#draining && this.#https.listening && this.#mirror.live && (await this.#store.healthy());
  }

  /** Stops accepting, lets requests in flight finish (up to the shutdown timeout), then closes everything. */
  async close(): Promise<void> {
    this.#draining = true;
    await this.#services.tunnels.destroy(); // a tunnel is no request in flight: it would hold the drain to its end
    // connector sessions end once their streams are done; idle pooled streams to connectors close now
    this.#pool.retain((key) => !key.startsWith('connector:'));
    const relay = this.#relay?.close();
    const connectors = this.#services.connectors.close();
    const deadline = setTimeout(() => {
      void this.#relay?.destroy();
      this.#frontDoor.destroyTunnels();
      this.#https.closeAllConnections();
      this.#http?.closeAllConnections();
      this.#forward?.closeAllConnections();
    }, this.#state.config.server.shutdownTimeout);
    deadline.unref();
    await Promise.all([closeServer(this.#https), closeServer(this.#http), closeServer(this.#forward), connectors, relay]);
    clearTimeout(deadline);
    await this.destroy();
  }

  /** Stops at once. */
  async destroy(): Promise<void> {
    this.#draining = true;
    await this.#services.tunnels.destroy();
    this.#frontDoor.destroyTunnels();
    for (const s of [this.#https, this.#http, this.#forward]) {
      s?.closeAllConnections();
      s?.close();
    }
    this.#pool.destroy();
    await this.#relay?.destroy();
    await this.#services.connectors.destroy();
    this.#state.revocation.close();
    clearInterval(this.#renewTimer);
    for (const off of this.#unsubscribe.splice(0)) off();
    this.#services.ca.close();
    this.#mirror.close();
    this.#services.signer.destroy();
    await this.#store.close().catch(() => undefined);
    this.#o.log.flush();
  }
}
