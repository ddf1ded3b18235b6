/**
 * What `gatehouse connect --to` accepts: `http://HOST[:PORT]`, `https://HOST[:PORT]` (the connector makes the TLS
 * connection, so Gatehouse speaks plain HTTP inside the stream) or `HOST:PORT` (bytes, for TCP routes and plain
 * HTTP backends alike).
 */
import { isIP } from 'node:net';
import { GatehouseError } from '../../core/index.ts';

export interface ConnectorTarget {
  readonly tls: boolean;
  /** without brackets for IPv6 */
  readonly host: string;
  readonly port: number;
  /** `HOST:PORT` as sent in `:authority` (IPv6 in brackets) */
  readonly authority: string;
}

function authorityOf(host: string, port: number): string {
  return `${isIP(host) === 6 ? `[${host}]` : host}:${port}`;
}

export function parseTarget(text: string): ConnectorTarget {
  const value = text.trim();
  const bad = () =>
    new GatehouseError('ERR_USAGE', `--to ${JSON.stringify(text)} must be http://HOST[:PORT], https://HOST[:PORT] or HOST:PORT`);
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(value)) {
    let u: URL;
    try {
      u = new URL(value);
    } catch {
      throw bad();
    }
    if ((u.protocol !== 'http:' && u.protocol !== 'https:') || !u.hostname || u.username || u.password || u.search || u.hash) throw bad();
    if (u.pathname !== '/' && u.pathname !== '') {
      throw new GatehouseError('ERR_USAGE', `--to ${JSON.stringify(text)}: a connector forwards to an origin, not a path (the route keeps the path)`);
    }
    const tls = u.protocol === 'https:';
    const port = u.port ? Number(u.port) : tls ? 443 : 80;
    const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
    return { tls, host, port, authority: authorityOf(host, port) };
  }
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s/[\]]+)):(\d{1,5})$/.exec(value);
  if (!m) throw bad();
  const host = m[1] ?? m[2]!;
  const port = Number(m[3]);
  if (port < 1 || port > 65535) throw bad();
  return { tls: false, host, port, authority: authorityOf(host, port) };
}
