/**
 * What the demo keeps in its folder: the store (with the internal CA, its key sealed with the demo's secrets key),
 * the CA certificate to trust, a device certificate for alice (PEM and PKCS#12 with its password), the demo users'
 * passwords and the OpenID client secret, and the configuration Gatehouse runs on. Server certificates are
 * issued by the internal CA per host name as browsers ask for them. Whatever is already there and still fits is
 * reused, so a CA imported into a browser stays trusted and the passwords stay the same across restarts; the
 * configuration is written anew on every start (the backends' and the IdP's ports change).
 */
import { X509Certificate, createPrivateKey, randomBytes, randomInt } from 'node:crypto';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { Secret } from '../core/index.ts';
import { Keyring } from '../authn/index.ts';
import { InternalCa } from '../ca/index.ts';
import { canonicalSerialFromNode } from '../pki/index.ts';
import { openStore } from '../store/index.ts';
import type { SampleBackendName, SampleBackends } from './backends.ts';
import type { IdpOptions } from './idp.ts';

/** Every demo host ends in this; browsers and curl resolve `*.localhost` to the loopback address. */
export const demoDomain = 'localhost';
export const authHost = `gate.${demoDomain}`;
/** The organisation of the demo CA: every certificate it issues names it. */
export const demoOrganisation = 'Gatehouse demo';

export interface DemoRoute {
  readonly name: string;
  readonly backend: SampleBackendName;
  readonly auth: 'public' | 'certificate' | 'login';
  readonly allow?: { readonly users: readonly string[] };
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
    allow: { users: ['alice@demo.localhost'] },
    about: "the same echo app, only with one of alice's device certificates (no sign-in)",
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


export interface DemoFiles {
  /** the folder as the user gave it; every path below starts with it, so they can be pasted as printed */
  readonly dir: string;
  /** the internal CA's certificate (what browsers and curl trust) */
  readonly caCert: string;
  /** the store: the CA with its sealed key, sessions, people */
  readonly store: string;
  /** the demo's `identity.secretsKey` (owner-only) */
  readonly secretsKeyFile: string;
  readonly secretsKey: string;
  /** alice's demo device certificate */
  readonly clientCert: string;
  /** whom the device certificate was issued to */
  readonly clientUser: string;
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

/** The device certificate in `certFile`/`keyFile` when both are there, belong together, and the CA still vouches for it. */
async function existingDevice(certFile: string, keyFile: string, ca: InternalCa, caX509: X509Certificate): Promise<{ certPem: string; keyPem: string } | undefined> {
  const [certPem, keyPem] = await Promise.all([readText(certFile), readText(keyFile)]);
  if (certPem === undefined || keyPem === undefined) return undefined;
  try {
    const cert = new X509Certificate(certPem);
    const record = ca.recordOf(canonicalSerialFromNode(cert.serialNumber));
    const fresh = Date.parse(cert.validTo) - Date.now() > renewBefore;
    const ours = cert.checkIssued(caX509) && cert.verify(caX509.publicKey) && record !== undefined && record.revoked === undefined;
    return fresh && ours && cert.checkPrivateKey(createPrivateKey(keyPem)) ? { certPem, keyPem } : undefined;
  } catch {
    return undefined; // unreadable: issued again
  }
}

/** Creates what is missing in `dir` (made if needed, owner-only) and reuses the rest. */
export async function prepareDemoFiles(dir: string): Promise<DemoFiles> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const at = (name: string) => join(dir, name);
  const f = {
    dir,
    caCert: at('ca.crt'),
    store: at('gatehouse.db'),
    secretsKeyFile: at('secrets.key'),
    clientCert: at('alice-laptop.crt'),
    clientKey: at('alice-laptop.key'),
    clientP12: at('alice-laptop.p12'),
    clientP12PasswordFile: at('alice-laptop.p12.password'),
    idpSecrets: at('idp-secrets.json'),
    config: at('gatehouse.yaml'),
    log: at('access.log'),
  };
  const clientUser = demoEmail('alice');

  let secretsKey = (await readText(f.secretsKeyFile))?.trim();
  if (!secretsKey || secretsKey.length < 32) {
    secretsKey = randomBytes(32).toString('base64url');
    await writePrivate(f.secretsKeyFile, secretsKey + '\n');
  }

  // the internal CA lives in the demo's store, as it does for `gatehouse ca init`
  const store = await openStore({ sqlite: { path: resolve(f.store) } }, '.');
  const ca = new InternalCa({ store, keyring: Keyring.fromSecret(new Secret(secretsKey)), secretsKeyConfigured: true });
  try {
    await ca.start();
    const info = ca.info();
    const caCreated = info?.state !== 'active' || info.notAfter === undefined || info.notAfter - Date.now() < renewBefore;
    if (caCreated) await ca.createRoot({ by: 'gatehouse demo', organisation: demoOrganisation, force: info !== undefined });
    const bundle = ca.caBundlePem();
    if ((await readText(f.caCert)) !== bundle) await writeFile(f.caCert, bundle, { mode: 0o644 });
    const caX509 = new X509Certificate(ca.caCertificatePem());

    let device = await existingDevice(f.clientCert, f.clientKey, ca, caX509);
    let password = (await readText(f.clientP12PasswordFile))?.trim();
    if (!device || !password || (await readText(f.clientP12)) === undefined) {
      const issued = await ca.issue({ user: clientUser, device: 'alice-laptop (demo)', issuedBy: 'gatehouse demo' });
      device = { certPem: issued.certPem + issued.chainPem, keyPem: issued.keyPem! };
      password = issued.p12Password!;
      await writePrivate(f.clientKey, device.keyPem);
      await writeFile(f.clientCert, device.certPem, { mode: 0o644 });
      await writePrivate(f.clientP12, issued.p12!);
      await writePrivate(f.clientP12PasswordFile, password + '\n');
    }

    const idp = await idpSecrets(f.idpSecrets);
    const users = demoUsers.map((u) => ({ ...u, password: idp.passwords[u.email]! }));
    return { ...f, secretsKey, clientUser, clientP12Password: password, caFingerprint: caX509.fingerprint256, caCreated, clientSecret: idp.clientSecret, users };
  } finally {
    ca.close();
    await store.close();
  }
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
      shutdownTimeout: '2s',
    },
    store: { sqlite: { path: abs(files.store) } },
    identity: {
      oidc: { issuer, clientId: demoClientId, clientSecret: files.clientSecret, scopes: ['openid', 'email', 'profile', 'groups'], groupsClaim: 'groups' },
      admins: demoAdmins,
      secretsKey: files.secretsKey,
      certificates: { trust: ['internal'] },
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
