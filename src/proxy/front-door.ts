/**
 * The TLS front door: one listener for route hosts, the auth host, HTTPS-proxy requests (absolute-form and
 * CONNECT) and WebSocket upgrades. Each request reads the current state once, is normalised once, decided
 * by the policy, and forwarded exactly as it was checked. One error boundary per listener.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { STATUS_CODES } from 'node:http';
import { connect as netConnect, isIP, type BlockList, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Duplex } from 'node:stream';
import { GatehouseError, errorStatus, isoNow, nextRequestId, publicMessage, type Dialer, type ErrorCode, type Logger, type Registry } from '../core/index.ts';
import { evaluate, type CertificateFacts, type CertificateUserFacts, type Decision, type UserFacts } from '../policy/index.ts';
import { canonicalSerialFromNode } from '../pki/index.ts';
import { SignIn } from './sign-in.ts';
import type { AuthHostRequest, ConnectorEndpoints, ProxyState } from './proxy-state.ts';
import type { RouteMatch, UpstreamTarget } from './route-table.ts';
import { normalizePath, splitTarget } from './normalize-path.ts';
import { upstreamRequestHeaders } from './headers.ts';
import { forward, newForwardResult, type ForwardResult } from './forward.ts';
import { guardedLookup, isForbiddenAddress, type UpstreamDispatcher, type UpstreamPool } from './upstream-pool.ts';
import { rawErrorResponse, sendError, wantsJson } from './error-page.ts';
import { proxyWebSocket } from './upgrade.ts';
import { openTcpTunnel, type TunnelService } from './tcp-tunnel.ts';

export interface FrontDoorOptions {
  readonly state: () => ProxyState;
  readonly pool: UpstreamPool;
  readonly log: Logger;
  readonly metrics: Registry;
  /** hands a socket to the TLS server as a new connection (CONNECT to a route host) */
  readonly acceptTls: (socket: Duplex) => void;
  /** reaches backends behind connectors (`connector:NAME` upstreams); absent: such routes answer 502 */
  readonly dialer?: Dialer | undefined;
  /** registers TCP tunnels (CONNECT to a `tcp` route); absent: such CONNECTs answer 502 */
  readonly tunnels?: TunnelService | undefined;
  /** the connector hub's endpoints on the auth host (`/.gatehouse/connector…`); absent: 404 there */
  readonly connectors?: ConnectorEndpoints | undefined;
}

/** Host header → lower-case host and port; undefined when malformed. */
export function parseHost(value: string | undefined): { host: string; port: number | undefined } | undefined {
  if (!value) return undefined;
  const m = /^([a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*\.?|\[[0-9a-fA-F:.]+\])(?::(\d{1,5}))?$/.exec(value);
  if (!m) return undefined;
  const port = m[2] === undefined ? undefined : Number(m[2]);
  if (port !== undefined && (port < 1 || port > 65535)) return undefined;
  let host = m[1]!.toLowerCase();
  if (host.endsWith('.')) host = host.slice(0, -1);
  return { host, port };
}

/** The Host header's value; undefined when there is none or more than one (RFC 9112 §3.2: both are 400). */
export function singleHost(req: IncomingMessage): string | undefined {
  let count = 0;
  for (let i = 0; i < req.rawHeaders.length; i += 2) if (req.rawHeaders[i]!.length === 4 && req.rawHeaders[i]!.toLowerCase() === 'host') count++;
  return count === 1 ? req.headers.host : undefined;
}

/** The peer's address, IPv4-mapped IPv6 unwrapped. */
export function clientAddress(socket: Socket | undefined): string {
  const a = socket?.remoteAddress ?? '';
  return a.startsWith('::ffff:') && a.includes('.') ? a.slice(7) : a;
}

interface RequestRecord {
  id: string;
  started: number;
  route: string | undefined;
  host: string | undefined;
  method: string;
  path: string | undefined;
  subject: string | undefined;
  user: string | undefined;
  decision: 'allow' | 'deny' | undefined;
  reason: string | undefined;
  code: ErrorCode | undefined;
  status: number;
  bytesIn: number;
  bytesOut: number;
  upstreamMs: number | undefined;
  proxy: 'absolute' | 'connect' | undefined;
  forwarded: ForwardResult | undefined;
}

/** The real client address of a connection that came in through CONNECT (inner TLS over the outer socket). */
const tunnelledFrom = new WeakMap<object, string>();

/**
 * Per connection: whether its peer is a trusted proxy, under the list it was checked against (a reload
 * brings a new list). A connection's peer does not change, and BlockList.check costs about 2 µs a call
 * (it allocates a SocketAddress), a request's worth of our own routing and header work.
 */
const trustedPeers = new WeakMap<object, { readonly list: BlockList; readonly trusted: boolean }>();

export class FrontDoor {
  readonly #o: FrontDoorOptions;
  readonly #requests;
  readonly #duration;
  readonly #upstreamErrors;
  readonly #signIn: SignIn;
  /** CONNECT sockets taken over from the HTTP servers: their closeAllConnections() no longer sees them */
  readonly #tunnels = new Set<Duplex>();

  constructor(options: FrontDoorOptions) {
    this.#o = options;
    this.#signIn = new SignIn(options.log);
    this.#requests = options.metrics.counter('gatehouse_requests_total', 'Requests answered, by route and status');
    this.#duration = options.metrics.histogram('gatehouse_request_duration_seconds', 'Time to answer a request, by route', [
      0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
    ]);
    this.#upstreamErrors = options.metrics.counter('gatehouse_upstream_errors_total', 'Upstream failures, by route and code');
  }

  // ---------------------------------------------------------------- requests

  readonly handleRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const state = this.#o.state();
    const rec = this.#record(req);
    res.on('close', () => this.#finish(state, rec, res));
    try {
      this.#route(state, req, res, rec);
    } catch (err) {
      this.#o.log.error('request_failed', { id: rec.id, error: err instanceof Error ? err.stack : String(err) });
      if (!res.headersSent) this.#refuse(req, res, rec, 'ERR_INTERNAL', 'Gatehouse could not handle this request');
      else res.destroy();
    }
  };

  #record(req: IncomingMessage): RequestRecord {
    return {
      id: nextRequestId(),
      started: performance.now(),
      route: undefined,
      host: undefined,
      method: req.method ?? 'GET',
      path: undefined,
      subject: undefined,
      user: undefined,
      decision: undefined,
      reason: undefined,
      code: undefined,
      status: 0,
      bytesIn: 0,
      bytesOut: 0,
      upstreamMs: undefined,
      proxy: undefined,
      forwarded: undefined,
    };
  }

  #route(state: ProxyState, req: IncomingMessage, res: ServerResponse, rec: RequestRecord): void {
    const url = req.url ?? '';
    if (url.charCodeAt(0) !== 0x2f) {
      if (/^https?:\/\//i.test(url)) return this.#absoluteForm(state, req, res, rec, url);
      return this.#refuse(req, res, rec, 'ERR_BAD_REQUEST', 'the request target must be a path');
    }
    const host = parseHost(singleHost(req));
    if (!host) return this.#refuse(req, res, rec, 'ERR_BAD_REQUEST', 'the Host header is missing, repeated or malformed');
    rec.host = host.host;
    const sni = (req.socket as TLSSocket).servername;
    if (typeof sni === 'string' && sni.toLowerCase() !== host.host) {
      return this.#refuse(req, res, rec, 'ERR_MISDIRECTED_REQUEST', `this connection was opened for ${sni}, not ${host.host}`);
    }
    const { path: rawPath, query } = splitTarget(url);
    const path = normalizePath(rawPath);
    if (path === undefined) return this.#refuse(req, res, rec, 'ERR_BAD_REQUEST', 'the request path cannot be normalised safely');
    rec.path = path;
    if (host.host === state.authHost) return this.#authHost(state, req, res, rec, path, query);
    const found = state.routes.matchDestination(host.host);
    if (!found) return this.#refuse(req, res, rec, 'ERR_ROUTE_NOT_FOUND', `no route is published at ${host.host}`);
    if (path.startsWith('/.gatehouse/')) {
      rec.route = found.match.route.name;
      const refuse = (code: ErrorCode, message: string) => this.#refuse(req, res, rec, code, message, found.match.route.name);
      const signIn = state.signIn;
      if (!signIn || found.byAlias) return refuse('ERR_ROUTE_NOT_FOUND', 'this Gatehouse path is not available here');
      rec.decision = 'allow';
      rec.reason = 'sign-in hand-off';
      this.#async(req, res, rec, async () => {
        const handled = await this.#signIn.routeHost(signIn, req, res, host.host, path, new URLSearchParams(query), rec.id, refuse);
        if (!handled) refuse('ERR_ROUTE_NOT_FOUND', 'this Gatehouse path is not available here');
      });
      return;
    }
    this.#decideAndForward(state, req, res, rec, found.match, path + query, req.headers.host!, !found.byAlias);
  }

  /** `GET http://server1/x` on the front door: HTTPS-proxy mode. Destinations are route hosts and aliases only. */
  #absoluteForm(state: ProxyState, req: IncomingMessage, res: ServerResponse, rec: RequestRecord, url: string): void {
    rec.proxy = 'absolute';
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      return this.#refuse(req, res, rec, 'ERR_BAD_REQUEST', 'the request target is not a valid URL');
    }
    const host = parseHost(u.host);
    if (!host || u.username || u.password) return this.#refuse(req, res, rec, 'ERR_BAD_REQUEST', 'the request target is not a valid URL');
    rec.host = host.host;
    const found = state.routes.matchDestination(host.host);
    if (!found || found.match.route.config.tcp) {
      return this.#refuse(req, res, rec, 'ERR_PROXY_DESTINATION_FORBIDDEN', `${host.host} is not a published route; Gatehouse is not an open proxy`);
    }
    const { path: rawPath, query } = splitTarget(u.pathname + u.search);
    const path = normalizePath(rawPath);
    if (path === undefined) return this.#refuse(req, res, rec, 'ERR_BAD_REQUEST', 'the request path cannot be normalised safely');
    rec.path = path;
    // the client addresses the application by its own name: its redirects already make sense to it
    this.#decideAndForward(state, req, res, rec, found.match, path + query, u.host, false);
  }

  #certificate(state: ProxyState, req: IncomingMessage): CertificateFacts {
    const socket = req.socket as TLSSocket;
    return typeof socket.getPeerCertificate === 'function' ? state.certificates.facts(socket) : { status: 'missing' };
  }

  #decide(
    state: ProxyState,
    req: IncomingMessage,
    rec: RequestRecord,
    match: RouteMatch,
    path: string,
    user?: UserFacts,
  ): { decision: Decision; certificate: CertificateFacts } {
    const certificate = this.#certificate(state, req);
    if (certificate.subjectDn) rec.subject = certificate.subjectDn;
    const certificateUser = certificate.user !== undefined ? this.#certificateUser(state, certificate.user) : undefined;
    const decision = evaluate({
      route: state.policy.route(match.route.name) ?? match.route.config,
      method: rec.method,
      path,
      certificate,
      loginAvailable: state.loginAvailable,
      admins: state.admins,
      ...(user ? { user } : {}),
      ...(certificateUser ? { certificateUser } : {}),
    });
    if (certificate.user !== undefined && !user) rec.user = certificate.user;
    rec.decision = decision.allow ? 'allow' : 'deny';
    rec.reason = decision.allow ? decision.rule : decision.reason;
    return { decision, certificate };
  }

  /**
   * Runs an async step of a request. A failure with a code answers with that code (a store that cannot be reached:
   * `503 ERR_STORE_UNAVAILABLE`, saying that nothing was changed); any other becomes a 500; either is a reset when
   * the answer has started.
   */
  #async(req: IncomingMessage, res: ServerResponse, rec: RequestRecord, step: () => Promise<void>): void {
    step().catch((err: unknown) => {
      const coded = err instanceof GatehouseError && err.code !== 'ERR_INTERNAL' ? err : undefined;
      if (coded?.code === 'ERR_STORE_UNAVAILABLE' || coded?.code === 'ERR_STORE_CLOSED') {
        this.#o.log.warn('store_unavailable', { id: rec.id, method: rec.method, host: rec.host, path: rec.path, error: coded.message });
      } else if (!coded) {
        this.#o.log.error('request_failed', { id: rec.id, error: err instanceof Error ? err.stack : String(err) });
      }
      if (res.headersSent) res.destroy();
      else if (coded) this.#refuse(req, res, rec, coded.code, publicMessage(coded));
      else this.#refuse(req, res, rec, 'ERR_INTERNAL', 'Gatehouse could not handle this request');
    });
  }

  /** Who is calling: a Gatehouse bearer token, or the session cookie of this host. */
  async #principal(
    state: ProxyState,
    req: IncomingMessage,
    host: string,
    auth: string | undefined = req.headers.authorization,
  ): Promise<{ user: UserFacts; sessionId: string } | { invalidToken: true } | undefined> {
    const signIn = state.signIn;
    if (!signIn) return undefined;
    if (auth && /^bearer\s+gh_/i.test(auth)) {
      const token = await signIn.sessions.findToken(auth.slice(auth.indexOf(' ') + 1).trim());
      if (!token) return { invalidToken: true };
      const groups = token.groups ?? [];
      return { user: this.#userFacts(state, token.user, groups), sessionId: `token:${token.id}` };
    }
    const found = await this.#signIn.session(signIn, req, host);
    if (!found) return undefined;
    const { user, groups } = found.session;
    return { user: this.#userFacts(state, user, groups), sessionId: found.session.id };
  }

  /** A principal's facts: configured roles plus store memberships, and whether the directory disabled them (memory reads). */
  #userFacts(state: ProxyState, email: string, groups: readonly string[]): UserFacts {
    const directory = state.directory;
    if (!directory) return { email, groups, roles: state.policy.rolesFor(email, groups) };
    directory.touch(email);
    const held = directory.rolesFromStore(email);
    return { email, groups, roles: state.policy.rolesFor(email, groups, held.length ? held : undefined), disabled: directory.isDisabled(email) };
  }

  /** The roles and status of the user a certificate was issued to (memory reads). */
  #certificateUser(state: ProxyState, email: string): CertificateUserFacts {
    const directory = state.directory;
    if (!directory) return { roles: state.policy.rolesFor(email, []) };
    const held = directory.rolesFromStore(email);
    return { roles: state.policy.rolesFor(email, [], held.length ? held : undefined), disabled: directory.isDisabled(email) };
  }

  /** Not signed in: browsers go to sign in; API and XHR clients get 401 JSON (with CORS for a route's origin). */
  #notSignedIn(state: ProxyState, req: IncomingMessage, res: ServerResponse, rec: RequestRecord, routeName: string, returnTo: string, reason: string): void {
    const signIn = state.signIn!;
    const accept = req.headers.accept ?? '';
    const browser = (rec.method === 'GET' || rec.method === 'HEAD') && accept.includes('text/html') && req.headers['x-requested-with'] === undefined;
    if (browser) {
      rec.code = 'ERR_NOT_SIGNED_IN';
      res.writeHead(302, [
        'location', this.#signIn.loginUrl(signIn, returnTo),
        'cache-control', 'no-store',
        'content-length', '0',
        'x-gatehouse-error', 'ERR_NOT_SIGNED_IN',
        'x-request-id', rec.id,
      ]);
      res.end();
      return;
    }
    const extra = ['www-authenticate', 'Bearer realm="gatehouse"'];
    const origin = req.headers.origin;
    if (origin) {
      try {
        const o = new URL(origin);
        const port = o.port ? Number(o.port) : 443;
        if (o.protocol === 'https:' && port === state.publicPort && state.routes.match(o.hostname.toLowerCase())) {
          extra.push('access-control-allow-origin', origin, 'access-control-allow-credentials', 'true', 'vary', 'Origin');
        }
      } catch {
        // not a URL: no CORS headers
      }
    }
    rec.code = 'ERR_NOT_SIGNED_IN';
    const json = { code: 'ERR_NOT_SIGNED_IN' as const, message: reason, requestId: rec.id, route: routeName };
    sendError(res, json, 'application/json', extra);
  }

  #decideAndForward(
    state: ProxyState,
    req: IncomingMessage,
    res: ServerResponse,
    rec: RequestRecord,
    match: RouteMatch,
    pathAndQuery: string,
    publicHost: string,
    rewrite: boolean,
  ): void {
    const route = match.route;
    rec.route = route.name;
    const auth = route.config.auth;
    if ((auth === 'login' || auth === 'login+certificate') && state.loginAvailable) {
      this.#async(req, res, rec, async () => {
        const who = await this.#principal(state, req, parseHost(publicHost)?.host ?? '');
        if (who && 'invalidToken' in who) {
          rec.decision = 'deny';
          return this.#refuse(req, res, rec, 'ERR_TOKEN_INVALID', 'the bearer token is unknown, revoked or expired', route.name);
        }
        if (who) rec.user = who.user.email;
        this.#decided(state, req, res, rec, match, pathAndQuery, publicHost, rewrite, who?.user, who?.sessionId);
      });
      return;
    }
    this.#decided(state, req, res, rec, match, pathAndQuery, publicHost, rewrite, undefined, undefined);
  }

  #decided(
    state: ProxyState,
    req: IncomingMessage,
    res: ServerResponse,
    rec: RequestRecord,
    match: RouteMatch,
    pathAndQuery: string,
    publicHost: string,
    rewrite: boolean,
    user: UserFacts | undefined,
    sessionId: string | undefined,
  ): void {
    const route = match.route;
    const { decision, certificate } = this.#decide(state, req, rec, match, rec.path!, user);
    if (!decision.allow) {
      if (decision.code === 'ERR_NOT_SIGNED_IN' && state.signIn) {
        const host = parseHost(publicHost)?.host ?? '';
        const publicUrl = `https://${match.route.pattern || !rewrite ? publicHost : route.config.host}${pathAndQuery}`;
        return this.#notSignedIn(state, req, res, rec, route.name, host === publicHost || rewrite ? `https://${publicHost}${pathAndQuery}` : publicUrl, decision.reason);
      }
      if (user && state.authHostApp && (decision.code === 'ERR_POLICY_DENIED' || decision.code === 'ERR_PERMISSION_DENIED')) {
        const requestAccess = `${state.issuer}/request-access?route=${encodeURIComponent(route.name)}`;
        rec.code = decision.code;
        sendError(res, { code: decision.code, message: decision.reason, requestId: rec.id, route: route.name, requestAccess }, req.headers.accept);
        return;
      }
      return this.#refuse(req, res, rec, decision.code, decision.reason, route.name);
    }
    const destination = this.#destination(state, req, res, rec, match, pathAndQuery, publicHost);
    if (!destination) return;
    const upstream = route.config.upstream;
    const hostHeader = match.hostHeader === 'preserve' ? req.headers.host ?? publicHost : match.hostHeader ?? destination.host;
    const headers = upstreamRequestHeaders(req.rawHeaders, {
      hostHeader,
      clientIp: this.#clientIp(req),
      publicHost,
      requestId: rec.id,
      trusted: this.#trusted(state, req),
      ...(route.config.identityHeaders ? { extra: this.#identityHeaders(state, route.name, publicHost, user, sessionId, certificate) } : {}),
    });
    rec.forwarded = newForwardResult();
    forward(
      req,
      res,
      {
        dispatcher: destination.dispatcher,
        method: rec.method,
        path: destination.path,
        headers,
        timeouts: upstream.timeouts,
        maxBodySize: upstream.maxBodySize,
        requestId: rec.id,
        rewrite: rewrite && upstream.rewriteRedirects ? { names: match.upstreamNames, publicHost } : undefined,
      },
      (code, message, close) => this.#refuse(req, res, rec, code, message, route.name, close),
      rec.forwarded,
    );
  }

  /**
   * Where an allowed request goes: its upstream's pooled connections, or for `to: connector:NAME` the streams the
   * connector opens to its backend (plain HTTP/1.1 inside; the connector makes any TLS connection), with the path
   * to send and the Host header unless `hostHeader` says else (the upstream's authority; for a connector the
   * route's host). Undefined once it has refused the request.
   */
  #destination(
    state: ProxyState,
    req: IncomingMessage,
    res: ServerResponse,
    rec: RequestRecord,
    match: RouteMatch,
    pathAndQuery: string,
    publicHost: string,
  ): { dispatcher: UpstreamDispatcher; path: string; host: string } | undefined {
    const route = match.route;
    const connectTimeout = route.config.upstream.timeouts.connect;
    const name = route.connector;
    if (name !== undefined) {
      const dialer = this.#o.dialer;
      if (!dialer) {
        this.#refuse(req, res, rec, 'ERR_UPSTREAM_UNREACHABLE', `route ${route.name} goes through connector ${name}, and this Gatehouse has no connectors`, route.name);
        return undefined;
      }
      return { dispatcher: this.#o.pool.connectorDispatcherFor(name, dialer, connectTimeout), path: pathAndQuery, host: connectorHostHeader(match, publicHost) };
    }
    const target = match.target;
    if (!target) {
      this.#refuse(req, res, rec, 'ERR_UPSTREAM_UNREACHABLE', `route ${route.name} has no HTTP upstream`, route.name);
      return undefined;
    }
    const guard = route.templated && !route.config.upstream.allowLoopback;
    if (guard && isIP(target.hostname) && isForbiddenAddress(target.hostname)) {
      this.#refuse(req, res, rec, 'ERR_UPSTREAM_FORBIDDEN', `${target.hostname} is a loopback or link-local address this route may not reach`, route.name);
      return undefined;
    }
    const dispatcher = this.#o.pool.dispatcherFor(target, state.upstreamTls.get(route.name), guard, connectTimeout);
    return { dispatcher, path: target.basePath + pathAndQuery, host: target.authority };
  }

  /** X-Gatehouse-User, -Roles, -Device and -Jwt-Assertion for an allowed request. */
  #identityHeaders(
    state: ProxyState,
    routeName: string,
    publicHost: string,
    user: UserFacts | undefined,
    sessionId: string | undefined,
    certificate: CertificateFacts,
  ): string[] {
    const out: string[] = [];
    if (user) {
      out.push('X-Gatehouse-User', user.email);
      if (user.roles.length) out.push('X-Gatehouse-Roles', user.roles.join(','));
    }
    else if (certificate.status === 'valid' && certificate.user) out.push('X-Gatehouse-User', certificate.user);
    if (certificate.status === 'valid' && certificate.serial) out.push('X-Gatehouse-Device', certificate.serial);
    if (user && sessionId && state.signer) {
      const audience = parseHost(publicHost)?.host ?? publicHost;
      out.push(
        'X-Gatehouse-Jwt-Assertion',
        state.signer.sign({
          issuer: state.issuer,
          audience,
          subject: user.email,
          email: user.email,
          groups: user.groups,
          roles: user.roles,
          sessionId,
          routeName,
        }),
      );
    }
    return out;
  }

  #clientIp(req: IncomingMessage): string {
    return tunnelledFrom.get(req.socket) ?? clientAddress(req.socket);
  }

  #trusted(state: ProxyState, req: IncomingMessage): boolean {
    const cached = trustedPeers.get(req.socket);
    if (cached?.list === state.trustedProxies) return cached.trusted;
    const ip = this.#clientIp(req);
    if (!ip) return false;
    const trusted = state.trustedProxies.check(ip, isIP(ip) === 6 ? 'ipv6' : 'ipv4');
    trustedPeers.set(req.socket, { list: state.trustedProxies, trusted });
    return trusted;
  }

  #authHost(state: ProxyState, req: IncomingMessage, res: ServerResponse, rec: RequestRecord, path: string, query: string): void {
    rec.route = '(auth host)';
    rec.decision = 'allow';
    const connectors = this.#o.connectors;
    if (connectors?.owns(path)) {
      this.#async(req, res, rec, async () => {
        if (!(await connectors.request(req, res, path, rec.id))) this.#refuse(req, res, rec, 'ERR_ROUTE_NOT_FOUND', `nothing at ${path} on the auth host`);
      });
      return;
    }
    const signIn = state.signIn;
    if (signIn && (path.startsWith('/.gatehouse/') || path === '/.well-known/jwks.json')) {
      if (path === '/.gatehouse/signed-out') return this.#page(req, res, rec, 'Signed out', '<p>You have signed out of every site behind this Gatehouse.</p>');
      const refuse = (code: ErrorCode, message: string) => this.#refuse(req, res, rec, code, message);
      this.#async(req, res, rec, async () => {
        const handled = await this.#signIn.authHost(signIn, req, res, path, new URLSearchParams(query), rec.id, refuse);
        if (!handled) refuse('ERR_ROUTE_NOT_FOUND', `nothing at ${path} on the auth host`);
      });
      return;
    }
    if (path === '/proxy.pac') {
      const body = state.pac;
      res.writeHead(200, [
        'content-type', 'application/x-ns-proxy-autoconfig',
        'cache-control', 'max-age=300',
        'content-length', String(Buffer.byteLength(body)),
        'x-request-id', rec.id,
      ]);
      res.end(req.method === 'HEAD' ? undefined : body);
      return;
    }
    if (path === '/ca/ca.crt' || path === '/ca/crl') {
      const ca = state.caPublisher;
      if (!ca) return this.#refuse(req, res, rec, 'ERR_ROUTE_NOT_FOUND', 'there is no internal CA (gatehouse ca init creates one)');
      this.#async(req, res, rec, async () => {
        const body = path === '/ca/crl' ? await ca.crlPem() : ca.caBundlePem();
        res.writeHead(200, [
          'content-type', path === '/ca/crl' ? 'application/pkix-crl' : 'application/x-pem-file',
          'content-disposition', `attachment; filename="${path === '/ca/crl' ? 'gatehouse.crl' : 'gatehouse-ca.crt'}"`,
          'cache-control', path === '/ca/crl' ? 'no-cache' : 'max-age=300',
          'content-length', String(Buffer.byteLength(body)),
          'x-content-type-options', 'nosniff',
          'x-request-id', rec.id,
        ]);
        res.end(req.method === 'HEAD' ? undefined : body);
      });
      return;
    }
    const app = state.authHostApp;
    if (app && signIn) {
      const request: AuthHostRequest = {
        requestId: rec.id,
        origin: state.issuer,
        path,
        query: new URLSearchParams(query),
        clientIp: this.#clientIp(req),
        certificate: this.#certificate(state, req),
        principal: async () => {
          const who = await this.#principal(state, req, state.authHost);
          if (!who || 'invalidToken' in who) return who;
          rec.user = who.user.email;
          return { user: who.user, via: who.sessionId.startsWith('token:') ? 'token' : 'session', id: who.sessionId.replace(/^token:/, '') };
        },
        loginUrl: (returnTo) => this.#signIn.loginUrl(signIn, returnTo),
      };
      this.#async(req, res, rec, async () => {
        if (!(await app.handle(req, res, request))) this.#refuse(req, res, rec, 'ERR_ROUTE_NOT_FOUND', `nothing at ${path} on the auth host`);
      });
      return;
    }
    if (path === '/') {
      return this.#page(req, res, rec, 'Gatehouse', '<p>This is the front door. The proxy auto-config file is at <a href="/proxy.pac">/proxy.pac</a>.</p>');
    }
    this.#refuse(req, res, rec, 'ERR_ROUTE_NOT_FOUND', `nothing at ${path} on the auth host`);
  }

  #page(req: IncomingMessage, res: ServerResponse, rec: RequestRecord, title: string, html: string): void {
    const body = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${title}</title></head>
<body style="font:16px system-ui,sans-serif;max-width:40rem;margin:10vh auto"><h1>${title}</h1>
${html}</body></html>\n`;
    res.writeHead(200, [
      'content-type', 'text/html; charset=utf-8',
      'content-length', String(Buffer.byteLength(body)),
      'cache-control', 'no-store',
      'x-request-id', rec.id,
      'content-security-policy', "default-src 'none'; style-src 'unsafe-inline'",
    ]);
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  #refuse(
    req: IncomingMessage,
    res: ServerResponse,
    rec: RequestRecord,
    code: ErrorCode,
    message: string,
    route?: string,
    close = false,
  ): void {
    rec.code = code;
    rec.reason ??= message;
    if (rec.decision === undefined && errorStatus[code] === 403) rec.decision = 'deny';
    sendError(res, { code, message, requestId: rec.id, route }, req.headers.accept, close ? ['connection', 'close'] : []);
  }

  #finish(state: ProxyState, rec: RequestRecord, res: ServerResponse): void {
    rec.status = res.headersSent ? res.statusCode : 0;
    const f = rec.forwarded;
    if (f) {
      rec.bytesIn = f.bytesIn;
      rec.bytesOut = f.bytesOut;
      rec.upstreamMs = f.upstreamMs || undefined;
      if (f.code) {
        rec.code = f.code;
        if (f.code !== 'ERR_CLIENT_CLOSED') this.#upstreamErrors.inc({ route: rec.route ?? '(none)', code: f.code });
      }
    }
    const totalMs = performance.now() - rec.started;
    const route = rec.route ?? '(none)';
    this.#requests.inc({ route, status: String(rec.status) });
    this.#duration.observe({ route }, totalMs / 1000);
    if (!state.accessLog) return;
    this.#o.log.line(
      JSON.stringify({
        time: isoNow(),
        event: 'request',
        id: rec.id,
        route: rec.route,
        host: rec.host,
        method: rec.method,
        path: rec.path,
        user: rec.user,
        subject: rec.subject,
        decision: rec.decision,
        reason: rec.reason,
        code: rec.code,
        status: rec.status,
        bytesIn: rec.bytesIn,
        bytesOut: rec.bytesOut,
        upstreamMs: rec.upstreamMs === undefined ? undefined : Math.round(rec.upstreamMs * 10) / 10,
        totalMs: Math.round(totalMs * 10) / 10,
        proxy: rec.proxy,
      }),
    );
  }

  // ---------------------------------------------------------------- upgrades (WebSocket)

  readonly handleUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const state = this.#o.state();
    const rec = this.#record(req);
    this.#adopt(socket); // an upgraded socket leaves the HTTP server: shutdown must end it itself
    socket.on('error', () => socket.destroy());
    const refuse = (code: ErrorCode, message: string): void => {
      rec.code = code;
      rec.reason ??= message;
      rec.status = errorStatus[code];
      socket.end(rawErrorResponse({ code, message, requestId: rec.id, route: rec.route }, wantsJson(req.headers.accept)));
      this.#logUpgrade(state, rec);
    };
    const url = req.url ?? '';
    let hostValue = singleHost(req);
    let pathAndQuery = url;
    let rewrite = true;
    if (/^https?:\/\//i.test(url)) {
      try {
        const u = new URL(url);
        hostValue = u.host;
        pathAndQuery = u.pathname + u.search;
        rewrite = false;
      } catch {
        return refuse('ERR_BAD_REQUEST', 'the request target is not a valid URL');
      }
    } else if (url.charCodeAt(0) !== 0x2f) {
      return refuse('ERR_BAD_REQUEST', 'the request target must be a path');
    }
    const host = parseHost(hostValue);
    if (!host) return refuse('ERR_BAD_REQUEST', 'the Host header is missing or malformed');
    rec.host = host.host;
    const sni = (req.socket as TLSSocket).servername;
    if (rewrite && typeof sni === 'string' && sni.toLowerCase() !== host.host) {
      return refuse('ERR_MISDIRECTED_REQUEST', `this connection was opened for ${sni}, not ${host.host}`);
    }
    const { path: rawPath, query } = splitTarget(pathAndQuery);
    const path = normalizePath(rawPath);
    if (path === undefined) return refuse('ERR_BAD_REQUEST', 'the request path cannot be normalised safely');
    rec.path = path;
    const connectors = this.#o.connectors;
    if (rewrite && host.host === state.authHost && connectors?.owns(path)) {
      // a connector dialling in: the hub checks its certificate and takes the socket
      rec.route = '(connector)';
      return connectors.upgrade(req, socket, head, rec.id);
    }
    const found = state.routes.matchDestination(host.host);
    if (!found) return refuse(rewrite ? 'ERR_ROUTE_NOT_FOUND' : 'ERR_PROXY_DESTINATION_FORBIDDEN', `no route is published at ${host.host}`);
    const match = found.match;
    rec.route = match.route.name;
    const proceed = (user: UserFacts | undefined, sessionId: string | undefined): void => {
      const { decision, certificate } = this.#decide(state, req, rec, match, path, user);
      if (!decision.allow) return refuse(decision.code, decision.reason);
      const connector = match.route.connector;
      const dialer = this.#o.dialer;
      if (connector !== undefined && !dialer) return refuse('ERR_UPSTREAM_UNREACHABLE', `route ${match.route.name} goes through connector ${connector}, and this Gatehouse has no connectors`);
      const target = connector !== undefined ? connectorTarget(connector) : match.target;
      if (!target) return refuse('ERR_UPSTREAM_UNREACHABLE', `route ${match.route.name} has no HTTP upstream`);
      const guard = match.route.templated && !match.route.config.upstream.allowLoopback;
      if (guard && isIP(target.hostname) && isForbiddenAddress(target.hostname)) {
        return refuse('ERR_UPSTREAM_FORBIDDEN', `${target.hostname} is a loopback or link-local address this route may not reach`);
      }
      const hostHeader =
        match.hostHeader === 'preserve' ? hostValue! : match.hostHeader ?? (connector !== undefined ? connectorHostHeader(match, hostValue!) : target.authority);
      const headers = upstreamRequestHeaders(req.rawHeaders, {
        hostHeader,
        clientIp: this.#clientIp(req),
        publicHost: hostValue!,
        requestId: rec.id,
        trusted: this.#trusted(state, req),
        upgrade: req.headers.upgrade ?? 'websocket',
        ...(match.route.config.identityHeaders ? { extra: this.#identityHeaders(state, match.route.name, hostValue!, user, sessionId, certificate) } : {}),
      });
      proxyWebSocket({
        req,
        socket,
        head,
        target,
        tls: state.upstreamTls.get(match.route.name),
        lookup: guard ? guardedLookup : undefined,
        path: target.basePath + path + query,
        headers,
        connectTimeout: match.route.config.upstream.timeouts.connect,
        readTimeout: match.route.config.upstream.timeouts.read,
        requestId: rec.id,
        dial:
          connector !== undefined
            ? () => dialer!.dial(connector, { signal: AbortSignal.timeout(match.route.config.upstream.timeouts.connect) })
            : undefined,
        onRefuse: refuse,
        onDone: (status, bytesIn, bytesOut) => {
          rec.status = status;
          rec.bytesIn = bytesIn;
          rec.bytesOut = bytesOut;
          this.#logUpgrade(state, rec);
        },
      });
    };
    const auth = match.route.config.auth;
    if ((auth === 'login' || auth === 'login+certificate') && state.loginAvailable) {
      this.#principal(state, req, host.host).then(
        (who) => {
          if (who && 'invalidToken' in who) return refuse('ERR_TOKEN_INVALID', 'the bearer token is unknown, revoked or expired');
          if (who) rec.user = who.user.email;
          proceed(who?.user, who?.sessionId);
        },
        () => refuse('ERR_INTERNAL', 'Gatehouse could not handle this request'),
      );
      return;
    }
    proceed(undefined, undefined);
  };

  #logUpgrade(state: ProxyState, rec: RequestRecord): void {
    const route = rec.route ?? '(none)';
    this.#requests.inc({ route, status: String(rec.status) });
    if (!state.accessLog) return;
    this.#o.log.line(
      JSON.stringify({
        time: isoNow(),
        event: 'upgrade',
        id: rec.id,
        route: rec.route,
        host: rec.host,
        path: rec.path,
        subject: rec.subject,
        decision: rec.decision,
        reason: rec.reason,
        code: rec.code,
        status: rec.status,
        bytesIn: rec.bytesIn,
        bytesOut: rec.bytesOut,
        totalMs: Math.round((performance.now() - rec.started) * 10) / 10,
      }),
    );
  }

  // ---------------------------------------------------------------- CONNECT

  /**
   * CONNECT on the TLS front door. `route-host:443` (or the front door's own port) goes into the front door
   * itself; `alias:443` of a route with an https upstream becomes a byte tunnel to that upstream once the
   * decision allows it; anything else is refused: Gatehouse is never an open proxy.
   */
  readonly handleConnect = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const state = this.#o.state();
    const rec = this.#record(req);
    rec.proxy = 'connect';
    this.#adopt(socket);
    socket.on('error', () => socket.destroy());
    const refuse = (code: ErrorCode, message: string): void => {
      rec.code = code;
      rec.reason ??= message;
      rec.status = errorStatus[code];
      if (rec.decision === undefined && rec.status === 403) rec.decision = 'deny';
      socket.end(rawErrorResponse({ code, message, requestId: rec.id, route: rec.route }, wantsJson(req.headers.accept)));
      this.#logUpgrade(state, rec);
    };
    const dest = parseConnectTarget(req.url);
    if (!dest) return refuse('ERR_BAD_REQUEST', 'CONNECT needs HOST:PORT');
    rec.host = dest.host;
    const found = tcpDestination(state, dest.host);
    if (found?.match.route.config.tcp !== undefined) return this.#tcpTunnel(state, req, socket, head, rec, found.match, dest.host, refuse);
    if (!found) {
      return refuse('ERR_PROXY_DESTINATION_FORBIDDEN', `${dest.host}:${dest.port} is not a published route; Gatehouse is not an open proxy`);
    }
    const match = found.match;
    rec.route = match.route.name;
    if (!found.byAlias) {
      if (dest.port !== 443 && dest.port !== state.publicPort) {
        return refuse('ERR_PROXY_DESTINATION_FORBIDDEN', `CONNECT to ${dest.host} is only allowed on port 443`);
      }
      rec.decision = 'allow';
      rec.reason = 'into the front door';
      rec.status = 200;
      this.#logUpgrade(state, rec);
      this.tunnelIntoFrontDoor(socket, head, this.#clientIp(req));
      return;
    }
    // an alias: only a byte tunnel to an https upstream, after the decision
    const target = match.target;
    if (!target || target.protocol !== 'https:' || dest.port !== 443) {
      return refuse(
        'ERR_PROXY_DESTINATION_FORBIDDEN',
        `CONNECT ${dest.host}:${dest.port} is not allowed: only port 443 of an alias whose route has an https upstream can be tunnelled`,
      );
    }
    const { decision } = this.#decide(state, req, rec, match, '/');
    if (!decision.allow) return refuse(decision.code, decision.reason);
    const upstream = netConnect({ host: target.hostname, port: target.port });
    const timer = setTimeout(() => upstream.destroy(new Error('connect timeout')), match.route.config.upstream.timeouts.connect);
    upstream.once('connect', () => {
      clearTimeout(timer);
      socket.write(`HTTP/1.1 200 Connection Established\r\nx-request-id: ${rec.id}\r\n\r\n`);
      if (head.length) upstream.write(head);
      socket.pipe(upstream).pipe(socket);
      rec.status = 200;
    });
    upstream.on('error', () => {
      clearTimeout(timer);
      if (rec.status === 200) socket.destroy();
      else refuse('ERR_UPSTREAM_UNREACHABLE', 'the upstream refused the connection');
    });
    upstream.on('close', () => socket.destroy());
    socket.on('close', () => {
      upstream.destroy();
      if (rec.status === 200) this.#logUpgrade(state, rec);
    });
  };

  /**
   * CONNECT to a `tcp` route (`gatehouse tunnel`): decided like an HTTP request to the route (a bearer token in
   * `Proxy-Authorization` or `Authorization`, the client certificate), then a byte tunnel to the route's TCP
   * target. The port the client asked for is ignored: a tcp route publishes one service, and it decides where
   * the bytes go (so `ssh`'s `%p`, 22 by default, works whatever port the service listens on).
   */
  #tcpTunnel(state: ProxyState, req: IncomingMessage, socket: Duplex, head: Buffer, rec: RequestRecord, match: RouteMatch, asked: string, refuse: (code: ErrorCode, message: string) => void): void {
    const route = match.route;
    rec.route = route.name;
    const tunnels = this.#o.tunnels;
    const proxyAuth = req.headers['proxy-authorization'];
    const bearer = proxyAuth && /^bearer\s+gh_/i.test(proxyAuth) ? proxyAuth : req.headers.authorization;
    const proceed = (who: { user: UserFacts; sessionId: string } | undefined): void => {
      const { decision, certificate } = this.#decide(state, req, rec, match, '/', who?.user);
      if (!decision.allow) return refuse(decision.code, decision.reason);
      if (!match.tcp) return refuse('ERR_PROXY_DESTINATION_FORBIDDEN', `route ${route.name} has no TCP target for ${asked}`);
      if (!tunnels) return refuse('ERR_UPSTREAM_UNREACHABLE', 'TCP tunnels are not available in this Gatehouse');
      const device = certificate.status === 'valid' ? certificate.serial : undefined;
      const recheck = (): string | undefined => {
        const now = this.#o.state();
        const again = tcpDestination(now, asked);
        if (again?.match.route.name !== route.name) return `route ${route.name} is no longer published at ${asked}`;
        const facts = who ? this.#userFacts(now, who.user.email, who.user.groups) : undefined;
        const { decision: d } = this.#decide(now, req, this.#record(req), again.match, '/', facts);
        return d.allow ? undefined : `${d.reason} (${d.code})`;
      };
      openTcpTunnel({
        socket,
        head,
        target: match.tcp,
        guard: route.templated && !route.config.upstream.allowLoopback,
        connectTimeoutMs: route.config.upstream.timeouts.connect,
        idleMs: route.config.upstream.timeouts.read,
        dialer: this.#o.dialer,
        tunnels,
        requestId: rec.id,
        opening: {
          route: route.name,
          host: asked,
          user: who?.user.email ?? certificate.user,
          client: this.#clientIp(req),
          via: who ? (who.sessionId.startsWith('token:') ? 'token' : 'session') : device !== undefined ? 'certificate' : 'public',
          credential: who ? (who.sessionId.startsWith('token:') ? who.sessionId : `session:${who.sessionId}`) : undefined,
          device,
          recheck,
        },
        onRefuse: (code, message) => {
          if (code !== 'ERR_CLIENT_CLOSED' && errorStatus[code] >= 500) this.#upstreamErrors.inc({ route: route.name, code });
          refuse(code, message);
        },
        onOpen: () => {
          rec.status = 200;
        },
        onDone: (why, bytesIn, bytesOut) => {
          rec.bytesIn = bytesIn;
          rec.bytesOut = bytesOut;
          rec.reason = `${rec.reason ?? 'allowed'}; tunnel ended: ${why}`;
          this.#logUpgrade(state, rec);
        },
      });
    };
    const auth = route.config.auth;
    if ((auth === 'login' || auth === 'login+certificate') && state.loginAvailable) {
      this.#principal(state, req, asked, bearer).then(
        (who) => {
          if (who && 'invalidToken' in who) {
            rec.decision = 'deny';
            return refuse('ERR_TOKEN_INVALID', 'the bearer token is unknown, revoked or expired');
          }
          if (who) rec.user = who.user.email;
          proceed(who);
        },
        () => refuse('ERR_INTERNAL', 'Gatehouse could not handle this request'),
      );
      return;
    }
    proceed(undefined);
  }

  /** Answers a CONNECT with 200 and runs TLS (Gatehouse's own front door) inside the tunnel. */
  tunnelIntoFrontDoor(socket: Duplex, head: Buffer, clientIp: string): void {
    this.#adopt(socket);
    socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    if (head.length) socket.unshift(head);
    tunnelledFrom.set(socket, clientIp);
    this.#o.acceptTls(socket);
  }

  #adopt(socket: Duplex): void {
    if (this.#tunnels.has(socket)) return;
    this.#tunnels.add(socket);
    socket.once('close', () => this.#tunnels.delete(socket));
  }

  /**
   * A certificate was revoked: ends the long-lived connections (CONNECT tunnels, WebSockets) that presented it.
   * Requests are re-checked one by one, so keep-alive HTTP connections refuse it on their next request anyway.
   */
  dropCertificate(serial: string): number {
    let dropped = 0;
    for (const socket of this.#tunnels) {
      const peer = typeof (socket as TLSSocket).getPeerX509Certificate === 'function' ? (socket as TLSSocket).getPeerX509Certificate() : undefined;
      if (peer && canonicalSerialFromNode(peer.serialNumber) === serial) {
        socket.destroy();
        dropped++;
      }
    }
    return dropped;
  }

  /** Ends every open CONNECT tunnel and upgraded connection now (shutdown): the listeners' closeAllConnections() does not reach them. */
  destroyTunnels(): void {
    for (const socket of this.#tunnels) socket.destroy();
    this.#tunnels.clear();
  }

  /** Remembers the client address of a TLS socket that runs inside a CONNECT tunnel. */
  static noteTunnelled(inner: object, outer: object): void {
    const ip = tunnelledFrom.get(outer);
    if (ip !== undefined) tunnelledFrom.set(inner, ip);
  }

  // ---------------------------------------------------------------- unparsable requests

  /** Node's parser refused the request: answer 400 or 431 with our headers, never forward anything. */
  readonly handleClientError = (err: NodeJS.ErrnoException, socket: Duplex): void => {
    if (err.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    const code: ErrorCode = err.code === 'HPE_HEADER_OVERFLOW' ? 'ERR_HEADERS_TOO_LARGE' : 'ERR_BAD_REQUEST';
    const id = nextRequestId();
    const message =
      code === 'ERR_HEADERS_TOO_LARGE' ? 'the request headers are too large' : `the request could not be parsed safely (${err.code ?? 'error'})`;
    socket.end(rawErrorResponse({ code, message, requestId: id }));
    const state = this.#o.state();
    this.#requests.inc({ route: '(none)', status: String(errorStatus[code]) });
    if (state.accessLog) {
      this.#o.log.line(
        JSON.stringify({ time: isoNow(), event: 'request', id, code, status: errorStatus[code], reason: message }),
      );
    }
  };
}

/** The Host header for a route behind a connector: the route's host (for a pattern route, the host asked for). */
function connectorHostHeader(match: RouteMatch, publicHost: string): string {
  return match.route.pattern ? parseHost(publicHost)?.host ?? publicHost : match.route.config.host;
}

/** Stands in for the upstream of a connector route where an `UpstreamTarget` is needed (the connection is a dialled stream). */
function connectorTarget(name: string): UpstreamTarget {
  return { protocol: 'http:', hostname: `${name}.connector.invalid`, port: 80, authority: `${name}.connector.invalid`, basePath: '', origin: `http://${name}.connector.invalid` };
}

/** A CONNECT destination: a route host or alias, else the name of a TCP route (`gatehouse tunnel NAME`). */
function tcpDestination(state: ProxyState, host: string): { match: RouteMatch; byAlias: boolean } | undefined {
  const found = state.routes.matchDestination(host);
  if (found) return found;
  const byName = state.routes.matchTcpName(host);
  return byName ? { match: byName, byAlias: true } : undefined;
}

export function parseConnectTarget(target: string | undefined): { host: string; port: number } | undefined {
  if (!target) return undefined;
  const m = /^(.+):(\d{1,5})$/.exec(target);
  if (!m) return undefined;
  const host = parseHost(m[1]);
  const port = Number(m[2]);
  if (!host || host.port !== undefined || port < 1 || port > 65535) return undefined;
  return { host: host.host, port };
}

/** A plain-HTTP answer on a raw socket, for the forward proxy. */
export function rawResponse(status: number, headers: readonly string[], body = ''): string {
  let head = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\n`;
  for (let i = 0; i < headers.length; i += 2) head += `${headers[i]}: ${headers[i + 1]}\r\n`;
  return `${head}content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`;
}
