/**
 * What the etcd and revocation cases run against, beside the main targets and started only for them: one etcd
 * member (Debian's `etcd-server`, plain HTTP on 127.0.0.1, data in the bench's temp folder, default fsync) and two
 * Gatehouse instances ("A" and "B") on it, each with the main Gatehouse's configuration (bench/targets.ts
 * `gatehouseConfig`: same routes, certificates, identity and access log) except the store and the number of
 * workers. The login session of the `login` load is created in etcd before the instances start, as case 3 does
 * in SQLite; the bench keeps a store client open to make the revocation case's sessions while they run.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { SESSION_COOKIE } from '../src/authn/index.ts';
import { openEtcdStore, type EtcdStore } from '../src/store/index.ts';
import { Child, freePort } from './child.ts';
import { KeepAliveClient } from './keepalive-client.ts';
import { LOGIN_HOST, OPEN_HOST, createSessionIn, gatehouseConfig, startGatehouseChild, type Targets } from './targets.ts';

export interface EtcdOptions {
  /** workers of each instance */
  readonly workers: number;
  readonly accessLog: boolean;
  readonly identityHeaders: boolean;
}

export interface EtcdInstance {
  readonly name: string;
  readonly port: number;
  readonly child: Child;
}

export interface EtcdTargets {
  readonly etcd: Child;
  readonly endpoint: string;
  readonly version: string;
  /** the bench's own client of the same etcd (to create sessions) */
  readonly store: EtcdStore;
  readonly instances: readonly [EtcdInstance, EtcdInstance];
  /** `__Host-gatehouse=…` of a session in etcd, valid on LOGIN_HOST of both instances */
  readonly loginCookie: string;
  close(): Promise<void>;
}

async function healthy(url: string): Promise<boolean> {
  try {
    const r = await fetch(`${url}/health`, { signal: AbortSignal.timeout(1000) });
    return r.ok && ((await r.json()) as { health?: string }).health === 'true';
  } catch {
    return false;
  }
}

export async function startEtcdTargets(t: Targets, o: EtcdOptions): Promise<EtcdTargets> {
  const dir = join(t.dir, 'etcd');
  mkdirSync(dir, { recursive: true });
  const children: Child[] = [];
  let store: EtcdStore | undefined;
  const close = async () => {
    await store?.close().catch(() => undefined);
    for (const c of [...children].reverse()) await c.stop();
  };
  try {
    const [clientPort, peerPort] = [await freePort(), await freePort()];
    const endpoint = `http://127.0.0.1:${clientPort}`;
    const peer = `http://127.0.0.1:${peerPort}`;
    const etcd = Child.start({
      name: 'etcd',
      command: 'etcd',
      args: [
        '--name', 'bench', '--data-dir', join(dir, 'data'),
        '--listen-client-urls', endpoint, '--advertise-client-urls', endpoint,
        '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer,
        '--initial-cluster', `bench=${peer}`, '--initial-cluster-state', 'new',
        '--logger', 'zap', '--log-outputs', 'stderr', '--log-level', 'warn',
      ],
      cwd: dir,
      stdout: join(dir, 'etcd.log'),
      stderr: join(dir, 'etcd.log'),
    });
    children.push(etcd);
    const deadline = Date.now() + 20_000;
    while (!(await healthy(endpoint))) {
      if (!etcd.running) throw new Error(`etcd exited at start (is Debian's etcd-server installed?):\n${etcd.tail()}`);
      if (Date.now() > deadline) throw new Error(`etcd did not become healthy:\n${etcd.tail()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const version = ((await (await fetch(`${endpoint}/version`)).json()) as { etcdserver?: string }).etcdserver ?? '?';
    // sweepInterval 0: the bench's client must not sweep (the instances do)
    store = await openEtcdStore({ endpoints: [endpoint], sweepInterval: 0 });
    const loginCookie = `${SESSION_COOKIE}=${await createSessionIn(store, LOGIN_HOST)}`;
    const instances: EtcdInstance[] = [];
    for (const name of ['A', 'B']) {
      const port = await freePort();
      const idir = join(dir, name);
      mkdirSync(idir);
      const config = gatehouseConfig({
        port,
        workers: o.workers,
        accessLog: o.accessLog,
        server: t.server,
        caCert: t.caCert,
        backendPort: t.backendPort,
        identityHeaders: o.identityHeaders,
        store: { etcd: { endpoints: [endpoint] } },
      });
      const child = await startGatehouseChild({ name: `gatehouse ${name} (etcd)`, dir: idir, config, port });
      children.push(child);
      instances.push({ name, port, child });
    }
    return { etcd, endpoint, version, store, instances: [instances[0]!, instances[1]!], loginCookie, close };
  } catch (err) {
    await close();
    throw err;
  }
}

/**
 * Before the etcd case: both instances serve the public route and the login route with the session made in etcd
 * (and refuse the login route without it), like the SQLite Gatehouse with its own session.
 */
export async function checkEtcdTargets(t: Targets, x: EtcdTargets): Promise<string[]> {
  const ask = async (port: number, host: string, cookie?: string) => {
    const c = await KeepAliveClient.open(port, host);
    try {
      const r = await c.request('/', cookie ? { Cookie: cookie } : {});
      return `${r.status}${r.status === 200 ? ` ${r.body}` : ''}`;
    } finally {
      c.close();
    }
  };
  const notes: string[] = [];
  for (const [name, port, cookie] of [
    ['SQLite Gatehouse', t.gatehousePort, t.loginCookie],
    ...x.instances.map((i) => [`etcd Gatehouse ${i.name}`, i.port, x.loginCookie] as const),
  ] as const) {
    const open = await ask(port, OPEN_HOST);
    const signedIn = await ask(port, LOGIN_HOST, cookie);
    const anonymous = await ask(port, LOGIN_HOST);
    if (open !== '200 ok' || signedIn !== '200 ok' || !anonymous.startsWith('401')) {
      throw new Error(`${name}: public route ${open}, login route with the session ${signedIn}, without ${anonymous} (expected 200 ok, 200 ok, 401)`);
    }
    notes.push(`${name}: public route 200 ok; login route 200 ok with its session, 401 without`);
  }
  return notes;
}
