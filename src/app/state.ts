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
import { ClientCertificates, RevocationLists, splitPemCertificates } from '../authn/index.ts';
import { RouteTable, renderPac, type ProxyState, type UpstreamTls } from '../proxy/index.ts';

export interface TlsMaterial {
  readonly cert: string;
  readonly key: string;
  /** trusted CA certificates for client certificates (PEM each) */
  readonly clientCas: readonly string[];
  readonly minVersion: 'TLSv1.2' | 'TLSv1.3';
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
  options: { publicPort?: number; log?: Logger; startRevocation?: boolean } = {},
): Promise<AppState> {
  const problems: BuildProblem[] = [];
  const tlsConfig = config.server.tls;
  if (!tlsConfig) {
    problems.push({ path: ['server'], message: 'tls: a server certificate is required (cert and key)' });
  }
  const cert = tlsConfig ? await read(tlsConfig.cert, 'certificate', problems, ['server', 'tls', 'cert']) : '';
  const key = tlsConfig ? await read(tlsConfig.key, 'key', problems, ['server', 'tls', 'key']) : '';
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
    if (entry === 'internal') continue; // the internal CA joins when it exists
    const pem = await read(entry, 'CA file', problems, ['identity', 'certificates', 'trust', i]);
    if (!pem) continue;
    const certs = splitPemCertificates(pem);
    if (certs.length === 0) problems.push({ path: ['identity', 'certificates', 'trust', i], message: `${entry} holds no PEM certificate` });
    clientCas.push(...certs);
  }

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
  const proxy: ProxyState = {
    generation: ++generation,
    authHost: config.server.authHost,
    publicPort,
    routes: new RouteTable(config.routes),
    upstreamTls,
    trustedProxies: trustedProxyList(config.server.trustedProxies),
    certificates: new ClientCertificates(revocation),
    loginAvailable: config.identity.oidc !== undefined,
    pac: renderPac(config.routes, config.server.authHost, publicPort),
    accessLog: config.server.accessLog,
  };
  return {
    config,
    proxy,
    tls: { cert, key, clientCas, minVersion: tlsConfig?.minVersion ?? 'TLSv1.2' },
    revocation,
  };
}

/** The same state with the port the front door really listens on (when the file said port 0). */
export function withPublicPort(state: AppState, port: number): AppState {
  if (state.proxy.publicPort === port) return state;
  return {
    ...state,
    proxy: { ...state.proxy, publicPort: port, pac: renderPac(state.config.routes, state.config.server.authHost, port) },
  };
}
