/**
 * Load with a new connection per request: each of N loops opens a connection (TLS with a client
 * certificate, no session reuse; or plain TCP for the backend itself), sends one `GET` with
 * `Connection: close`, reads the answer until the server closes, and records the latency from the first
 * connect to the end of the answer. Loops run in worker threads so one event loop is not the limit.
 *
 *   node --import tsx bench/mtls-load.ts --port 8443 --servername mtls.bench.test \
 *     --cert client.crt --key client.key [--ca ca.crt: verify the server] --duration 10 --concurrency 32 --threads 2
 */
import { readFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect, createSecureContext, type SecureContext } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';

export interface LoadOptions {
  readonly host?: string;
  readonly port: number;
  /** SNI and Host header; the Host header gets `:port` appended */
  readonly servername?: string;
  readonly path?: string;
  /**
   * PEM texts; absent: plain TCP. Without `ca` the server's certificate is not verified (like wrk): Node's
   * client verification calls getPeerCertificate(true), a quarter of the generator's CPU, which would
   * otherwise be taken from the server under test on the shared cores.
   */
  readonly tls?: { readonly ca?: string | undefined; readonly cert: string; readonly key: string };
  readonly concurrency: number;
  readonly threads: number;
  readonly durationS: number;
  readonly timeoutMs?: number;
}

export interface LoadResult {
  readonly requests: number;
  readonly errors: number;
  readonly firstError: string | undefined;
  readonly rps: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

interface WorkerInput {
  readonly kind: 'gatehouse-bench-load';
  readonly o: LoadOptions;
  readonly loops: number;
  /** Date.now() at which every thread starts */
  readonly startAt: number;
}

interface WorkerReport {
  readonly latencies: Float64Array;
  readonly errors: number;
  readonly firstError: string | undefined;
}

/** Latencies in a growable typed array (no per-sample objects). */
class Samples {
  #a = new Float64Array(1 << 14);
  #n = 0;
  push(v: number): void {
    if (this.#n === this.#a.length) {
      const b = new Float64Array(this.#a.length * 2);
      b.set(this.#a);
      this.#a = b;
    }
    this.#a[this.#n++] = v;
  }
  take(): Float64Array {
    return this.#a.slice(0, this.#n);
  }
}

async function runLoops(input: WorkerInput): Promise<WorkerReport> {
  const { o } = input;
  const host = o.host ?? '127.0.0.1';
  const hostHeader = `${o.servername ?? host}:${o.port}`;
  const request = Buffer.from(`GET ${o.path ?? '/'} HTTP/1.1\r\nHost: ${hostHeader}\r\nUser-Agent: gatehouse-bench\r\nConnection: close\r\n\r\n`, 'latin1');
  const context: SecureContext | undefined = o.tls
    ? createSecureContext({ ...(o.tls.ca ? { ca: o.tls.ca } : {}), cert: o.tls.cert, key: o.tls.key })
    : undefined;
  const verify = o.tls?.ca !== undefined;
  const timeoutMs = o.timeoutMs ?? 10_000;
  const samples = new Samples();
  let errors = 0;
  let firstError: string | undefined;

  await new Promise((r) => setTimeout(r, Math.max(0, input.startAt - Date.now())));
  const t0 = performance.now();
  const deadline = t0 + o.durationS * 1000;

  const once = (): Promise<void> =>
    new Promise((resolve) => {
      const started = performance.now();
      let status = 0;
      let done = false;
      const socket = context
        ? tlsConnect({ host, port: o.port, servername: o.servername, secureContext: context, rejectUnauthorized: verify })
        : netConnect({ host, port: o.port });
      const finish = (err?: Error) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        socket.destroy();
        const ended = performance.now();
        if (err || status !== 200) {
          if (ended <= deadline) {
            errors++;
            firstError ??= err ? `${(err as NodeJS.ErrnoException).code ?? ''} ${err.message}`.trim() : `status ${status}`;
          }
        } else if (ended <= deadline) {
          samples.push(ended - started);
        }
        resolve();
      };
      const timer = setTimeout(() => finish(new Error(`no complete answer within ${timeoutMs} ms`)), timeoutMs);
      socket.write(request);
      socket.on('data', (chunk: Buffer) => {
        if (status === 0 && chunk.length >= 12) status = Number(chunk.toString('latin1', 9, 12));
      });
      socket.once('end', () => finish());
      socket.once('error', (err) => finish(err));
      socket.once('close', () => finish(status === 0 ? new Error('closed without an answer') : undefined));
    });

  const loop = async () => {
    while (performance.now() < deadline) await once();
  };
  await Promise.all(Array.from({ length: input.loops }, loop));
  return { latencies: samples.take(), errors, firstError };
}

function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

/** Worker threads do not inherit `--import tsx`: each one registers tsx, then loads this file. */
const workerSource = `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))})
  .then((tsx) => { tsx.register(); return import(${JSON.stringify(import.meta.url)}); })`;

/** Runs the load for `durationS` seconds across `threads` worker threads. */
export async function runLoad(o: LoadOptions): Promise<LoadResult> {
  const threads = Math.max(1, Math.min(o.threads, o.concurrency));
  const startAt = Date.now() + 300;
  const reports = await Promise.all(
    Array.from({ length: threads }, (_, i) => {
      const loops = Math.floor(o.concurrency / threads) + (i < o.concurrency % threads ? 1 : 0);
      const input: WorkerInput = { kind: 'gatehouse-bench-load', o, loops, startAt };
      return new Promise<WorkerReport>((resolve, reject) => {
        const w = new Worker(workerSource, { eval: true, workerData: input });
        const guard = setTimeout(() => void w.terminate(), (o.durationS + 60) * 1000);
        w.once('message', (r: WorkerReport) => {
          clearTimeout(guard);
          resolve(r);
          void w.terminate();
        });
        w.once('error', (err) => {
          clearTimeout(guard);
          reject(err);
        });
        w.once('exit', (code) => {
          clearTimeout(guard);
          reject(new Error(`load thread exited with code ${code}`));
        });
      });
    }),
  );
  let n = 0;
  for (const r of reports) n += r.latencies.length;
  const all = new Float64Array(n);
  let at = 0;
  for (const r of reports) {
    all.set(r.latencies, at);
    at += r.latencies.length;
  }
  all.sort();
  return {
    requests: n,
    errors: reports.reduce((s, r) => s + r.errors, 0),
    firstError: reports.find((r) => r.firstError)?.firstError,
    rps: n / o.durationS,
    p50Ms: percentile(all, 0.5),
    p99Ms: percentile(all, 0.99),
  };
}

if (!isMainThread && (workerData as WorkerInput | undefined)?.kind === 'gatehouse-bench-load') {
  const report = await runLoops(workerData as WorkerInput);
  parentPort!.postMessage(report, [report.latencies.buffer as ArrayBuffer]);
} else if (isMainThread && process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values: v } = parseArgs({
    options: {
      host: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string' },
      servername: { type: 'string' },
      path: { type: 'string', default: '/' },
      ca: { type: 'string' },
      cert: { type: 'string' },
      key: { type: 'string' },
      duration: { type: 'string', default: '10' },
      concurrency: { type: 'string', default: '32' },
      threads: { type: 'string', default: '2' },
    },
  });
  if (!v.port) throw new Error('--port is required');
  const tls = v.cert && v.key
    ? { ca: v.ca ? readFileSync(v.ca, 'utf8') : undefined, cert: readFileSync(v.cert, 'utf8'), key: readFileSync(v.key, 'utf8') }
    : undefined;
  const r = await runLoad({
    host: v.host,
    port: Number(v.port),
    servername: v.servername,
    path: v.path,
    tls,
    durationS: Number(v.duration),
    concurrency: Number(v.concurrency),
    threads: Number(v.threads),
  });
  console.log(JSON.stringify(r));
}
