/**
 * Builds the immutable runtime state from a validated configuration: reads certificates, keys and CRLs,
 * compiles the route table. `gatehouse check` runs this same code without listening, so whatever would
 * stop `serve` from starting is reported by `check` too.
 */
import { readFile } from 'node:fs/promises';
import { BlockList, isIP } from 'node:net';
import { createSecureContext } from 'node:tls';
import { GatehouseError, messageOf, type Logger } from '../core/index.ts';
import type { Config, ConfigPath, PathProblem } from '../config/index.ts';
import {
  ClientCertificates,
  OidcClient,
  RevocationLists,
  splitPemCertificates,
  type AssertionSigner,
  type InternalTrust,
  type SessionBook,
} from '../authn/index.ts';
import { compilePolicy } from '../policy/index.ts';
import type { Directory } from '../directory/index.ts';
import { X509Certificate } from 'node:crypto';
import { AdminApp } from '../admin/index.ts';
import type { InternalCa } from '../ca/index.ts';
import type { TunnelRegistry } from '../tunnel/index.ts';
import type { ConnectorHub } from '../connector/index.ts';
import { RouteTable, normalizePath, originOf, renderPac, type ProxyState, type SignInState, type UpstreamTls } from '../proxy/index.ts';

export interface TlsMaterial {
  readonly cert: string;
  readonly key: string;
  /** trusted CA certificates for client certificates (PEM each) */
  readonly clientCas: readonly string[];
  readonly minVersion: 'TLSv1.2' | 'TLSv1.3';
  /** when `cert` was issued by the internal CA (no `server.tls`): when to issue it again */
  readonly renewAt?: number | undefined;
  /** no `server.tls`: the certificate for a host name the client asked for by SNI (undefined: the default one) */
  readonly certificateFor?: ((serverName: string) => Promise<{ certPem: string; keyPem: string; renewAt: number; id: string } | undefined>) | undefined;
}

/** The long-lived parts a state is built on: they outlive reloads. */
export interface Services {
  readonly sessions: SessionBook;
  readonly signer: AssertionSigner;
  /** people, memberships, role admins, access requests, service accounts, audit */
  readonly directory: Directory;
  /** the internal CA: device, connector and server certificates, revocation, CRL */
  readonly ca: InternalCa;
  /** OIDC clients by settings, so a reload that keeps the IdP keeps its discovery */
  readonly oidcClients: Map<string, OidcClient>;
  /** open TCP tunnels of every process (store records), closed when their record, token, session or user goes */
  readonly tunnels: TunnelRegistry;
  /** the connector hub: sessions of the connectors that dialled in, enrollment, presence */
  readonly connectors: ConnectorHub;
}

export interface AppState {
  readonly config: Readonly<Config>;
  readonly proxy: ProxyState;
  readonly tls: TlsMaterial;
  readonly revocation: RevocationLists;
}

export type BuildProblem = PathProblem;

export class StateBuildError extends GatehouseError {
  constructor(readonly problems: readonly BuildProblem[]) {
    super('ERR_CONFIG_INVALID', problems.map((p) => `${p.path.join('.')}: ${p.message}`).join('; '));
  }
}

let generation = 0;

async function read(path: string, what: string, problems: BuildProblem[], at: ConfigPath): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    problems.push({ path: at, message: `cannot read ${what} ${path}: ${messageOf(err)}` });
    return '';
  }
}

export function trustedProxyList(cidrs: readonly string[]): BlockList {
  const list = new BlockList();
  for (const entry of cidrs) {
    const [addr, bits] = entry.split('/');
    const type = isIP(addr!) === 6 ? 'ipv6' : 'ipv4';
    if (bits === undefined) list.addAddress(addr!, type);
    else list.addSubnet(addr!, Number(bits), type);
  }
  return list;
}

/** Reads and checks everything the configuration refers to. Throws StateBuildError listing every problem. */
export async function buildState(
  config: Readonly<Config>,
  options: { publicPort?: number; log?: Logger; startRevocation?: boolean; services?: Services } = {},
): Promise<AppState> {
  const problems: BuildProblem[] = [];
  const tlsConfig = config.server.tls;
  const ca = options.services?.ca;
  const caActive = ca?.info()?.state === 'active';
  let cert = tlsConfig ? await read(tlsConfig.cert, 'certificate', problems, ['server', 'tls', 'cert']) : '';
  let key = tlsConfig ? await read(tlsConfig.key, 'key', problems, ['server', 'tls', 'key']) : '';
  let renewAt: number | undefined;
  if (!tlsConfig && ca) {
    // no server.tls: the internal CA issues the auth host's certificate (the default) and one per route host (by SNI)
    if (!caActive) {
      problems.push({
        path: ['server'],
        message: 'tls is absent, so Gatehouse issues its own server certificates from the internal CA, but there is no CA yet: run `gatehouse ca init -c FILE` (or set server.tls)',
      });
    } else {
      try {
        const issued = await ca.serverCertificate([config.server.authHost]);
        cert = issued.certPem;
        key = issued.keyPem;
        renewAt = issued.renewAt;
      } catch (err) {
        problems.push({ path: ['server'], message: `the internal CA could not issue the server certificate: ${messageOf(err)}` });
      }
    }
  }
  if (cert && key) {
    try {
      createSecureContext({ cert, key });
    } catch (err) {
      problems.push({ path: ['server', 'tls'], message: `the certificate and key do not form a usable pair: ${messageOf(err)}` });
    }
  }

  const clientCas: string[] = [];
  const trust = config.identity.certificates.trust;
  for (let i = 0; i < trust.length; i++) {
    const entry = trust[i]!;
    if (entry === 'internal') {
      if (caActive) clientCas.push(...splitPemCertificates(ca!.caBundlePem()));
      else if (ca) options.log?.warn('internal_ca_missing', { message: 'identity.certificates.trust names "internal", but there is no internal CA yet: run gatehouse ca init' });
      continue;
    }
    const pem = await read(entry, 'CA file', problems, ['identity', 'certificates', 'trust', i]);
    if (!pem) continue;
    const certs = splitPemCertificates(pem);
    if (certs.length === 0) problems.push({ path: ['identity', 'certificates', 'trust', i], message: `${entry} holds no PEM certificate` });
    clientCas.push(...certs);
  }

  // connectors present their internal-CA certificate to the front door: the TLS layer asks for one even when
  // users are not trusted with the internal CA (their certificates are then refused for users, see InternalTrust)
  const connectorsOnly = caActive && config.connectors.length > 0 && !trust.includes('internal');
  const tlsClientCas = connectorsOnly ? [...clientCas, ...splitPemCertificates(ca!.caBundlePem())] : clientCas;

  const upstreamTls = new Map<string, UpstreamTls>();
  for (let i = 0; i < config.routes.length; i++) {
    const r = config.routes[i]!;
    const t = r.upstream.tls;
    const ca = t.ca ? await read(t.ca, 'upstream CA file', problems, ['routes', i, 'upstream', 'tls', 'ca']) : undefined;
    upstreamTls.set(r.name, { ca: ca || undefined, serverName: t.serverName, insecureSkipVerify: t.insecureSkipVerify });
  }

  const revocation = new RevocationLists({
    sources: config.identity.certificates.crl,
    trustedCaPems: clientCas,
    refreshMs: config.identity.certificates.crlRefresh,
    ...(options.log ? { log: options.log } : {}),
  });
  if (problems.length === 0 && options.startRevocation !== false) {
    try {
      await revocation.start();
    } catch (err) {
      problems.push({ path: ['identity', 'certificates', 'crl'], message: messageOf(err) });
    }
  }
  if (problems.length > 0) {
    revocation.close();
    throw new StateBuildError(problems);
  }

  const publicPort = options.publicPort || config.server.https.port;
  const routes = new RouteTable(config.routes);
  const policy = compilePolicy(config.routes, config.roles);
  const loginAvailable = config.identity.oidc !== undefined && options.services !== undefined;
  const services = options.services;
  const proxy: ProxyState = {
    generation: ++generation,
    authHost: config.server.authHost,
    publicPort,
    routes,
    upstreamTls,
    trustedProxies: trustedProxyList(config.server.trustedProxies),
    certificates: new ClientCertificates(revocation, {
      internal: caActive && (trust.includes('internal') || connectorsOnly) ? internalTrust(ca!, trust.includes('internal')) : undefined,
      userField: config.identity.certificates.userField,
    }),
    caPublisher: caActive ? ca : undefined,
    loginAvailable,
    pac: renderPac(config.routes, config.server.authHost, publicPort),
    accessLog: config.server.accessLog,
    policy,
    admins: new Set(config.identity.admins),
    signIn: options.services ? signInState(config, options.services, routes, publicPort) : undefined,
    signer: options.services?.signer,
    directory: options.services?.directory,
    issuer: originOf(config.server.authHost, publicPort),
    authHostApp: services
      ? new AdminApp({
          config,
          policy,
          directory: services.directory,
          sessions: services.sessions,
          ca: services.ca,
          connectors: services.connectors,
          tunnels: services.tunnels,
          loginAvailable,
          findRoute: (host) => {
            const found = routes.matchDestination(host);
            return found ? { name: found.match.route.name, config: found.match.route.config } : undefined;
          },
          normalizePath,
          log: options.log,
        })
      : undefined,
  };
  return {
    config,
    proxy,
    tls: {
      cert,
      key,
      clientCas: tlsClientCas,
      minVersion: tlsConfig?.minVersion ?? 'TLSv1.2',
      renewAt,
      certificateFor: !tlsConfig && caActive ? (name) => serverCertificateFor(ca!, routes, config.server.authHost, name) : undefined,
    },
    revocation,
  };
}

function internalTrust(ca: InternalCa, users: boolean): InternalTrust {
  return {
    ca: new X509Certificate(ca.caCertificatePem()),
    users,
    lookup: (serial) => {
      const record = ca.recordOf(serial);
      return record ? { revoked: record.revoked !== undefined, user: record.user, kind: record.kind } : undefined;
    },
  };
}

/**
 * The server certificate for a name a client asked for by SNI: a route host gets its own, a host matched by a
 * pattern whose `*` is in the first label gets the wildcard of its parent domain; anything else (the auth host,
 * unknown names) gets the default certificate.
 */
async function serverCertificateFor(
  ca: InternalCa,
  routes: RouteTable,
  authHost: string,
  serverName: string,
): Promise<{ certPem: string; keyPem: string; renewAt: number; id: string } | undefined> {
  const name = serverName.toLowerCase().replace(/\.$/, '');
  if (name === authHost) return undefined;
  const match = routes.match(name);
  if (!match) return undefined;
  let host = name;
  if (match.route.pattern) {
    const pattern = match.route.config.host;
    const dot = pattern.indexOf('.');
    if (dot < 0 || pattern.slice(dot).includes('*')) return undefined;
    host = `*${name.slice(name.indexOf('.'))}`;
  }
  const issued = await ca.serverCertificate([host]);
  return { certPem: issued.certPem, keyPem: issued.keyPem, renewAt: issued.renewAt, id: host };
}

function oidcFor(config: Readonly<Config>, services: Services): OidcClient | undefined {
  const o = config.identity.oidc;
  if (!o) return undefined;
  const key = JSON.stringify({ ...o, clientSecret: o.clientSecret?.reveal() });
  let client = services.oidcClients.get(key);
  if (!client) {
    client = new OidcClient({
      issuer: o.issuer,
      clientId: o.clientId,
      scopes: o.scopes,
      ...(o.clientSecret ? { clientSecret: o.clientSecret } : {}),
      ...(o.groupsClaim ? { groupsClaim: o.groupsClaim } : {}),
    });
    services.oidcClients.clear(); // one IdP at a time: drop the old one's cached discovery
    services.oidcClients.set(key, client);
  }
  return client;
}

function signInState(config: Readonly<Config>, services: Services, routes: RouteTable, publicPort: number): SignInState {
  const { ttl, idle } = config.identity.session;
  services.sessions.configure({ ttlMs: ttl, idleMs: idle });
  return {
    authHost: config.server.authHost,
    publicPort,
    routes,
    sessions: services.sessions,
    oidc: oidcFor(config, services),
    allowedDomains: new Set(config.identity.allowedDomains),
    sessionTtlMs: ttl,
    jwks: () => services.signer.jwksJson(),
    directory: services.directory,
  };
}

/** The same state with the port the front door really listens on (when the file said port 0). */
export function withPublicPort(state: AppState, port: number): AppState {
  if (state.proxy.publicPort === port) return state;
  const p = state.proxy;
  return {
    ...state,
    proxy: {
      ...p,
      publicPort: port,
      pac: renderPac(state.config.routes, state.config.server.authHost, port),
      issuer: originOf(state.config.server.authHost, port),
      signIn: p.signIn ? { ...p.signIn, publicPort: port } : undefined,
    },
  };
}
