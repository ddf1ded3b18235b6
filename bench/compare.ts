/**
 * Before/after numbers for a change: the same case against several Gatehouse checkouts, interleaved
 * (A B C, C B A, …), each measurement after the machine is quiet and repeated when other processes
 * disturbed it. Reports the median req/s and the median server CPU per request of each.
 *
 *   BENCH_CASE=keep-alive|handshake|login BENCH_WORKERS=1 BENCH_ROUNDS=3 \
 *     node --import tsx bench/compare.ts before=/tmp/before/bin/gatehouse.mjs after=bin/gatehouse.mjs [after:nolog=…]
 *
 * A name ending in `:nolog` runs that checkout with the access log off.
 */
import { resolve } from 'node:path';
import { runLoad } from './mtls-load.ts';
import { cpuBetween, cpuSnapshot } from './process-cpu.ts';
import { NOISY_CORES, waitForQuiet } from './quiet.ts';
import { LOGIN_HOST, MTLS_HOST, OPEN_HOST, startTargets } from './targets.ts';
import { runWrk } from './wrk.ts';

const which = process.env.BENCH_CASE ?? 'keep-alive';
const workers = Number(process.env.BENCH_WORKERS ?? 1);
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const durationS = Number(process.env.BENCH_DURATION ?? 8);
const warmupS = Number(process.env.BENCH_WARMUP ?? 3);
const retries = Number(process.env.BENCH_RETRIES ?? 3);
const variants = process.argv.slice(2).map((a) => {
  const [name, bin] = a.split('=');
  if (!name || !bin) throw new Error(`expected NAME=PATH/bin/gatehouse.mjs, got ${a}`);
  return { name, bin: resolve(bin), accessLog: !name.endsWith(':nolog') };
});
if (variants.length === 0) throw new Error('usage: compare.ts NAME=PATH/bin/gatehouse.mjs…');

interface Sample {
  rps: number;
  usPerReq: number;
  foreign: number;
}
const samples = new Map<string, Sample[]>();
const log = (s: string) => process.stderr.write(`${s}\n`);

for (let r = 0; r < rounds; r++) {
  for (const v of r % 2 === 0 ? variants : [...variants].reverse()) {
    const t = await startTargets({ workers, accessLog: v.accessLog, nginx: false, gatehouseBin: v.bin });
    try {
      const load = (d: number) =>
        which === 'keep-alive'
          ? runWrk({ url: `https://${OPEN_HOST}:${t.gatehousePort}/`, threads: 2, connections: 64, durationS: d })
          : which === 'login'
            ? runWrk({ url: `https://${LOGIN_HOST}:${t.gatehousePort}/`, threads: 2, connections: 64, durationS: d, headers: [`Cookie: ${t.loginCookie}`] })
            : runLoad({ port: t.gatehousePort, servername: MTLS_HOST, tls: { cert: t.client.certPem, key: t.client.keyPem }, concurrency: 32, threads: 2, durationS: d });
      await load(warmupS);
      for (let attempt = 0; ; attempt++) {
        await waitForQuiet(120, log);
        const a = cpuSnapshot([t.gatehouse.pid]);
        const started = performance.now();
        const w = await load(durationS);
        const u = cpuBetween(a, cpuSnapshot([t.gatehouse.pid]), (performance.now() - started) / 1000);
        const s = { rps: w.rps, usPerReq: (u.trees[0]! * 1e6) / w.rps, foreign: u.foreign };
        log(`  ${v.name.padEnd(14)} ${s.rps.toFixed(0).padStart(6)} req/s ${s.usPerReq.toFixed(1).padStart(6)} µs/req  other ${s.foreign.toFixed(2)}`);
        if (s.foreign < NOISY_CORES || attempt >= retries) {
          const list = samples.get(v.name) ?? [];
          list.push(s);
          samples.set(v.name, list);
          break;
        }
      }
    } finally {
      await t.close();
    }
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
const rows = [`| ${which}, ${workers} worker(s) | median req/s | median server µs/req | runs (req/s @ µs/req) |`, '|---|--:|--:|---|'];
for (const v of variants) {
  const s = samples.get(v.name) ?? [];
  rows.push(
    `| ${v.name} | ${median(s.map((x) => x.rps)).toFixed(0)} | ${median(s.map((x) => x.usPerReq)).toFixed(1)} | ` +
      `${s.map((x) => `${x.rps.toFixed(0)} @ ${x.usPerReq.toFixed(0)}${x.foreign >= NOISY_CORES ? '⚠' : ''}`).join(', ')} |`,
  );
}
process.stdout.write(`${rows.join('\n')}\n`);
