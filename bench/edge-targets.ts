/**
 * What the tunnel and connector cases run against, beside the main targets (same CA, same server certificate,
 * same nginx backend) and started only when one of those cases is asked for, so that cases 1–3 run exactly as
 * before: a second Gatehouse ("edge", SQLite, as many workers as the main one), a TCP sink/source
 * (`bench/tcp-sink.ts`, its own process) as the upstream of a `tcp:` route, `gatehouse tunnel --listen` in front
 * of that route, and `gatehouse connect` serving a `connector:` route to the backend.
 *
 * The edge Gatehouse has its own instance because configuring a connector makes the front door ask every TLS
 * client for a certificate (connectors present one), which case 1 must not pay. Its routes:
 *
 * - `localhost` (OPEN_HOST) → `connector:bench`, public: the connector case;
 * - `127.0.0.1` (LOGIN_HOST) → the backend directly, public: the same backend without the connector, on the
 *   same Gatehouse (wrk takes SNI and Host from the URL, so the two routes need two resolvable names);
 * - `sink.bench.test` → `tcp: 127.0.0.1:SINK`, `auth: login`, the bench user only: `gatehouse tunnel` with an
 *   API token made in the store before the start.
 *
 * For reference, the same path built from nginx's `stream` module when it is installed (Debian's
 * `libnginx-mod-stream`): a local plain TCP port (one worker, like the CLI) that opens TLS to a second nginx
 * (as many workers as Gatehouse) which terminates it and connects to the sink: what the tunnel's three hops and
 * two TLS ends cost in C, on the same cores.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openSqliteStore } from '../src/store/index.ts';
import { Child, freePort } from './child.ts';
import { AUTH_HOST, LOGIN_HOST, LOGIN_USER, OPEN_HOST, createTokenIn, identityConfig, nginx, repoRoot, startGatehouseChild, writeConfig, type Targets } from './targets.ts';

export const SINK_HOST = 'sink.bench.test';
/** nginx's stream module as Debian installs it */
export const STREAM_MODULE = '/usr/lib/nginx/modules/ngx_stream_module.so';
export const CONNECTOR_NAME = 'bench';
const bin = join(repoRoot, 'bin', 'gatehouse.mjs');

export interface EdgeOptions {
  readonly workers: number;
  readonly accessLog: boolean;
  readonly tunnel: boolean;
  readonly connector: boolean;
  /** extra node flags (e.g. --cpu-prof) for the edge Gatehouse, and for `gatehouse tunnel` and `gatehouse connect` */
  readonly gatehouseNodeArgs?: readonly string[];
  readonly cliNodeArgs?: readonly string[];
  /** also the nginx stream pair, when the module is installed */
  readonly nginxStream?: boolean;
}

export interface EdgeTargets {
  readonly dir: string;
  readonly port: number;
  readonly gatehouse: Child;
  readonly sink: Child;
  readonly sinkPort: number;
  /** `gatehouse tunnel --listen`: each connection to `tunnelPort` is a tunnel to the sink */
  readonly tunnel: Child | undefined;
  readonly tunnelPort: number | undefined;
  readonly connector: Child | undefined;
  /** the nginx stream pair: `streamPort` is the local plain port of its client side */
  readonly stream: { readonly client: Child; readonly server: Child; readonly port: number } | undefined;
  /** the `worker` of each connector session, e.g. ["1/2", "2/2"] */
  readonly connectorWorkers: readonly string[];
  close(): Promise<void>;
}

/** Loaded before `gatehouse connect`: the auth host resolves to 127.0.0.1 (the CLI has no --resolve). */
const RESOLVER = `
import dns from 'node:dns';
const real = dns.lookup;
dns.lookup = function lookup(host, options, callback) {
  if (typeof options === 'function') { callback = options; options = {}; }
  if (typeof options === 'number') options = { family: options };
  if (String(host).toLowerCase() === ${JSON.stringify(AUTH_HOST)}) {
    if (options && options.all) return process.nextTick(callback, null, [{ address: '127.0.0.1', family: 4 }]);
    return process.nextTick(callback, null, '127.0.0.1', 4);
  }
  return real.call(this, host, options, callback);
};`;

/** One nginx with a `stream` block, run like the benchmark's other nginx instances. */
function streamNginx(name: string, dir: string, workers: number, servers: string): Child {
  mkdirSync(dir, { recursive: true });
  chmodSync(dir, 0o755);
  const user = process.getuid?.() === 0 ? 'user nobody nogroup;\n' : '';
  const conf = `load_module ${STREAM_MODULE};
${user}daemon off;
master_process on;
worker_processes ${workers};
pid ${join(dir, 'nginx.pid')};
error_log ${join(dir, 'error.log')} warn;
events { worker_connections 1024; }
stream {
${servers}
}
`;
  return nginx(name, dir, conf);
}

function cli(args: string[], cwd: string): void {
  const r = spawnSync(process.execPath, [bin, ...args], { cwd, encoding: 'utf8', timeout: 60_000, env: { ...process.env, GATEHOUSE_CA: '' } });
  if (r.status !== 0) throw new Error(`gatehouse ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
}

async function until<T>(what: string, probe: () => T | undefined, timeoutMs: number, tail: () => string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${what} within ${timeoutMs} ms:\n${tail()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function read(file: string): string {
  return existsSync(file) ? readFileSync(file, 'utf8') : '';
}

export async function startEdge(t: Targets, o: EdgeOptions): Promise<EdgeTargets> {
  const dir = join(t.dir, 'edge');
  mkdirSync(dir, { recursive: true });
  const children: Child[] = [];
  const close = async () => {
    // the clients first, so that the Gatehouse does not log their reconnections while it drains
    for (const c of [...children].reverse()) await c.stop();
  };
  try {
    const sinkPort = await freePort();
    const sink = Child.start({
      name: 'tcp-sink',
      command: process.execPath,
      args: ['--import', 'tsx', join(repoRoot, 'bench', 'tcp-sink.ts'), String(sinkPort)],
      cwd: repoRoot,
      stdout: join(dir, 'sink.log'),
      stderr: join(dir, 'sink.err'),
    });
    children.push(sink);
    await sink.waitForPort(sinkPort);

    const port = await freePort();
    const db = join(dir, 'gatehouse.db');
    const config = {
      server: {
        https: `127.0.0.1:${port}`,
        authHost: AUTH_HOST,
        workers: o.workers,
        tls: { cert: t.server.cert, key: t.server.key },
        accessLog: o.accessLog,
        shutdownTimeout: '5s',
      },
      store: { sqlite: { path: db } },
      identity: identityConfig(t.caCert),
      ...(o.connector ? { connectors: [{ name: CONNECTOR_NAME }] } : {}),
      routes: [
        ...(o.connector ? [{ name: 'via-connector', host: OPEN_HOST, to: `connector:${CONNECTOR_NAME}`, auth: 'public' }] : []),
        { name: 'direct', host: LOGIN_HOST, to: `http://127.0.0.1:${t.backendPort}`, auth: 'public' },
        { name: 'sink', host: SINK_HOST, tcp: `127.0.0.1:${sinkPort}`, allow: { users: [LOGIN_USER] }, upstream: { timeouts: { read: '10m' } } },
      ],
    };
    const configFile = writeConfig(dir, config);
    const store = await openSqliteStore(db);
    let token: string;
    try {
      token = await createTokenIn(store);
    } finally {
      await store.close();
    }
    if (o.connector) {
      cli(['ca', 'init', '-c', configFile], dir);
      cli(['ca', 'issue', '-c', configFile, '--connector', CONNECTOR_NAME, '--out', join(dir, CONNECTOR_NAME)], dir);
    }
    const gatehouse = await startGatehouseChild({ name: 'edge gatehouse', dir, config, port, ...(o.gatehouseNodeArgs ? { nodeArgs: o.gatehouseNodeArgs } : {}) });
    children.push(gatehouse);
    const via = `https://${AUTH_HOST}:${port}`;

    let connector: Child | undefined;
    let connectorWorkers: string[] = [];
    if (o.connector) {
      const preload = join(dir, 'resolve-bench-names.mjs');
      writeFileSync(preload, RESOLVER);
      const out = join(dir, 'connector.log');
      connector = Child.start({
        name: 'gatehouse connect',
        command: process.execPath,
        args: [
          ...(o.cliNodeArgs ?? []), '--import', preload, bin, 'connect',
          '--via', via, '--name', CONNECTOR_NAME, '--to', `http://127.0.0.1:${t.backendPort}`,
          '--cert', join(dir, `${CONNECTOR_NAME}.crt`), '--key', join(dir, `${CONNECTOR_NAME}.key`), '--ca', t.caCert,
        ],
        cwd: dir,
        stdout: out,
        stderr: join(dir, 'connector.err'),
        env: { ...process.env, GATEHOUSE_CA: '', NODE_ENV: 'production' },
      });
      children.push(connector);
      const c = connector;
      connectorWorkers = await until(
        `gatehouse connect did not hold a session with each of the ${o.workers} worker(s)`,
        () => {
          if (!c.running) throw new Error(`gatehouse connect exited:\n${read(out)}${c.tail()}`);
          const workers = new Set<string>();
          for (const line of read(out).split('\n')) {
            if (!line.includes('connector_connected')) continue;
            const w = (JSON.parse(line) as { worker?: string }).worker;
            if (w) workers.add(w);
          }
          return workers.size >= o.workers ? [...workers].sort() : undefined;
        },
        30_000,
        () => read(out) + c.tail(),
      );
    }

    let tunnel: Child | undefined;
    let tunnelPort: number | undefined;
    if (o.tunnel) {
      const home = join(dir, 'home');
      mkdirSync(home, { recursive: true });
      const err = join(dir, 'tunnel.err');
      tunnel = Child.start({
        name: 'gatehouse tunnel',
        command: process.execPath,
        args: [...(o.cliNodeArgs ?? []), bin, 'tunnel', `${SINK_HOST}:22`, '--via', via, '--resolve', `${AUTH_HOST}:127.0.0.1`, '--ca', t.caCert, '--token', token, '--listen', '127.0.0.1:0'],
        cwd: dir,
        stdout: join(dir, 'tunnel.log'),
        stderr: err,
        env: { ...process.env, HOME: home, XDG_CONFIG_HOME: join(home, '.config'), GATEHOUSE_CA: '', GATEHOUSE_TOKEN: '', NODE_ENV: 'production' },
        stopSignal: 'SIGTERM',
      });
      children.push(tunnel);
      const c = tunnel;
      tunnelPort = await until(
        'gatehouse tunnel did not listen',
        () => {
          if (!c.running) throw new Error(`gatehouse tunnel exited:\n${read(err)}`);
          const m = /listening on 127\.0\.0\.1:(\d+)/.exec(read(err));
          return m ? Number(m[1]) : undefined;
        },
        30_000,
        () => read(err),
      );
    }
    let stream: EdgeTargets['stream'];
    if (o.nginxStream && existsSync(STREAM_MODULE)) {
      const [serverPort, clientPort] = [await freePort(), await freePort()];
      const server = streamNginx(
        'nginx stream (TLS server side)',
        join(dir, 'stream-server'),
        o.workers,
        `  server { listen 127.0.0.1:${serverPort} ssl; ssl_certificate ${t.server.cert}; ssl_certificate_key ${t.server.key}; proxy_pass 127.0.0.1:${sinkPort}; }`,
      );
      children.push(server);
      await server.waitForPort(serverPort);
      const client = streamNginx(
        'nginx stream (client side)',
        join(dir, 'stream-client'),
        1,
        `  server { listen 127.0.0.1:${clientPort}; proxy_pass 127.0.0.1:${serverPort}; proxy_ssl on; }`,
      );
      children.push(client);
      await client.waitForPort(clientPort);
      stream = { client, server, port: clientPort };
    }
    return { dir, port, gatehouse, sink, sinkPort, tunnel, tunnelPort, connector, stream, connectorWorkers, close };
  } catch (err) {
    await close();
    throw err;
  }
}
