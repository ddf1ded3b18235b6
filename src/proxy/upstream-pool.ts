/**
 * Pooled keep-alive connections to upstreams, one agent per origin and TLS setting, shared across
 * reloads (a reload that keeps an upstream keeps its warm connections). Templated upstreams that must not
 * reach loopback or link-local addresses get a lookup that refuses them, and literal addresses are checked
 * before dialling, so the address that was checked is the address that is dialled.
 */
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { isIP, type LookupFunction } from 'node:net';
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

export class UpstreamPool {
  readonly #agents = new Map<string, HttpAgent>();

  /**
   * `guarded`: the connection must not reach a loopback or link-local address. Guarded agents never share
   * pooled sockets with unguarded ones (a socket another route opened to localhost must not be reused).
   */
  agentFor(target: UpstreamTarget, tls: UpstreamTls | undefined, guarded = false): HttpAgent {
    const key = (target.protocol === 'https:'
      ? `${target.origin}|${tls?.serverName ?? ''}|${tls?.insecureSkipVerify ? 1 : 0}|${tls?.ca ?? ''}`
      : target.origin) + (guarded ? '|guarded' : '');
    let agent = this.#agents.get(key);
    if (!agent) {
      const common = {
        keepAlive: true, keepAliveMsecs: 30_000, maxSockets: Infinity, maxFreeSockets: 512, scheduling: 'lifo' as const,
        ...(guarded ? { lookup: guardedLookup } : {}),
      };
      agent =
        target.protocol === 'https:'
          ? new HttpsAgent({
              ...common,
              ca: tls?.ca,
              servername: tls?.serverName ?? (isIP(target.hostname) ? undefined : target.hostname),
              rejectUnauthorized: !(tls?.insecureSkipVerify ?? false),
            })
          : new HttpAgent(common);
      this.#agents.set(key, agent);
    }
    return agent;
  }

  /** Drops agents for upstreams no longer in use (their idle sockets close; busy ones finish first). */
  retain(keep: (key: string) => boolean): void {
    for (const [key, agent] of this.#agents) {
      if (!keep(key)) {
        agent.destroy();
        this.#agents.delete(key);
      }
    }
  }

  destroy(): void {
    for (const agent of this.#agents.values()) agent.destroy();
    this.#agents.clear();
  }
}
