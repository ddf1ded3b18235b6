/**
 * The proxy auto-config file: route hosts and aliases go through Gatehouse's TLS front door as an HTTPS
 * proxy, everything else goes direct. Patterns become the same regular expressions the route table uses.
 */
import type { RouteConfig } from '../config/index.ts';

function hostRegex(pattern: string): string {
  return (
    '^' +
    pattern
      .split('*')
      .map((p) => p.replace(/[.\\+?^$()[\]{}|/-]/g, '\\$&'))
      .join('[a-z0-9-]+') +
    '$'
  );
}

export function renderPac(routes: readonly RouteConfig[], authHost: string, port: number): string {
  const exact = new Set<string>();
  const patterns: string[] = [];
  for (const r of routes) {
    if (r.tcp) continue;
    if (r.host.includes('*')) patterns.push(hostRegex(r.host));
    else exact.add(r.host);
    for (const a of r.aliases) exact.add(a);
  }
  const proxy = `HTTPS ${authHost}:${port}`;
  return `// Gatehouse proxy auto-config: internal names through ${authHost}, everything else direct.
var proxied = ${JSON.stringify(Object.fromEntries([...exact].sort().map((h) => [h, true])), null, 2)};
var patterns = [${patterns.map((p) => `/${p}/`).join(', ')}];
function FindProxyForURL(url, host) {
  host = host.toLowerCase();
  if (Object.prototype.hasOwnProperty.call(proxied, host)) return ${JSON.stringify(proxy)};
  for (var i = 0; i < patterns.length; i++) if (patterns[i].test(host)) return ${JSON.stringify(proxy)};
  return "DIRECT";
}
`;
}
