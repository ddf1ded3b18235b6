/**
 * Pooled keep-alive connections to upstreams: one undici `Pool` per origin, TLS setting and connect timeout,
 * shared across reloads (a reload that keeps an upstream keeps its warm connections). Templated upstreams that
 * must not reach loopback or link-local addresses get their own pools whose lookup refuses them, and literal
 * addresses are checked before dialling, so the address that was checked is the address that is dialled.
 */
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { isIP, type LookupFunction } from 'node:net';
import type { Duplex } from 'node:stream';
import { Pool, buildConnector } from 'undici';
import { GatehouseError, type Dialer } from '../core/index.ts';
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

/** The most one `read()` hands undici from a connector stream. */
const READ_CHUNK = 64 * 1024;

/**
 * undici reads its socket with `read()`, which returns everything buffered as one new buffer, and puts back
 * (`unshift`) what it could not pass on while the client is slow. A socket buffers little; an HTTP/2 stream
 * buffers up to its flow-control window (16 MiB), so each round would copy the whole window to move one chunk
 * on. Bounded reads keep each copy small.
 */
function boundedReads(stream: Duplex): Duplex {
  const read = stream.read.bind(stream);
  stream.read = (size?: number) => read(size ?? (stream.readableLength > READ_CHUNK ? READ_CHUNK : undefined));
  return stream;
}

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
/** How long an idle stream through a connector is kept. */
const connectorIdleMs = 4_000;

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

  /**
   * A pool whose connections are streams through connector `name` (`to: connector:NAME`): each one a dial through
   * `dialer`, which Gatehouse speaks plain HTTP/1.1 over (the connector makes any TLS connection to its backend).
   * A dial that takes longer than `connectTimeout` fails as a connect timeout.
   */
  connectorDispatcherFor(name: string, dialer: Dialer, connectTimeout: number): UpstreamDispatcher {
    const key = `connector:${name}|${connectTimeout}`;
    let found = this.#pools.get(key);
    if (!found) {
      const pool = new Pool(`http://${name}.connector.invalid`, {
        connections: null,
        pipelining: 1,
        // a stream costs no handshake to open again, and an idle one holds its connector's session open when
        // that connector stops or rolls over to a new certificate (it waits for its streams to end)
        keepAliveTimeout: connectorIdleMs,
        connect: (_options, callback) => {
          const signal = AbortSignal.timeout(connectTimeout);
          dialer.dial(name, { signal }).then(
            (stream: Duplex) => callback(null, boundedReads(stream) as never),
            (err: unknown) =>
              callback(
                signal.aborted
                  ? new GatehouseError('ERR_UPSTREAM_TIMEOUT', `connector ${name} did not open a stream within ${connectTimeout} ms`, { cause: err })
                  : (err as Error),
                null,
              ),
          );
        },
      });
      found = Object.freeze({ pool, servername: `${name}.connector.invalid` });
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
