/**
 * Runs `wrk` (keep-alive load) and reads its report: requests/s and the latency distribution that
 * `--latency` prints (50/75/90/99 %).
 */
import { execFile } from 'node:child_process';

export interface WrkOptions {
  readonly url: string;
  readonly threads: number;
  readonly connections: number;
  readonly durationS: number;
  readonly timeoutS?: number;
  /** extra request headers, `Name: value` (wrk -H) */
  readonly headers?: readonly string[];
}

export interface WrkResult {
  readonly requests: number;
  readonly rps: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** non-2xx/3xx answers plus socket errors */
  readonly errors: number;
  readonly raw: string;
}

const unitMs: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000 };

function duration(text: string): number {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(text.trim());
  if (!m) throw new Error(`wrk printed a latency I cannot read: ${text}`);
  return Number(m[1]) * unitMs[m[2]!]!;
}

/** Parses wrk's text report. */
export function parseWrk(raw: string): WrkResult {
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(raw);
  const total = /(\d+) requests in/.exec(raw);
  const p50 = /^\s+50%\s+(\S+)/m.exec(raw);
  const p99 = /^\s+99%\s+(\S+)/m.exec(raw);
  if (!rps || !total || !p50 || !p99) throw new Error(`unexpected wrk output:\n${raw}`);
  let errors = 0;
  const non2xx = /Non-2xx or 3xx responses:\s+(\d+)/.exec(raw);
  if (non2xx) errors += Number(non2xx[1]);
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(raw);
  if (socket) errors += Number(socket[1]) + Number(socket[2]) + Number(socket[3]) + Number(socket[4]);
  return { requests: Number(total[1]), rps: Number(rps[1]), p50Ms: duration(p50[1]!), p99Ms: duration(p99[1]!), errors, raw };
}

export function runWrk(o: WrkOptions): Promise<WrkResult> {
  const args = ['-t', String(o.threads), '-c', String(o.connections), '-d', `${o.durationS}s`, '--timeout', `${o.timeoutS ?? 5}s`, '--latency', ...(o.headers ?? []).flatMap((h) => ['-H', h]), o.url];
  return new Promise((resolve, reject) => {
    execFile('wrk', args, { timeout: (o.durationS + 30) * 1000, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`wrk ${args.join(' ')} failed: ${err.message}\n${stderr}`));
      try {
        resolve(parseWrk(stdout));
      } catch (e) {
        reject(e as Error);
      }
    });
  });
}
