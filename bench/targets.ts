/**
 * Everything the benchmark runs against, started once and shared by every case: a test CA with ECDSA P-256
 * certificates, the nginx backend (`200 ok`), nginx as the reference reverse proxy, and Gatehouse
 * (`bin/gatehouse.mjs serve` as a child). All on 127.0.0.1.
 *
 * Gatehouse also gets an `auth: login` route with identity headers and a signed-in session for it, made
 * without an IdP: `identity.oidc` names a loopback issuer that is never contacted (discovery happens only
 * when someone actually signs in), `identity.secretsKey` is fixed, and the session is written into
 * Gatehouse's SQLite store before Gatehouse starts, with a keyring from the same secret, so the cookie's MAC
 * is the one Gatehouse computes.
 */
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { TestCa, type CertFiles } from '../test/harness/certs.ts';
import { Keyring, SESSION_COOKIE, SessionBook } from '../src/authn/index.ts';
import { Secret } from '../src/core/index.ts';
import { openSqliteStore, StoreMirror, type Store } from '../src/store/index.ts';
import { Child, freePort, removeOnExit } from './child.ts';
import { backendConfig, proxyConfig } from './nginx-config.ts';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** The host served without a client certificate: resolvable (wrk takes SNI and Host from the URL). */
export const OPEN_HOST = 'localhost';
/** The host that needs a client certificate; the mTLS generator sets SNI and Host itself. */
export const MTLS_HOST = 'mtls.bench.test';
/** Gatehouse's auth host (the JWKS, sign-out's next stop, connectors dial it). */
export const AUTH_HOST = 'gate.bench.test';
export const SUBJECT_OU = 'bench';
/**
 * The host of the `auth: login` route. It must differ from OPEN_HOST and be resolvable without touching
 * /etc/hosts: wrk takes SNI and Host from the URL and Gatehouse refuses a Host that differs from the SNI
 * (421), so a made-up name with `-H Host:` does not work. An IP literal does (wrk sends it as SNI too).
 */
export const LOGIN_HOST = '127.0.0.1';
/** The signed-in user: allowed on the login route by `allow.users`, given LOGIN_ROLE through LOGIN_GROUP. */
export const LOGIN_USER = 'bench-user@bench.test';
export const LOGIN_GROUP = 'bench-group';
export const LOGIN_ROLE = 'bench-reader';
/** Fixed so that the benchmark can compute the same cookie MAC as Gatehouse. Not a secret. */
const SECRETS_KEY = 'gatehouse-bench-secrets-key-not-secret';
const SESSION_TTL = { config: '12h', ms: 12 * 3600_000 };
const SESSION_IDLE = { config: '2h', ms: 2 * 3600_000 };

export interface TargetOptions {
  readonly workers: number;
  readonly accessLog: boolean;
  /** extra node flags for Gatehouse (e.g. --cpu-prof) */
  readonly gatehouseNodeArgs?: readonly string[];
  readonly nginx?: boolean;
  readonly keepDir?: boolean;
  /** another checkout's bin/gatehouse.mjs (to compare a change), default this one's */
  readonly gatehouseBin?: string;
  /**
   * `identityHeaders` of the login route (case 3); default on, `BENCH_IDENTITY_HEADERS=off` turns it off to
   * tell the cost of the session lookup from the cost of the headers
   */
  readonly identityHeaders?: boolean;
}

export interface Targets {
  readonly dir: string;
  readonly caCert: string;
  /** the certificate both proxies serve */
  readonly server: CertFiles;
  readonly client: CertFiles;
  /** trusted, but its subject does not match the mTLS route */
  readonly stranger: CertFiles;
  readonly backendPort: number;
  readonly nginxPort: number | undefined;
  readonly gatehousePort: number;
  readonly backend: Child;
  readonly nginx: Child | undefined;
  readonly gatehouse: Child;
  /** `__Host-gatehouse=…`: the Cookie header of a signed-in session, valid for LOGIN_HOST */
  readonly loginCookie: string;
  /** whether the login route sends X-Gatehouse-User/-Roles/-Jwt-Assertion */
  readonly identityHeaders: boolean;
  /** where each target's output goes */
  readonly files: { gatehouseLog: string; gatehouseDb: string; nginxAccessLog: string | undefined };
  close(): Promise<void>;
}

/** Starts nginx in the foreground with `conf` written to DIR/nginx.conf (DIR made if missing). */
export function nginx(name: string, dir: string, conf: string): Child {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, 'nginx.conf');
  writeFileSync(file, conf);
  return Child.start({
    name,
    command: 'nginx',
    args: ['-p', dir, '-c', file, '-e', join(dir, 'error.log')],
    stdout: join(dir, 'stdout.log'),
    stderr: join(dir, 'stderr.log'),
    stopSignal: 'SIGQUIT',
  });
}

/** A session for LOGIN_USER in `store`, as a sign-in would make it (SessionBook.create: stored hashed, kind `session`); returns the cookie value for `host`. */
export async function createSessionIn(store: Store, host: string): Promise<string> {
  const keyring = Keyring.fromSecret(new Secret(SECRETS_KEY));
  const book = new SessionBook(store, new StoreMirror(store, ['session']), keyring, { ttlMs: SESSION_TTL.ms, idleMs: SESSION_IDLE.ms });
  const { secret } = await book.create(LOGIN_USER, [LOGIN_GROUP], undefined);
  return book.cookieValue(secret, host);
}

/** An API token for LOGIN_USER in `store` (what `gatehouse tunnel --token` sends). */
export async function createTokenIn(store: Store): Promise<string> {
  const keyring = Keyring.fromSecret(new Secret(SECRETS_KEY));
  const book = new SessionBook(store, new StoreMirror(store, ['token']), keyring, { ttlMs: SESSION_TTL.ms, idleMs: SESSION_IDLE.ms });
  return (await book.issueToken(LOGIN_USER, 'bench', SESSION_TTL.ms, 'api')).token;
}

/**
 * Creates a session for LOGIN_USER in the SQLite store at `dbPath`, as a sign-in would (SessionBook.create:
 * stored hashed, kind `session`), and returns the cookie value for `host`. Run before Gatehouse starts: its
 * workers load the session into their mirrors when they open the store.
 */
async function createSession(dbPath: string, host: string): Promise<string> {
  const store = await openSqliteStore(dbPath);
  try {
    return await createSessionIn(store, host);
  } finally {
    await store.close();
  }
}

export interface GatehouseConfigOptions {
  readonly port: number;
  readonly workers: number;
  readonly accessLog: boolean;
  readonly server: CertFiles;
  readonly caCert: string;
  readonly backendPort: number;
  readonly identityHeaders: boolean;
  /** the `store:` section */
  readonly store: Record<string, unknown>;
}

/**
 * The configuration of the benchmark's Gatehouse: the `open`, `mtls` and `login` routes to the backend. The
 * etcd case runs more instances of it on another store.
 */
export function gatehouseConfig(o: GatehouseConfigOptions): Record<string, unknown> {
  return {
    server: {
      https: `127.0.0.1:${o.port}`,
      authHost: AUTH_HOST,
      workers: o.workers,
      tls: { cert: o.server.cert, key: o.server.key },
      accessLog: o.accessLog,
      shutdownTimeout: '5s',
    },
    store: o.store,
    identity: identityConfig(o.caCert),
    routes: [
      { name: 'open', host: OPEN_HOST, to: `http://127.0.0.1:${o.backendPort}`, auth: 'public' },
      {
        name: 'mtls',
        host: MTLS_HOST,
        to: `http://127.0.0.1:${o.backendPort}`,
        auth: 'certificate',
        allow: { certificateSubject: { OU: SUBJECT_OU } },
      },
      {
        name: 'login',
        host: LOGIN_HOST,
        to: `http://127.0.0.1:${o.backendPort}`,
        auth: 'login',
        allow: { users: [LOGIN_USER] },
        identityHeaders: o.identityHeaders,
      },
    ],
    roles: [{ name: LOGIN_ROLE, groups: [LOGIN_GROUP] }],
  };
}

/** `identity:` of every benchmark Gatehouse: the never-contacted issuer, the fixed secrets key, the test CA trusted for devices. */
export function identityConfig(caCert: string): Record<string, unknown> {
  // never contacted: discovery happens only when someone signs in; port 9 (discard) has no listener anyway
  const issuer = 'http://127.0.0.1:9/';
  return {
    oidc: { issuer, clientId: 'gatehouse-bench' },
    secretsKey: SECRETS_KEY,
    session: { ttl: SESSION_TTL.config, idle: SESSION_IDLE.config },
    certificates: { trust: [caCert] },
  };
}

/** Writes `DIR/gatehouse.yaml`; returns its path. */
export function writeConfig(dir: string, config: Record<string, unknown>): string {
  const file = join(dir, 'gatehouse.yaml');
  writeFileSync(file, stringify(config));
  return file;
}

export interface GatehouseStart {
  readonly name: string;
  /** its folder: gatehouse.yaml, stdout.log, stderr.log */
  readonly dir: string;
  readonly config: Record<string, unknown>;
  readonly port: number;
  readonly nodeArgs?: readonly string[];
  readonly bin?: string;
}

/** Writes `config` into `dir` and runs `bin/gatehouse.mjs serve` on it as a child; resolves once it listens. */
export async function startGatehouseChild(o: GatehouseStart): Promise<Child> {
  const configFile = writeConfig(o.dir, o.config);
  const child = Child.start({
    name: o.name,
    command: process.execPath,
    args: [...(o.nodeArgs ?? []), o.bin ?? join(repoRoot, 'bin', 'gatehouse.mjs'), 'serve', '-c', configFile],
    cwd: o.dir,
    stdout: join(o.dir, 'stdout.log'),
    stderr: join(o.dir, 'stderr.log'),
    env: { ...process.env, NODE_ENV: 'production' },
  });
  try {
    await child.waitForPort(o.port, 60_000);
  } catch (err) {
    await child.stop();
    throw err;
  }
  return child;
}

export async function startTargets(o: TargetOptions): Promise<Targets> {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-bench-'));
  const cleanup = removeOnExit(dir);
  if (o.keepDir) cleanup.keep();
  // nginx workers run as nobody when we are root: they must reach their temp directories
  chmodSync(dir, 0o755);
  const pki = join(dir, 'pki');
  mkdirSync(pki, { mode: 0o755 });
  const ca = new TestCa(pki, 'ca', '/CN=Gatehouse Bench CA/O=Gatehouse Bench');
  const server = ca.server([OPEN_HOST, MTLS_HOST, 'gate.bench.test', '127.0.0.1']);
  const client = ca.client(`/CN=bench-client/O=Gatehouse Bench/OU=${SUBJECT_OU}`);
  const stranger = ca.client('/CN=stranger/O=Elsewhere/OU=other');

  const children: Child[] = [];
  const stopAll = async () => {
    await Promise.all(children.map((c) => c.stop()));
    if (!o.keepDir) rmSync(dir, { recursive: true, force: true });
  };
  try {
    const backendPort = await freePort();
    const backend = nginx('backend', join(dir, 'backend'), backendConfig({ dir: join(dir, 'backend'), port: backendPort, workers: o.workers }));
    children.push(backend);
    await backend.waitForPort(backendPort);

    let nginxPort: number | undefined;
    let proxy: Child | undefined;
    if (o.nginx !== false) {
      nginxPort = await freePort();
      const ndir = join(dir, 'nginx');
      proxy = nginx(
        'nginx',
        ndir,
        proxyConfig({
          dir: ndir,
          port: nginxPort,
          backendPort,
          workers: o.workers,
          cert: server.cert,
          key: server.key,
          clientCa: ca.cert,
          openHost: OPEN_HOST,
          mtlsHost: MTLS_HOST,
          subjectOu: SUBJECT_OU,
          accessLog: o.accessLog,
        }),
      );
      children.push(proxy);
      await proxy.waitForPort(nginxPort);
    }

    const gatehousePort = await freePort();
    const gdir = join(dir, 'gatehouse');
    mkdirSync(gdir);
    const dbPath = join(gdir, 'gatehouse.db');
    const identityHeaders = o.identityHeaders ?? process.env.BENCH_IDENTITY_HEADERS !== 'off';
    const config = gatehouseConfig({
      port: gatehousePort,
      workers: o.workers,
      accessLog: o.accessLog,
      server,
      caCert: ca.cert,
      backendPort,
      identityHeaders,
      store: { sqlite: { path: dbPath } },
    });
    const loginCookie = `${SESSION_COOKIE}=${await createSession(dbPath, LOGIN_HOST)}`;
    const gatehouseLog = join(gdir, 'stdout.log');
    const gatehouse = Child.start({
      name: 'gatehouse',
      command: process.execPath,
      args: [...(o.gatehouseNodeArgs ?? []), o.gatehouseBin ?? join(repoRoot, 'bin', 'gatehouse.mjs'), 'serve', '-c', writeConfig(gdir, config)],
      cwd: gdir,
      stdout: gatehouseLog,
      stderr: join(gdir, 'stderr.log'),
      env: { ...process.env, NODE_ENV: 'production' },
    });
    children.push(gatehouse);
    await gatehouse.waitForPort(gatehousePort, 60_000);

    return {
      dir,
      caCert: ca.cert,
      server,
      client,
      stranger,
      backendPort,
      nginxPort,
      gatehousePort,
      backend,
      nginx: proxy,
      gatehouse,
      loginCookie,
      identityHeaders,
      files: { gatehouseLog, gatehouseDb: dbPath, nginxAccessLog: o.accessLog && proxy ? join(dir, 'nginx', 'access.log') : undefined },
      close: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
