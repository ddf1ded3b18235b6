/**
 * The checks the schema cannot express: references between routes, roles and connectors, uniqueness, upstream
 * addresses and their `{N}` captures, and files that must exist. Runs on the parsed config; every problem names the
 * path of the offending node, so the loader can give it a line and column.
 *
 * A route host pattern that happens to match `server.authHost` (`*.corp.example.com` and `gate.corp.example.com`)
 * is allowed: the exact auth host always wins. Only a route whose host is exactly the auth host is an error.
 * Routes that need a login while `identity.oidc` is absent are not an error either: the proxy answers them with
 * 501 "sign-in not configured", so a certificate-only gateway needs no IdP.
 */
import { access, constants, stat } from 'node:fs/promises';
import { isIP } from 'node:net';
import { isAbsolute, resolve } from 'node:path';
import type { Config } from './schema.ts';
import { didYouMean } from './hints.ts';
import { formatPath, type ConfigPath } from './path.ts';
import type { PathProblem } from './problem.ts';

/** The subject attributes `allow.certificateSubject` may name (short names, as in `openssl x509 -subject`). */
export const certificateSubjectKeys = ['CN', 'O', 'OU', 'C', 'ST', 'L', 'emailAddress', 'serialNumber', 'UID', 'DC'] as const;

export interface ValidateOptions {
  /** Directory that relative paths in the config are resolved against (the config file's directory). */
  readonly baseDir: string;
}

/**
 * Resolves relative file paths against `baseDir` (in place: `config` is the loader's own fresh copy), then checks
 * everything. Returns the problems; none means the config can be used.
 */
export async function validateConfig(config: Config, options: ValidateOptions): Promise<PathProblem[]> {
  resolvePaths(config, options.baseDir);
  const problems: PathProblem[] = [];
  const report = (path: ConfigPath, message: string, at?: 'key') => problems.push(at ? { path, message, at } : { path, message });
  checkServer(config, report);
  checkCertificates(config, report);
  checkRoutes(config, report);
  checkRoles(config, report);
  checkConnectors(config, report);
  await checkFiles(config, report);
  return problems;
}

type Report = (path: ConfigPath, message: string, at?: 'key') => void;

const isUrl = (s: string) => /^https?:\/\//i.test(s);
const hasScheme = (s: string) => /^[a-z][a-z0-9+.-]*:\/\//i.test(s);

/** Resolves the relative file paths of `config` against `baseDir`, in place. */
export function resolvePaths(config: Config, baseDir: string): void {
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(baseDir, p));
  const { server, store, identity } = config;
  if (server.tls) {
    server.tls.cert = abs(server.tls.cert);
    server.tls.key = abs(server.tls.key);
  }
  if (store.sqlite) store.sqlite.path = abs(store.sqlite.path);
  const etcdTls = store.etcd?.tls;
  if (etcdTls) {
    if (etcdTls.ca) etcdTls.ca = abs(etcdTls.ca);
    if (etcdTls.cert) etcdTls.cert = abs(etcdTls.cert);
    if (etcdTls.key) etcdTls.key = abs(etcdTls.key);
  }
  const certs = identity.certificates;
  certs.trust = certs.trust.map((t) => (t === 'internal' ? t : abs(t)));
  certs.crl = certs.crl.map((c) => (hasScheme(c) ? c : abs(c)));
  for (const route of config.routes) {
    if (route.upstream.tls.ca) route.upstream.tls.ca = abs(route.upstream.tls.ca);
  }
}

function checkServer(config: Config, report: Report): void {
  config.server.trustedProxies.forEach((entry, i) => {
    if (!isIpOrCidr(entry)) report(['server', 'trustedProxies', i], `${JSON.stringify(entry)} is not an IP address or a CIDR such as 10.0.0.0/8`);
  });
}

function isIpOrCidr(entry: string): boolean {
  const slash = entry.indexOf('/');
  if (slash === -1) return isIP(entry) !== 0;
  const family = isIP(entry.slice(0, slash));
  const bits = entry.slice(slash + 1);
  if (family === 0 || !/^\d{1,3}$/.test(bits)) return false;
  return Number(bits) <= (family === 4 ? 32 : 128);
}

function checkCertificates(config: Config, report: Report): void {
  config.identity.certificates.crl.forEach((entry, i) => {
    if (hasScheme(entry) && !isUrl(entry)) report(['identity', 'certificates', 'crl', i], `${JSON.stringify(entry)}: CRLs are files or http(s) URLs`);
  });
}

// http(s)://HOST[:PORT][/path], where HOST and PORT may use {N}; no credentials, query or fragment.
const placeholder = String.raw`\{\d+\}`;
const hostPart = String.raw`(?:[a-z0-9_.-]|${placeholder})+|\[[0-9a-f:.]+\]`;
const portPart = String.raw`(?:\d|${placeholder})+`;
const upstreamUrlPattern = new RegExp(`^https?://(${hostPart})(?::(${portPart}))?(/[^\\s?#]*)?$`, 'i');
const tcpAddressPattern = new RegExp(`^(${hostPart}):(${portPart})$`, 'i');

function checkRoutes(config: Config, report: Report): void {
  const connectors = config.connectors.map((c) => c.name);
  const roles = config.roles.map((r) => r.name);
  const authHost = config.server.authHost;
  const names = new Map<string, number>();
  const hosts = new Map<string, number>();
  const aliases = new Map<string, ConfigPath>();
  for (const [i, route] of config.routes.entries()) {
    hosts.set(route.host, hosts.get(route.host) ?? i);
  }

  config.routes.forEach((route, i) => {
    const at = (...rest: (string | number)[]): ConfigPath => ['routes', i, ...rest];

    const first = names.get(route.name);
    if (first === undefined) names.set(route.name, i);
    else report(at('name'), `duplicate route name ${JSON.stringify(route.name)} (also routes[${first}])`);

    const hostOwner = hosts.get(route.host);
    if (hostOwner !== undefined && hostOwner !== i) report(at('host'), `duplicate route host ${JSON.stringify(route.host)} (also routes[${hostOwner}])`);
    if (route.host === authHost) report(at('host'), `${JSON.stringify(route.host)} is the auth host (server.authHost); a route cannot use it`);
    if (route.host.includes('**')) report(at('host'), `${JSON.stringify(route.host)}: two * next to each other cannot be told apart`);

    route.aliases.forEach((alias, k) => {
      const where = at('aliases', k);
      const seen = aliases.get(alias);
      if (seen) report(where, `duplicate alias ${JSON.stringify(alias)} (also ${formatPath(seen)})`);
      else aliases.set(alias, where);
      const owner = hosts.get(alias);
      if (owner !== undefined) report(where, `alias ${JSON.stringify(alias)} is the host of routes[${owner}]`);
      if (alias === authHost) report(where, `alias ${JSON.stringify(alias)} is the auth host (server.authHost)`);
    });

    const stars = (route.host.match(/\*/g) ?? []).length;
    const checkCaptures = (path: ConfigPath, text: string) => {
      for (const m of text.matchAll(/\{(\d+)\}/g)) {
        const n = Number(m[1]);
        if (n < 1 || n > stars) {
          const has = stars === 0 ? 'has no *' : `has ${stars} *`;
          report(path, `{${m[1]}} refers to a * that host ${JSON.stringify(route.host)} does not have (it ${has})`);
        }
      }
    };

    if (route.to !== undefined && route.tcp !== undefined) report(at('tcp'), 'a route has either to or tcp, not both');
    if (route.to === undefined && route.tcp === undefined) report(at(), 'a route needs to (an http(s) upstream or connector:NAME) or tcp (HOST:PORT or connector:NAME)');
    if (route.to !== undefined) {
      if (route.to.startsWith('connector:')) {
        checkConnectorRef(at('to'), route.to, connectors, report);
      } else {
        const m = upstreamUrlPattern.exec(route.to);
        if (!m) report(at('to'), `${JSON.stringify(route.to)} must be http(s)://HOST[:PORT][/path] or connector:NAME`);
        else if (!validPort(m[2])) report(at('to'), `${JSON.stringify(route.to)}: the port must be 1-65535`);
        checkCaptures(at('to'), route.to);
        const tls = route.upstream.tls;
        if (/^http:/i.test(route.to) && (tls.ca !== undefined || tls.serverName !== undefined || tls.insecureSkipVerify)) {
          report(at('upstream', 'tls'), `upstream TLS settings need an https:// upstream (to is ${JSON.stringify(route.to)})`);
        }
      }
    }
    if (route.tcp !== undefined) {
      if (route.tcp.startsWith('connector:')) {
        checkConnectorRef(at('tcp'), route.tcp, connectors, report);
      } else {
        const m = tcpAddressPattern.exec(route.tcp);
        if (!m) report(at('tcp'), `${JSON.stringify(route.tcp)} must be HOST:PORT or connector:NAME`);
        else if (!validPort(m[2])) report(at('tcp'), `${JSON.stringify(route.tcp)}: the port must be 1-65535`);
        checkCaptures(at('tcp'), route.tcp);
      }
    }
    const hostHeader = route.upstream.hostHeader;
    if (hostHeader !== undefined && hostHeader !== 'preserve') checkCaptures(at('upstream', 'hostHeader'), hostHeader);

    const subject = route.allow?.certificateSubject;
    if (subject) {
      for (const key of Object.keys(subject)) {
        if ((certificateSubjectKeys as readonly string[]).includes(key)) continue;
        const suggestion = didYouMean(key, certificateSubjectKeys);
        const hint = suggestion ? `did you mean ${JSON.stringify(suggestion)}?` : `use ${certificateSubjectKeys.join(', ')}`;
        report(at('allow', 'certificateSubject', key), `unknown certificate subject attribute (${hint})`, 'key');
      }
    }
    route.allow?.roles.forEach((role, k) => {
      if (!roles.includes(role)) report(at('allow', 'roles', k), `unknown role ${JSON.stringify(role)}${suggest(role, roles)}`);
    });

    const permissions = new Map<string, number>();
    route.permissions.forEach((p, k) => {
      const seen = permissions.get(p.name);
      if (seen === undefined) permissions.set(p.name, k);
      else report(at('permissions', k, 'name'), `duplicate permission ${JSON.stringify(p.name)} (also permissions[${seen}])`);
    });
  });
}

function validPort(port: string | undefined): boolean {
  if (port === undefined || !/^\d+$/.test(port)) return true;
  const n = Number(port);
  return n >= 1 && n <= 65535;
}

function checkConnectorRef(path: ConfigPath, value: string, connectors: string[], report: Report): void {
  const name = value.slice('connector:'.length);
  if (!connectors.includes(name)) {
    const known = connectors.length === 0 ? ' (no connectors are configured)' : suggest(name, connectors);
    report(path, `unknown connector ${JSON.stringify(name)}${known}`);
  }
}

function suggest(word: string, candidates: readonly string[]): string {
  const s = didYouMean(word, candidates);
  return s === undefined ? '' : ` (did you mean ${JSON.stringify(s)}?)`;
}

function checkRoles(config: Config, report: Report): void {
  const routes = new Map(config.routes.map((r) => [r.name, r] as const));
  const names = new Map<string, number>();
  config.roles.forEach((role, i) => {
    const seen = names.get(role.name);
    if (seen === undefined) names.set(role.name, i);
    else report(['roles', i, 'name'], `duplicate role name ${JSON.stringify(role.name)} (also roles[${seen}])`);
    role.grants.forEach((grant, k) => {
      const [routeName = '', permission] = grant.split(':');
      const route = routes.get(routeName);
      const path: ConfigPath = ['roles', i, 'grants', k];
      if (!route) {
        report(path, `unknown route ${JSON.stringify(routeName)}${suggest(routeName, [...routes.keys()])}`);
      } else if (permission !== undefined && !route.permissions.some((p) => p.name === permission)) {
        const names = route.permissions.map((p) => p.name);
        const has = names.length === 0 ? 'it has no permissions' : `it has ${names.join(', ')}`;
        report(path, `route ${JSON.stringify(routeName)} has no permission ${JSON.stringify(permission)} (${has})`);
      }
    });
  });
}

function checkConnectors(config: Config, report: Report): void {
  const names = new Map<string, number>();
  config.connectors.forEach((c, i) => {
    const seen = names.get(c.name);
    if (seen === undefined) names.set(c.name, i);
    else report(['connectors', i, 'name'], `duplicate connector name ${JSON.stringify(c.name)} (also connectors[${seen}])`);
  });
}

/** Files read at start-up must be there now: a missing one is reported at the setting that names it. */
async function checkFiles(config: Config, report: Report): Promise<void> {
  const files: { path: ConfigPath; file: string; hint?: string }[] = [];
  const { server, store, identity } = config;
  if (server.tls) {
    files.push({ path: ['server', 'tls', 'cert'], file: server.tls.cert }, { path: ['server', 'tls', 'key'], file: server.tls.key });
  }
  const etcdTls = store.etcd?.tls;
  for (const k of ['ca', 'cert', 'key'] as const) {
    const file = etcdTls?.[k];
    if (file) files.push({ path: ['store', 'etcd', 'tls', k], file });
  }
  identity.certificates.trust.forEach((t, i) => {
    if (t === 'internal') return;
    const base = t.split(/[\\/]/).pop() ?? t;
    const hint = didYouMean(base, ['internal']) ? ' (did you mean "internal"?)' : '';
    files.push({ path: ['identity', 'certificates', 'trust', i], file: t, hint });
  });
  identity.certificates.crl.forEach((c, i) => {
    if (!hasScheme(c)) files.push({ path: ['identity', 'certificates', 'crl', i], file: c });
  });
  config.routes.forEach((route, i) => {
    if (route.upstream.tls.ca) files.push({ path: ['routes', i, 'upstream', 'tls', 'ca'], file: route.upstream.tls.ca });
  });
  await Promise.all(
    files.map(async ({ path, file, hint = '' }) => {
      const problem = await fileProblem(file);
      if (problem) report(path, `${problem}${hint}`);
    }),
  );
}

async function fileProblem(file: string): Promise<string | undefined> {
  try {
    const s = await stat(file);
    if (!s.isFile()) return `not a file: ${file}`;
    await access(file, constants.R_OK);
    return undefined;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return `file not found: ${file}`;
    return `cannot read file: ${file} (${code ?? 'error'})`;
  }
}
