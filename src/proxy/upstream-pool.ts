/**
 * Pooled keep-alive connections to upstreams: one undici `Pool` per origin, TLS setting and connect timeout,
 * shared across reloads (a reload that keeps an upstream keeps its warm connections). Templated upstreams that
 * must not reach loopback or link-local addresses get their own pools whose lookup refuses them, and literal
 * addresses are checked before dialling, so the address that was checked is the address that is dialled.
 */
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { isIP, type LookupFunction } from 'node:net';
import { Pool, buildConnector } from 'undici';
import type { UpstreamTarget } from './route-table.ts';

export interface UpstreamTls {
  readonly ca?: string | undefined; // PEM
  readonly serverName?: string | undefined;
  readonly insecureSkipVerify: boolean;
}

function ipv4Forbidden(a: string): boolean {
  const [x, y] = a.split('.').map(Number) as [number, number];
  return x === 127 || x === 0 || (x === 169 && y === 254);
}

/** The one canonical text of an IPv6 address (RFC 5952, as URLs write it): `0:0::1` → `::1`; a zone id is dropped. */
function canonicalIpv6(address: string): string {
  const bare = address.split('%')[0]!;
  try {
    return new URL(`http://[${bare}]/`).hostname.slice(1, -1);
  } catch {
    return bare.toLowerCase();
  }
}

/** Loopback, unspecified and link-local addresses, in any notation (IPv4-mapped IPv6 included). */
export function isForbiddenAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 4) return ipv4Forbidden(address);
  if (family !== 6) return true;
  const a = canonicalIpv6(address);
  if (a === '::1' || a === '::' || a === '0:0:0:0:0:0:0:1' || a === '0:0:0:0:0:0:0:0') return true;
  if (/^fe[89ab][0-9a-f]:/.test(a)) return true;
  const mapped = /^(?:0:0:0:0:0|):ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(a) ?? /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(a);
  if (mapped) return ipv4Forbidden(mapped[1]!);
  const hexMapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(a);
  if (hexMapped) {
    const hi = parseInt(hexMapped[1]!, 16);
    const lo = parseInt(hexMapped[2]!, 16);
    return ipv4Forbidden(`${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`);
  }
  return false;
}

export class ForbiddenAddressError extends Error {
  readonly code = 'EGATEHOUSE_FORBIDDEN_ADDRESS';
  constructor(readonly host: string, readonly address: string) {
    super(`${host} resolves to ${address}, a loopback or link-local address this route may not reach`);
  }
}

/** A DNS lookup that fails when any answer is a forbidden address. */
export const guardedLookup: LookupFunction = (hostname, options, callback) => {
  dnsLookup(hostname, { ...options, all: true }, (err, addresses: LookupAddress[]) => {
    if (err) return callback(err, '', 0);
    const bad = addresses.find((a) => isForbiddenAddress(a.address));
    if (bad) return callback(new ForbiddenAddressError(hostname, bad.address) as NodeJS.ErrnoException, '', 0);
    if (options.all) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, addresses);
    const first = addresses[0]!;
    callback(null, first.address, first.family);
  });
};

/** Where `forward` sends a request: the pool, and the server name to give undici with every request. */
export interface UpstreamDispatcher {
  readonly pool: Pool;
  /**
   * One constant per pool. undici reconnects whenever a request's server name differs from its connection's,
   * and derives one from the Host header when none is given; with this it never does. The TLS handshake uses
   * the pool's own name regardless (see `dispatcherFor`).
   */
  readonly servername: string;
}

/** How long an idle upstream connection is kept (nginx's upstream default); an upstream's `Keep-Alive: timeout=N` hint wins (less 2 s). */
const idleMs = 60_000;

export class UpstreamPool {
  readonly #pools = new Map<string, UpstreamDispatcher>();

  /**
   * `guarded`: the connection must not reach a loopback or link-local address. Guarded pools never share
   * connections with unguarded ones (a connection another route opened to localhost must not be reused).
   * `connectTimeout` (ms) belongs to the pool: routes to one origin with different ones get different pools.
   */
  dispatcherFor(target: UpstreamTarget, tls: UpstreamTls | undefined, guarded: boolean, connectTimeout: number): UpstreamDispatcher {
    const https = target.protocol === 'https:';
    const key = `${https ? `${target.origin}|${tls?.serverName ?? ''}|${tls?.insecureSkipVerify ? 1 : 0}|${tls?.ca ?? ''}` : target.origin}|${connectTimeout}${guarded ? '|guarded' : ''}`;
    let found = this.#pools.get(key);
    if (!found) {
      // SNI and the name the certificate must carry: tls.serverName, else the upstream's host name, none for an address
      const sni = https ? (tls?.serverName ?? (isIP(target.hostname) ? undefined : target.hostname)) : undefined;
      const connector = buildConnector({
        timeout: connectTimeout,
        keepAlive: true,
        keepAliveInitialDelay: 30_000,
        ...(guarded ? { lookup: guardedLookup } : {}),
        ...(https ? { ca: tls?.ca, servername: sni, rejectUnauthorized: !(tls?.insecureSkipVerify ?? false) } : {}),
      });
      const pool = new Pool(target.origin, {
        connections: null,
        pipelining: 1,
        keepAliveTimeout: idleMs,
        // undici would hand the connector a name taken from the request's Host header; ours wins
        connect: (options, callback) => connector({ ...options, servername: sni }, callback),
      });
      const servername = sni ?? target.hostname;
      found = Object.freeze({ pool, servername });
      this.#pools.set(key, found);
    }
    return found;
  }

  /** Drops pools for upstreams no longer in use: idle connections close now, busy ones when their request is done. */
  retain(keep: (key: string) => boolean): void {
    for (const [key, found] of this.#pools) {
      if (!keep(key)) {
        found.pool.close().catch(() => undefined);
        this.#pools.delete(key);
      }
    }
  }

  /** Closes every upstream connection now; requests still on them fail. */
  destroy(): void {
    for (const found of this.#pools.values()) found.pool.destroy().catch(() => undefined);
    this.#pools.clear();
  }
}
