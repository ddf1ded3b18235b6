/**
 * `gatehouse serve`: one process, or a primary with `server.workers` worker processes sharing the listeners
 * (node:cluster, each worker accepting on the shared sockets). The primary watches the configuration file and
 * SIGHUP, checks a new file before any worker sees it, serves /metrics, /healthz and /readyz by asking every
 * worker, and on SIGTERM lets the workers drain.
 */
import cluster, { type Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';
import { randomBytes } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  formatListen,
  formatPrometheus,
  mergeSnapshots,
  messageOf,
  type Logger,
  type MetricSnapshot,
} from '../core/index.ts';
import { Gatehouse, loadState, type Addresses } from './gatehouse.ts';
import { newId } from '../store/index.ts';

type ToWorker = { type: 'reload' } | { type: 'metrics'; id: number } | { type: 'ready'; id: number } | { type: 'shutdown' };
type ToPrimary =
  | { type: 'listening'; addresses: Addresses }
  | { type: 'reloaded'; ok: boolean; problems?: string }
  | { type: 'metrics'; id: number; snapshot: MetricSnapshot[] }
  | { type: 'ready'; id: number; ready: boolean }
  | { type: 'failed'; message: string };

export interface ServeOptions {
  readonly configFile: string;
  readonly log: Logger;
}

/** Calls `onChange` when the file's content changes (editors that replace the file included), debounced. */
export function watchFile(file: string, onChange: () => void): FSWatcher {
  let timer: NodeJS.Timeout | undefined;
  let last = '';
  void readFile(file, 'utf8').then((t) => (last = t), () => undefined);
  const w = watch(dirname(file), (_event, name) => {
    if (name !== null && name !== basename(file)) return;
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      readFile(file, 'utf8').then(
        (text) => {
          if (text === last) return;
          last = text;
          onChange();
        },
        () => undefined,
      );
    }, 150);
  });
  w.unref();
  return w;
}

function metricsServer(
  snapshots: () => Promise<MetricSnapshot[][]>,
  ready: () => Promise<boolean>,
): Server {
  return createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else if (path === '/readyz') {
      ready().then(
        (ok) => res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' }).end(ok ? 'ready\n' : 'not ready\n'),
        () => res.writeHead(503, { 'content-type': 'text/plain' }).end('not ready\n'),
      );
    } else if (path === '/metrics') {
      snapshots().then(
        (all) => res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(formatPrometheus(mergeSnapshots(all))),
        (err) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics unavailable: ${messageOf(err)}\n`),
      );
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    }
  });
}

function listenMetrics(server: Server, at: { host: string; port: number }): Promise<string> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(at.port, at.host, () => {
      const a = server.address() as AddressInfo;
      resolve(formatListen({ host: a.address, port: a.port }));
    });
  });
}

function processMetrics(): MetricSnapshot {
  const mem = process.memoryUsage();
  return {
    name: 'gatehouse_process_resident_memory_bytes',
    help: 'Resident memory of the Gatehouse processes',
    type: 'gauge',
    values: { [`worker="${cluster.worker?.id ?? 0}"`]: mem.rss },
  };
}

function workerCount(setting: 'auto' | number): number {
  return setting === 'auto' ? availableParallelism() : setting;
}

/** Runs until SIGTERM/SIGINT. Resolves when stopped. */
export async function serve(options: ServeOptions): Promise<void> {
  const configFile = resolve(options.configFile);
  if (cluster.isWorker) return runWorker({ ...options, configFile });
  const first = await loadState(configFile, { log: options.log, startRevocation: false });
  if (!first.ok) throw new Error(`the configuration is not valid:\n${first.problems}`);
  first.state.revocation.close();
  const workers = workerCount(first.state.config.server.workers);
  if (workers <= 1) return runSingle({ ...options, configFile });
  return runPrimary({ ...options, configFile }, workers);
}

async function runSingle(options: ServeOptions): Promise<void> {
  const { log } = options;
  const g = await Gatehouse.start(options);
  log.info('listening', { ...g.addresses, workers: 1 });
  let metrics: Server | undefined;
  const m = g.state.config.server.metrics;
  if (m) {
    metrics = metricsServer(
      async () => [[...g.metrics.snapshot(), processMetrics()]],
      () => g.ready(),
    );
    log.info('metrics_listening', { metrics: await listenMetrics(metrics, m) });
  }
  const reload = () => void g.reload();
  const watcher = watchFile(options.configFile, reload);
  process.on('SIGHUP', reload);
  await new Promise<void>((done) => {
    const stop = (signal: string) => {
      log.info('stopping', { signal });
      watcher.close();
      metrics?.close();
      void g.close().then(done);
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  log.info('stopped');
  log.flush();
}

async function runWorker(options: ServeOptions): Promise<void> {
  const keys = process.env.GATEHOUSE_TICKET_KEYS;
  const send = (m: ToPrimary) => process.send?.(m);
  let g: Gatehouse;
  try {
    g = await Gatehouse.start({ ...options, ...(keys ? { ticketKeys: Buffer.from(keys, 'hex') } : {}) });
  } catch (err) {
    send({ type: 'failed', message: messageOf(err) });
    options.log.flush();
    process.exit(1);
  }
  send({ type: 'listening', addresses: g.addresses });
  process.on('message', (m: ToWorker) => {
    if (m.type === 'reload') {
      void g.reload().then((r) => send(r.ok ? { type: 'reloaded', ok: true } : { type: 'reloaded', ok: false, problems: r.problems }));
    } else if (m.type === 'metrics') {
      send({ type: 'metrics', id: m.id, snapshot: [...g.metrics.snapshot(), processMetrics()] });
    } else if (m.type === 'ready') {
      void g.ready().then((ready) => send({ type: 'ready', id: m.id, ready }));
    } else if (m.type === 'shutdown') {
      void g.close().then(() => process.exit(0));
    }
  });
  // the primary decides when to stop; a signal sent to the whole process group is left to it
  process.on('SIGTERM', () => undefined);
  process.on('SIGINT', () => undefined);
  process.on('SIGHUP', () => undefined);
}

async function runPrimary(options: ServeOptions, count: number): Promise<void> {
  const { log, configFile } = options;
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  const ticketKeys = randomBytes(48).toString('hex');
  const instance = newId();
  let stopping = false;
  let seq = 0;
  const pending = new Map<number, (m: ToPrimary) => void>();

  const fork = (): Worker => {
    // GATEHOUSE_WORKERS: the connector hub tells connectors how many workers to reach
    // GATEHOUSE_INSTANCE: the workers are one instance to the others (presence records, the peer relay)
    const w = cluster.fork({ GATEHOUSE_TICKET_KEYS: ticketKeys, GATEHOUSE_WORKERS: String(count), GATEHOUSE_INSTANCE: instance });
    w.on('message', (m: ToPrimary) => {
      if ((m.type === 'metrics' || m.type === 'ready') && pending.has(m.id)) {
        pending.get(m.id)!(m);
        pending.delete(m.id);
      } else if (m.type === 'failed') {
        log.error('worker_failed', { worker: w.id, error: m.message });
      }
    });
    return w;
  };

  const started: Promise<Addresses>[] = [];
  for (let i = 0; i < count; i++) {
    const w = fork();
    started.push(
      new Promise((resolveStart, reject) => {
        w.on('message', (m: ToPrimary) => {
          if (m.type === 'listening') resolveStart(m.addresses);
          if (m.type === 'failed') reject(new Error(m.message));
        });
        w.once('exit', (code) => reject(new Error(`worker exited with code ${code}`)));
      }),
    );
  }
  let addresses: Addresses;
  try {
    addresses = (await Promise.all(started))[0]!;
  } catch (err) {
    stopping = true;
    for (const w of Object.values(cluster.workers ?? {})) w?.kill();
    throw err;
  }
  log.info('listening', { ...addresses, workers: count });

  cluster.on('exit', (w, code, signal) => {
    if (stopping) return;
    log.error('worker_exited', { worker: w.id, code, signal });
    setTimeout(() => {
      if (!stopping) fork();
    }, 500);
  });

  const ask = <T extends ToPrimary>(type: 'metrics' | 'ready'): Promise<T[]> =>
    Promise.all(
      Object.values(cluster.workers ?? {})
        .filter((w): w is Worker => !!w && w.isConnected())
        .map(
          (w) =>
            new Promise<T>((res, rej) => {
              const id = ++seq;
              const t = setTimeout(() => {
                pending.delete(id);
                rej(new Error('a worker did not answer'));
              }, 2000);
              pending.set(id, (m) => {
                clearTimeout(t);
                res(m as T);
              });
              w.send({ type, id } satisfies ToWorker);
            }),
        ),
    );

  let metrics: Server | undefined;
  const first = await loadState(configFile, { startRevocation: false });
  const m = first.ok ? first.state.config.server.metrics : undefined;
  if (first.ok) first.state.revocation.close();
  if (m) {
    metrics = metricsServer(
      async () => (await ask<Extract<ToPrimary, { type: 'metrics' }>>('metrics')).map((r) => r.snapshot),
      async () => {
        if (stopping) return false;
        const answers = await ask<Extract<ToPrimary, { type: 'ready' }>>('ready');
        return answers.length === count && answers.every((a) => a.ready);
      },
    );
    log.info('metrics_listening', { metrics: await listenMetrics(metrics, m) });
  }

  const reload = async () => {
    // check the file here first: a bad file never reaches the workers
    const checked = await loadState(configFile, { log });
    if (!checked.ok) {
      log.error('config_rejected', { file: configFile, problems: checked.problems.split('\n') });
      return;
    }
    checked.state.revocation.close();
    for (const w of Object.values(cluster.workers ?? {})) w?.send({ type: 'reload' } satisfies ToWorker);
  };
  const watcher = watchFile(configFile, () => void reload());
  process.on('SIGHUP', () => void reload());

  await new Promise<void>((done) => {
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      log.info('stopping', { signal });
      watcher.close();
      metrics?.close();
      const alive = Object.values(cluster.workers ?? {}).filter((w): w is Worker => !!w);
      let left = alive.length;
      if (left === 0) done();
      for (const w of alive) {
        w.once('exit', () => {
          if (--left === 0) done();
        });
        w.send({ type: 'shutdown' } satisfies ToWorker);
      }
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  log.info('stopped');
  log.flush();
}
