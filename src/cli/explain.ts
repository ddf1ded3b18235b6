/**
 * `gatehouse explain -c FILE [--user EMAIL] [--cert FILE] [--method M] URL`: the decision Gatehouse would
 * make for that request, and the rule or missing grant that decided it. Exit 0 either way.
 */
import { readFile } from 'node:fs/promises';
import { X509Certificate } from 'node:crypto';
import { formatProblems, loadConfig, type Config } from '../config/index.ts';
import { dnFields, formatDn, RevocationLists, splitPemCertificates, nameKey } from '../authn/index.ts';
import { canonicalSerialFromNode } from '../pki/index.ts';
import { compilePolicy, explain, type CertificateFacts } from '../policy/index.ts';
import { RouteTable, normalizePath, splitTarget } from '../proxy/index.ts';

export interface ExplainOptions {
  readonly config: string;
  readonly user?: string;
  readonly cert?: string;
  readonly method?: string;
  readonly verbose?: boolean;
}

async function certificateFacts(config: Readonly<Config>, file: string): Promise<CertificateFacts> {
  const pem = await readFile(file, 'utf8');
  const cert = new X509Certificate(pem);
  const subject = dnFields(cert.subject);
  const base = { subject, subjectDn: formatDn(subject), serial: canonicalSerialFromNode(cert.serialNumber) };
  const cas: string[] = [];
  for (const t of config.identity.certificates.trust) if (t !== 'internal') cas.push(...splitPemCertificates(await readFile(t, 'utf8')));
  const issuer = cas.map((p) => new X509Certificate(p)).find((ca) => cert.checkIssued(ca) && cert.verify(ca.publicKey));
  if (!issuer) return { ...base, status: 'untrusted' };
  const now = Date.now();
  if (now > Date.parse(cert.validTo)) return { ...base, status: 'expired' };
  if (now < Date.parse(cert.validFrom)) return { ...base, status: 'not-yet-valid' };
  const crls = config.identity.certificates.crl.filter((c) => !/^https?:/.test(c));
  if (crls.length) {
    const lists = new RevocationLists({ sources: crls, trustedCaPems: cas, refreshMs: 3_600_000 });
    await lists.start();
    lists.close();
    if (lists.isRevoked(nameKey(dnFields(issuer.subject)), base.serial)) return { ...base, status: 'revoked' };
  }
  return { ...base, status: 'valid' };
}

export async function runExplain(url: string, o: ExplainOptions): Promise<number> {
  const loaded = await loadConfig(o.config);
  if (!loaded.ok) {
    process.stderr.write(formatProblems(loaded.problems) + '\n');
    return 1;
  }
  const config = loaded.config;
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new Error(`"${url}" is not a URL (use e.g. https://grafana.corp.example.com/path)`);
  }
  const host = u.hostname.toLowerCase();
  const found = new RouteTable(config.routes).matchDestination(host);
  if (!found) {
    process.stdout.write(`deny: no route is published at ${host} (ERR_ROUTE_NOT_FOUND)\n`);
    return 0;
  }
  const route = found.match.route;
  const path = normalizePath(splitTarget(u.pathname).path);
  if (path === undefined) {
    process.stdout.write('deny: the path cannot be normalised safely (ERR_BAD_REQUEST)\n');
    return 0;
  }
  const policy = compilePolicy(config.routes, config.roles);
  const certificate: CertificateFacts = o.cert ? await certificateFacts(config, o.cert) : { status: 'missing' };
  const email = o.user?.toLowerCase();
  const { decision, considered } = explain({
    route: policy.route(route.name) ?? route.config,
    method: (o.method ?? 'GET').toUpperCase(),
    path,
    certificate,
    loginAvailable: config.identity.oidc !== undefined,
    admins: new Set(config.identity.admins),
    ...(email ? { user: { email, groups: [], roles: policy.rolesFor(email, []) } } : {}),
  });
  const line = decision.allow ? `allow: ${decision.rule}` : `deny: ${decision.reason} (${decision.code})`;
  process.stdout.write(`${line}\n`);
  if (o.verbose) {
    process.stdout.write(`route: ${route.name} (auth: ${route.config.auth}), ${(o.method ?? 'GET').toUpperCase()} ${path}\n`);
    for (const c of considered) process.stdout.write(`  ${c.matched ? '✓' : '·'} ${c.rule}\n`);
  }
  return 0;
}
