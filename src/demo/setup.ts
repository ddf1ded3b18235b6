/**
 * What the demo keeps in its folder: a CA, a server certificate for every demo host, a client certificate
 * (PEM and PKCS#12 with its password), the demo users' passwords and the OpenID client secret, and the
 * configuration Gatehouse runs on. Whatever is already there and still fits is reused, so a CA imported into a
 * browser stays trusted and the passwords stay the same across restarts; the configuration is written anew on
 * every start (the backends' and the IdP's ports change).
 */
import { X509Certificate, createPrivateKey, randomBytes, randomInt } from 'node:crypto';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { createCa, encodePkcs12, issueCertificate, type CertificateAuthority, type SubjectInput } from '../pki/index.ts';
import type { SampleBackendName, SampleBackends } from './backends.ts';
import type { IdpOptions } from './idp.ts';

/** Every demo host ends in this; browsers and curl resolve `*.localhost` to the loopback address. */
export const demoDomain = 'localhost';
export const authHost = `gate.${demoDomain}`;
export const clientSubject = { CN: 'demo-user', OU: 'demo' } as const satisfies SubjectInput;

export interface DemoRoute {
  readonly name: string;
  readonly backend: SampleBackendName;
  readonly auth: 'public' | 'certificate' | 'login';
  readonly allow?: { readonly certificateSubject: Readonly<Record<string, string>> };
  /** one line for the banner */
  readonly about: string;
}

/** The demo's routes, one line each; each is published at `NAME.localhost`. */
export const demoRoutes: readonly DemoRoute[] = [
  { name: 'app', backend: 'echo', auth: 'login', about: 'the echo app behind sign-in: shows who you are (X-Gatehouse-*)' },
  { name: 'echo', backend: 'echo', auth: 'public', about: 'echo app: shows the headers Gatehouse sent it' },
  {
    name: 'secure',
    backend: 'echo',
    auth: 'certificate',
    allow: { certificateSubject: { OU: 'demo' } },
    about: 'the same echo app, only with a client certificate whose subject has OU=demo',
  },
  { name: 'redirect', backend: 'redirect', auth: 'public', about: 'redirects to its internal address; Gatehouse rewrites the Location' },
  { name: 'ws', backend: 'ws', auth: 'public', about: 'WebSocket echo page' },
];

export function routeHost(route: DemoRoute): string {
  return `${route.name}.${demoDomain}`;
}

const demoEmail = (name: string) => `${name}@demo.${demoDomain}`;

export interface DemoUser {
  readonly email: string;
  readonly name: string;
  /** what the built-in IdP says in the `groups` claim */
  readonly groups: readonly string[];
  /** one line for the banner */
  readonly can: string;
}

/** The people of the built-in OpenID provider: one root admin, one member of a role, one with no access. */
export const demoUsers: readonly DemoUser[] = [
  { email: demoEmail('admin'), name: 'Demo Admin', groups: [], can: 'root admin (identity.admins): every route that needs sign-in' },
  { email: demoEmail('alice'), name: 'Alice', groups: ['staff'], can: `role staff (members in the config; IdP group staff too): app.${demoDomain}; admin of staff: adds members and approves requests in the dashboard` },
  { email: demoEmail('bob'), name: 'Bob', groups: [], can: `signs in, but no rule or role lets him in: app.${demoDomain} answers 403 with a "Request access" button` },
];
const demoAdmins = [demoEmail('admin')];
const demoRoles = [{ name: 'staff', description: 'demo staff: may use the app route', grants: ['app'], members: [demoEmail('alice')], admins: [demoEmail('alice')] }];
const demoClientId = 'gatehouse-demo';

/** The names on the server certificate: the wildcard and (OpenSSL matches no `*.localhost` SAN) each host. */
export function serverNames(): string[] {
  return [`*.${demoDomain}`, authHost, ...demoRoutes.map(routeHost), demoDomain];
}

export interface DemoFiles {
  /** the folder as the user gave it; every path below starts with it, so they can be pasted as printed */
  readonly dir: string;
  readonly caCert: string;
  readonly caKey: string;
  readonly serverCert: string;
  readonly serverKey: string;
  readonly clientCert: string;
  readonly clientKey: string;
  readonly clientP12: string;
  readonly clientP12PasswordFile: string;
  readonly clientP12Password: string;
  readonly caFingerprint: string;
  /** false when the CA was already there */
  readonly caCreated: boolean;
  /** the demo users' passwords and the OpenID client secret (JSON, owner-only) */
  readonly idpSecrets: string;
  readonly clientSecret: string;
  /** the demo users with their passwords */
  readonly users: readonly (DemoUser & { readonly password: string })[];
  readonly config: string;
  readonly log: string;
}

/** Validity left before a certificate is issued again. */
const renewBefore = 30 * 24 * 3600 * 1000;

async function readText(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Writes a file only its owner may read (also when it was already there with looser rights). */
async function writePrivate(path: string, data: string | Buffer): Promise<void> {
  await writeFile(path, data, { mode: 0o600 });
  await chmod(path, 0o600);
}

interface Pair {
  readonly certPem: string;
  readonly keyPem: string;
}

/** The pair in `certFile`/`keyFile` when both are there, belong together and `fits` the certificate. */
async function existingPair(certFile: string, keyFile: string, fits: (cert: X509Certificate) => boolean): Promise<Pair | undefined> {
  const [certPem, keyPem] = await Promise.all([readText(certFile), readText(keyFile)]);
  if (certPem === undefined || keyPem === undefined) return undefined;
  try {
    const cert = new X509Certificate(certPem);
    const fresh = Date.parse(cert.validTo) - Date.now() > renewBefore;
    return fresh && cert.checkPrivateKey(createPrivateKey(keyPem)) && fits(cert) ? { certPem, keyPem } : undefined;
  } catch {
    return undefined; // unreadable: made again
  }
}

async function writePair(certFile: string, keyFile: string, pair: Pair): Promise<void> {
  await writePrivate(keyFile, pair.keyPem);
  await writeFile(certFile, pair.certPem, { mode: 0o644 });
}

function issuedBy(ca: X509Certificate): (cert: X509Certificate) => boolean {
  return (cert) => cert.checkIssued(ca) && cert.verify(ca.publicKey);
}

/** Creates what is missing in `dir` (made if needed, owner-only) and reuses the rest. */
export async function prepareDemoFiles(dir: string): Promise<DemoFiles> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const at = (name: string) => join(dir, name);
  const f = {
    dir,
    caCert: at('ca.crt'),
    caKey: at('ca.key'),
    serverCert: at('server.crt'),
    serverKey: at('server.key'),
    clientCert: at('demo-client.crt'),
    clientKey: at('demo-client.key'),
    clientP12: at('demo-client.p12'),
    clientP12PasswordFile: at('demo-client.p12.password'),
    idpSecrets: at('idp-secrets.json'),
    config: at('gatehouse.yaml'),
    log: at('access.log'),
  };

  let caPair = await existingPair(f.caCert, f.caKey, (c) => c.ca);
  const caCreated = caPair === undefined;
  if (!caPair) {
    caPair = await createCa({ subject: { CN: 'Gatehouse Demo CA', O: 'Gatehouse demo' } });
    await writePair(f.caCert, f.caKey, caPair);
  }
  const caX509 = new X509Certificate(caPair.certPem);
  const ca: CertificateAuthority = caPair;

  const names = serverNames();
  const wanted = [...names.map((n) => `DNS:${n}`), 'IP Address:127.0.0.1'];
  const coversAll = (c: X509Certificate) => {
    const has = new Set((c.subjectAltName ?? '').split(', '));
    return wanted.every((n) => has.has(n));
  };
  if (caCreated || !(await existingPair(f.serverCert, f.serverKey, (c) => issuedBy(caX509)(c) && coversAll(c)))) {
    const server = await issueCertificate({ ca, kind: 'server', subject: { CN: `*.${demoDomain}` }, dnsNames: names, ipAddresses: ['127.0.0.1'] });
    await writePair(f.serverCert, f.serverKey, server);
  }

  let client = caCreated ? undefined : await existingPair(f.clientCert, f.clientKey, issuedBy(caX509));
  const clientCreated = client === undefined;
  if (!client) {
    client = await issueCertificate({ ca, kind: 'client', subject: clientSubject });
    await writePair(f.clientCert, f.clientKey, client);
  }

  let password = (await readText(f.clientP12PasswordFile))?.trim();
  if (clientCreated || !password || (await readText(f.clientP12)) === undefined) {
    password = randomBytes(12).toString('base64url');
    const p12 = encodePkcs12({ keyPem: client.keyPem, certPem: client.certPem, chainPems: [caPair.certPem], password, friendlyName: 'Gatehouse demo-user' });
    await writePrivate(f.clientP12, p12);
    await writePrivate(f.clientP12PasswordFile, password + '\n');
  }

  const idp = await idpSecrets(f.idpSecrets);
  const users = demoUsers.map((u) => ({ ...u, password: idp.passwords[u.email]! }));
  return { ...f, clientP12Password: password, caFingerprint: caX509.fingerprint256, caCreated, clientSecret: idp.clientSecret, users };
}

/** A random password that is easy to type: letters and digits, none that look alike (about 70 bits for 12). */
function typeable(length: number): string {
  const alphabet = 'ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789';
  return Array.from({ length }, () => alphabet[randomInt(alphabet.length)]).join('');
}

interface IdpSecrets {
  clientSecret: string;
  passwords: Record<string, string>;
}

/** The passwords and client secret in `path`; what is missing or unreadable is made anew (and the file rewritten). */
async function idpSecrets(path: string): Promise<IdpSecrets> {
  let kept: Partial<IdpSecrets> = {};
  try {
    kept = (JSON.parse((await readText(path)) ?? '{}') as Partial<IdpSecrets> | null) ?? {};
  } catch {
    // unreadable: made again
  }
  const usable = (v: unknown): v is string => typeof v === 'string' && v.length >= 12;
  const passwords = Object.fromEntries(
    demoUsers.map((u) => {
      const password = kept.passwords?.[u.email];
      return [u.email, usable(password) ? password : typeable(12)];
    }),
  );
  const clientSecret = usable(kept.clientSecret) ? kept.clientSecret : randomBytes(32).toString('base64url');
  const secrets = { clientSecret, passwords };
  if (JSON.stringify(secrets) !== JSON.stringify(kept)) await writePrivate(path, JSON.stringify(secrets, null, 2) + '\n');
  return secrets;
}

function origin(host: string, port: number): string {
  return `https://${host}${port === 443 ? '' : `:${port}`}`;
}

/** The built-in IdP's users and its one client, Gatehouse, whose sign-in comes back to the auth host on `port`. */
export function demoIdpOptions(files: DemoFiles, port: number): IdpOptions {
  return {
    users: files.users.map((u) => ({ email: u.email, password: u.password, name: u.name, groups: [...u.groups] })),
    clients: [{ clientId: demoClientId, clientSecret: files.clientSecret, redirectUris: [`${origin(authHost, port)}/.gatehouse/callback`] }],
  };
}

/**
 * Writes `gatehouse.yaml` (owner-only: it holds the client secret) for the running backends and the IdP at
 * `issuer`; paths in it are absolute so it works from anywhere.
 */
export async function writeDemoConfig(files: DemoFiles, port: number, backends: SampleBackends, issuer: string): Promise<string> {
  const abs = (path: string) => resolve(path);
  const config = {
    server: {
      https: `127.0.0.1:${port}`,
      authHost,
      workers: 1,
      tls: { cert: abs(files.serverCert), key: abs(files.serverKey) },
      shutdownTimeout: '2s',
    },
    store: { sqlite: { path: abs(join(files.dir, 'gatehouse.db')) } },
    identity: {
      oidc: { issuer, clientId: demoClientId, clientSecret: files.clientSecret, scopes: ['openid', 'email', 'profile', 'groups'], groupsClaim: 'groups' },
      admins: demoAdmins,
      certificates: { trust: [abs(files.caCert)] },
    },
    routes: demoRoutes.map((r) => ({
      name: r.name,
      host: routeHost(r),
      to: backends[r.backend].origin,
      auth: r.auth,
      ...(r.allow ? { allow: r.allow } : {}),
    })),
    roles: demoRoles,
  };
  const header = '# Written by `gatehouse demo` on every start: edits are overwritten (the sample apps and the IdP get new ports each time).\n';
  await writePrivate(files.config, header + stringify(config));
  return files.config;
}
