/**
 * The route table: compiled once per configuration, read by every request.
 * Exact hosts win over patterns; among patterns the most specific (most literal characters, then
 * fewest wildcards) wins, then the order of the file. A pattern whose upstream template does not
 * produce a valid URL for a host (e.g. a non-numeric port) does not match that host.
 */
import type { RouteConfig } from '../config/index.ts';

export interface UpstreamTarget {
  readonly protocol: 'http:' | 'https:';
  readonly hostname: string; // without brackets for IPv6
  readonly port: number;
  /** host[:port] as written in a URL, the default Host header */
  readonly authority: string;
  /** path prefix of the upstream URL without trailing slash ("" for none) */
  readonly basePath: string;
  readonly origin: string;
}

/** Where a TCP route's bytes go: a fixed or filled-in `HOST:PORT`, or a connector. */
export type TcpTarget = { readonly host: string; readonly port: number } | { readonly connector: string };

export interface CompiledRoute {
  readonly name: string;
  readonly config: RouteConfig;
  readonly pattern: boolean;
  /** the upstream when it is fixed (no {N} in `to`) */
  readonly fixed: UpstreamTarget | undefined;
  readonly templated: boolean;
  readonly connector: string | undefined;
  /** upstream authorities (host[:port]) and aliases that redirect rewriting maps back to the public host */
  readonly upstreamNames: ReadonlySet<string>;
  readonly hostHeader: string | undefined;
  readonly upstreamHttps: boolean;
  /** a `tcp` route's target when it is fixed (no {N}) */
  readonly tcpFixed?: TcpTarget | undefined;
}

export interface RouteMatch {
  readonly route: CompiledRoute;
  readonly target: UpstreamTarget | undefined;
  /** a `tcp` route's target for this host; undefined for HTTP routes and hosts the template does not fit */
  readonly tcp?: TcpTarget | undefined;
  readonly upstreamNames: ReadonlySet<string>;
  readonly hostHeader: string | undefined;
}

interface PatternEntry {
  readonly regex: RegExp;
  readonly route: CompiledRoute;
  readonly literal: number;
  readonly stars: number;
  readonly index: number;
}

const defaultPorts: Record<string, number> = { 'http:': 80, 'https:': 443 };

export function parseUpstream(url: string): UpstreamTarget | undefined {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return undefined;
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return undefined;
  if (u.username || u.password || u.search || u.hash || !u.hostname) return undefined;
  const protocol = u.protocol;
  const port = u.port ? Number(u.port) : defaultPorts[protocol]!;
  if (!Number.isInteger(port) || port < 1 || port > 65535) return undefined;
  const hostname = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
  return {
    protocol,
    hostname,
    port,
    authority: u.host,
    basePath: u.pathname === '/' ? '' : u.pathname.replace(/\/$/, ''),
    origin: `${protocol}//${u.host}`,
  };
}

/** `HOST:PORT` (IPv6 in brackets) or `connector:NAME`; undefined when it is neither. */
export function parseTcpTarget(text: string): TcpTarget | undefined {
  if (text.startsWith('connector:')) return text.length > 10 ? { connector: text.slice(10) } : undefined;
  const m = /^(\[[0-9a-fA-F:.]+\]|[a-zA-Z0-9_.-]+):(\d{1,5})$/.exec(text);
  if (!m) return undefined;
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return undefined;
  const host = m[1]!.startsWith('[') ? m[1]!.slice(1, -1) : m[1]!;
  return { host: host.toLowerCase(), port };
}

function fill(template: string, captures: readonly string[]): string {
  return template.replace(/\{(\d+)\}/g, (_, n: string) => captures[Number(n) - 1] ?? '');
}

function namesOf(target: UpstreamTarget | undefined, aliases: readonly string[], hostHeader: string | undefined): Set<string> {
  const names = new Set<string>();
  if (target) {
    names.add(target.authority.toLowerCase());
    names.add(`${target.hostname.toLowerCase()}:${target.port}`);
  }
  for (const a of aliases) names.add(a.toLowerCase());
  if (hostHeader && hostHeader !== 'preserve') names.add(hostHeader.toLowerCase());
  return names;
}

function compileRoute(config: RouteConfig): CompiledRoute {
  const to = config.to ?? '';
  const connector = to.startsWith('connector:') ? to.slice('connector:'.length) : undefined;
  const tcp = config.tcp;
  const templated = /\{\d+\}/.test(tcp ?? to);
  const fixed = connector || templated || !config.to ? undefined : parseUpstream(to);
  const hostHeader = config.upstream.hostHeader;
  return {
    name: config.name,
    config,
    pattern: config.host.includes('*'),
    fixed,
    templated,
    connector,
    // behind a connector the backend sees the route's host (by default): its redirects to it are mapped too
    upstreamNames: namesOf(fixed, config.aliases, templated ? undefined : hostHeader ?? (connector !== undefined && !config.host.includes('*') ? config.host : undefined)),
    hostHeader,
    upstreamHttps: to.startsWith('https:'),
    tcpFixed: tcp !== undefined && !templated ? parseTcpTarget(tcp) : undefined,
  };
}

function patternRegex(host: string): RegExp {
  const source = host
    .split('*')
    .map((part) => part.replace(/[.\\+?^$()[\]{}|-]/g, '\\$&'))
    .join('([a-z0-9-]+)');
  return new RegExp(`^${source}$`);
}

export class RouteTable {
  readonly routes: readonly CompiledRoute[];
  readonly #exact = new Map<string, CompiledRoute>();
  readonly #aliases = new Map<string, CompiledRoute>();
  readonly #patterns: PatternEntry[] = [];
  /** pattern matches by host, so a templated upstream is parsed once per host, not per request */
  readonly #cache = new Map<string, RouteMatch | null>();

  constructor(routes: readonly RouteConfig[]) {
    this.routes = routes.map(compileRoute);
    this.routes.forEach((route, index) => {
      const host = route.config.host;
      if (route.pattern) {
        this.#patterns.push({
          regex: patternRegex(host),
          route,
          literal: host.replace(/\*/g, '').length,
          stars: (host.match(/\*/g) ?? []).length,
          index,
        });
      } else {
        this.#exact.set(host, route);
      }
      for (const alias of route.config.aliases) this.#aliases.set(alias, route);
    });
    this.#patterns.sort((a, b) => b.literal - a.literal || a.stars - b.stars || a.index - b.index);
  }

  /** The route published at `host` (lower-case, without port), with its upstream for this host. */
  match(host: string): RouteMatch | undefined {
    const exact = this.#exact.get(host);
    if (exact) return this.#fixedMatch(exact);
    if (this.#patterns.length === 0) return undefined;
    const cached = this.#cache.get(host);
    if (cached !== undefined) return cached ?? undefined;
    const found = this.#matchPattern(host);
    if (this.#cache.size >= 4096) this.#cache.clear();
    this.#cache.set(host, found ?? null);
    return found;
  }

  #matchPattern(host: string): RouteMatch | undefined {
    for (const p of this.#patterns) {
      const m = p.regex.exec(host);
      if (!m) continue;
      const route = p.route;
      if (!route.templated) return this.#fixedMatch(route);
      const captures = m.slice(1);
      if (route.config.tcp !== undefined) {
        const tcp = parseTcpTarget(fill(route.config.tcp, captures));
        if (!tcp) continue; // as for `to`: this host does not fit the template
        return { route, target: undefined, tcp, hostHeader: undefined, upstreamNames: route.upstreamNames };
      }
      const target = parseUpstream(fill(route.config.to!, captures));
      if (!target) continue; // this host does not fit the template; a less specific pattern may
      const hostHeader = route.hostHeader ? fill(route.hostHeader, captures) : undefined;
      return { route, target, hostHeader, upstreamNames: namesOf(target, route.config.aliases, hostHeader) };
    }
    return undefined;
  }

  /** The route that has `name` (lower-case, without port) as one of its aliases. */
  matchAlias(name: string): RouteMatch | undefined {
    const route = this.#aliases.get(name);
    return route ? this.#fixedMatch(route) : undefined;
  }

  /** Route host or alias: what the HTTPS-proxy mode accepts as a destination. */
  matchDestination(host: string): { match: RouteMatch; byAlias: boolean } | undefined {
    const byHost = this.match(host);
    if (byHost) return { match: byHost, byAlias: false };
    const byAlias = this.matchAlias(host);
    return byAlias ? { match: byAlias, byAlias: true } : undefined;
  }

  /** A TCP route by its name (`gatehouse tunnel NAME`), when its target does not depend on the host. */
  matchTcpName(name: string): RouteMatch | undefined {
    const route = this.routes.find((r) => r.name === name && r.tcpFixed !== undefined);
    return route ? this.#fixedMatch(route) : undefined;
  }

  #fixedMatch(route: CompiledRoute): RouteMatch {
    return { route, target: route.fixed, tcp: route.tcpFixed, hostHeader: route.hostHeader, upstreamNames: route.upstreamNames };
  }
}
