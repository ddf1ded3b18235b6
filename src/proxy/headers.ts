/**
 * What the upstream receives and what the client gets back, as flat raw-header arrays
 * ([name, value, name, value…]) so nothing is rebuilt into objects on the hot path.
 */
import { stripOwnCookies } from '../authn/index.ts';

/** Headers that describe one connection and never travel past it (RFC 9110 §7.6.1), plus proxy-only ones. */
const hopByHop = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'http2-settings',
]);

/**
 * Headers a client could use to lie about where the request came from or what it asked for.
 * They are dropped unless the peer is a trusted proxy; Gatehouse sets the X-Forwarded-* ones itself.
 */
const spoofable = new Set([
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  'x-forwarded-port',
  'x-forwarded-prefix',
  'x-forwarded-server',
  'x-forwarded-ssl',
  'forwarded',
  'x-real-ip',
  'x-client-ip',
  'x-original-url',
  'x-rewrite-url',
  'x-original-host',
  'x-http-method-override',
  'x-http-method',
  'x-method-override',
  'x-request-id',
]);

function connectionTokens(raw: readonly string[]): Set<string> | undefined {
  let tokens: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.length === 10 && raw[i]!.toLowerCase() === 'connection') {
      for (const t of raw[i + 1]!.split(',')) {
        const v = t.trim().toLowerCase();
        if (v) (tokens ??= new Set()).add(v);
      }
    }
  }
  return tokens;
}

export interface UpstreamHeaderOptions {
  readonly hostHeader: string;
  readonly clientIp: string;
  readonly publicHost: string;
  readonly requestId: string;
  readonly trusted: boolean;
  /** keep Connection/Upgrade for a WebSocket or other upgrade */
  readonly upgrade?: string;
  /** extra headers to add (the identity headers) */
  readonly extra?: readonly string[];
}

/** Builds the headers sent upstream from the client's raw headers. */
export function upstreamRequestHeaders(raw: readonly string[], o: UpstreamHeaderOptions): string[] {
  const named = connectionTokens(raw);
  const out: string[] = ['Host', o.hostHeader];
  let xff: string | undefined;
  let xfProto: string | undefined;
  let xfHost: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const lower = name.toLowerCase();
    if (lower === 'host') continue;
    // Content-Length is the message framing: a Connection header naming it must not strip it (that would smuggle the body as a request)
    if (hopByHop.has(lower) || (named?.has(lower) && lower !== 'content-length')) continue;
    if (lower.startsWith('x-gatehouse-')) continue; // identity headers come only from Gatehouse
    if (lower === 'cookie') {
      // Gatehouse's own cookies never reach the backend
      const value = raw[i + 1]!;
      if (value.includes('__Host-gatehouse')) {
        const kept = stripOwnCookies(value);
        if (kept !== undefined) out.push(name, kept);
        continue;
      }
    }
    if (lower === 'authorization' && /^bearer\s+gh_/i.test(raw[i + 1]!)) continue; // a Gatehouse token is Gatehouse's, not the backend's
    if (spoofable.has(lower)) {
      if (!o.trusted) continue;
      if (lower === 'x-forwarded-for') {
        xff = xff ? `${xff}, ${raw[i + 1]}` : raw[i + 1];
        continue;
      }
      if (lower === 'x-forwarded-proto') {
        xfProto ??= raw[i + 1];
        continue;
      }
      if (lower === 'x-forwarded-host') {
        xfHost ??= raw[i + 1];
        continue;
      }
      if (lower === 'x-request-id') continue;
    }
    out.push(name, raw[i + 1]!);
  }
  out.push('X-Forwarded-For', xff ? `${xff}, ${o.clientIp}` : o.clientIp);
  out.push('X-Forwarded-Proto', xfProto ?? 'https');
  out.push('X-Forwarded-Host', xfHost ?? o.publicHost);
  out.push('X-Request-Id', o.requestId);
  if (o.upgrade) out.push('Connection', 'Upgrade', 'Upgrade', o.upgrade);
  if (o.extra) for (const h of o.extra) out.push(h);
  return out;
}

/** Response headers from the upstream without hop-by-hop ones and without any forged x-gatehouse-error. */
export function clientResponseHeaders(raw: readonly string[], requestId: string): string[] {
  const named = connectionTokens(raw);
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const lower = raw[i]!.toLowerCase();
    if (hopByHop.has(lower) || named?.has(lower)) continue;
    if (lower === 'x-gatehouse-error' || lower === 'x-request-id') continue;
    out.push(raw[i]!, raw[i + 1]!);
  }
  out.push('x-request-id', requestId);
  return out;
}
