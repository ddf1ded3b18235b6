/**
 * Everything the benchmark runs against, started once and shared by every case: a test CA with ECDSA P-256
 * certificates, the nginx backend (`200 ok`), nginx as the reference reverse proxy, and Gatehouse
 * (`bin/gatehouse.mjs serve` as a child). All on 127.0.0.1.
 */
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { TestCa, type CertFiles } from '../test/harness/certs.ts';
import { Child, freePort, removeOnExit } from './child.ts';
import { backendConfig, proxyConfig } from './nginx-config.ts';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** The host served without a client certificate: resolvable (wrk takes SNI and Host from the URL). */
export const OPEN_HOST = 'localhost';
/** The host that needs a client certificate; the mTLS generator sets SNI and Host itself. */
export const MTLS_HOST = 'mtls.bench.test';
export const SUBJECT_OU = 'bench';

export interface TargetOptions {
  readonly workers: number;
  readonly accessLog: boolean;
  /** extra node flags for Gatehouse (e.g. --cpu-prof) */
  readonly gatehouseNodeArgs?: readonly string[];
  readonly nginx?: boolean;
  readonly keepDir?: boolean;
  /** another checkout's bin/gatehouse.mjs (to compare a change), default this one's */
  readonly gatehouseBin?: string;
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
  /** where each target's output goes */
  readonly files: { gatehouseLog: string; nginxAccessLog: string | undefined };
  close(): Promise<void>;
}

function nginx(name: string, dir: string, conf: string): Child {
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
    const configFile = join(gdir, 'gatehouse.yaml');
    writeFileSync(
      configFile,
      stringify({
        server: {
          https: `127.0.0.1:${gatehousePort}`,
          authHost: 'gate.bench.test',
          workers: o.workers,
          tls: { cert: server.cert, key: server.key },
          accessLog: o.accessLog,
          shutdownTimeout: '5s',
        },
        store: { sqlite: { path: join(gdir, 'gatehouse.db') } },
        identity: { certificates: { trust: [ca.cert] } },
        routes: [
          { name: 'open', host: OPEN_HOST, to: `http://127.0.0.1:${backendPort}`, auth: 'public' },
          {
            name: 'mtls',
            host: MTLS_HOST,
            to: `http://127.0.0.1:${backendPort}`,
            auth: 'certificate',
            allow: { certificateSubject: { OU: SUBJECT_OU } },
          },
        ],
      }),
    );
    const gatehouseLog = join(gdir, 'stdout.log');
    const gatehouse = Child.start({
      name: 'gatehouse',
      command: process.execPath,
      args: [...(o.gatehouseNodeArgs ?? []), o.gatehouseBin ?? join(repoRoot, 'bin', 'gatehouse.mjs'), 'serve', '-c', configFile],
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
      files: { gatehouseLog, nginxAccessLog: o.accessLog && proxy ? join(dir, 'nginx', 'access.log') : undefined },
      close: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
