/**
 * Redirect rewriting: Location, Content-Location and Refresh that point at the upstream (its URL or any
 * alias) point at the public host over https instead; a Set-Cookie Domain naming the upstream becomes the
 * public host. Backends keep redirecting to their own internal names and need no change.
 */

function hostOf(authority: string): string {
  return authority.startsWith('[') ? authority.slice(0, authority.indexOf(']') + 1) : authority.split(':')[0]!;
}

/** `url` rewritten when it is absolute and names the upstream, else undefined. */
export function rewriteUrl(url: string, names: ReadonlySet<string>, publicOrigin: string): string | undefined {
  const m = /^(?:(https?):)?\/\/([^/?#]*)(.*)$/i.exec(url.trim());
  if (!m) return undefined;
  const scheme = (m[1] ?? '').toLowerCase();
  const authority = m[2]!.toLowerCase();
  const rest = m[3]!;
  const at = authority.lastIndexOf('@');
  const hostPort = at >= 0 ? authority.slice(at + 1) : authority;
  const host = hostOf(hostPort);
  const defaultPort = scheme === 'https' ? '443' : '80';
  const port = hostPort.length > host.length ? hostPort.slice(host.length + 1) : defaultPort;
  // an explicit default port names the same place as none (an alias is a bare host name)
  if (names.has(hostPort) || names.has(`${host}:${port}`) || (port === defaultPort && names.has(host))) {
    return publicOrigin + (rest === '' ? '/' : rest);
  }
  return undefined;
}

function rewriteRefresh(value: string, names: ReadonlySet<string>, publicOrigin: string): string | undefined {
  const m = /^(\s*\d*(?:\.\d*)?\s*[;,]\s*url\s*=\s*)(['"]?)(.*?)\2\s*$/i.exec(value);
  if (!m) return undefined;
  const next = rewriteUrl(m[3]!, names, publicOrigin);
  return next === undefined ? undefined : `${m[1]}${m[2]}${next}${m[2]}`;
}

function rewriteCookieDomain(value: string, names: ReadonlySet<string>, publicHost: string): string | undefined {
  const m = /(;\s*domain\s*=\s*)\.?([^;\s]+)/i.exec(value);
  if (!m) return undefined;
  const domain = m[2]!.toLowerCase();
  let named = names.has(domain);
  if (!named) for (const n of names) if (hostOf(n) === domain) named = true;
  if (!named) return undefined;
  return value.slice(0, m.index) + m[1] + publicHost + value.slice(m.index + m[0].length);
}

/** Rewrites the response's raw headers in place. `publicHost` is the host (and port) the client used. */
export function rewriteResponseHeaders(raw: string[], names: ReadonlySet<string>, publicHost: string): void {
  const publicOrigin = `https://${publicHost}`;
  const cookieHost = hostOf(publicHost);
  for (let i = 0; i < raw.length; i += 2) {
    const lower = raw[i]!.toLowerCase();
    let next: string | undefined;
    if (lower === 'location' || lower === 'content-location') next = rewriteUrl(raw[i + 1]!, names, publicOrigin);
    else if (lower === 'refresh') next = rewriteRefresh(raw[i + 1]!, names, publicOrigin);
    else if (lower === 'set-cookie') next = rewriteCookieDomain(raw[i + 1]!, names, cookieHost);
    if (next !== undefined) raw[i + 1] = next;
  }
}
