/**
 * Where the time goes in the tunnel and connector cases: the edge Gatehouse (bench/edge-targets.ts) and the CLI
 * process (`gatehouse tunnel` or `gatehouse connect`) run with `--cpu-prof`, the case's load runs, everything stops
 * so the profiles are written, and bench/cpuprofile-summary.ts adds them up per process.
 *
 *   node --import tsx bench/profile-more.ts tunnel-up|tunnel-down|connector
 *
 * Environment: BENCH_TUNNEL_MIB (per transfer, default 512), BENCH_PROFILE_TRANSFERS (default 6),
 * BENCH_DURATION (connector, default 10). Writes bench/out/profile-CASE.md; raw profiles in bench/out/profiles-CASE/.
 */
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { formatSummary, readProfile, summarise } from './cpuprofile-summary.ts';
import { startEdge } from './edge-targets.ts';
import { TcpClient } from './tcp-client.ts';
import { OPEN_HOST, repoRoot, startTargets } from './targets.ts';
import { runWrk } from './wrk.ts';

const which = process.argv[2] ?? 'tunnel-up';
if (which !== 'tunnel-up' && which !== 'tunnel-down' && which !== 'connector') throw new Error('usage: profile-more.ts tunnel-up|tunnel-down|connector');
const mib = Number(process.env.BENCH_TUNNEL_MIB ?? 512);
const transfers = Number(process.env.BENCH_PROFILE_TRANSFERS ?? 6);
const durationS = Number(process.env.BENCH_DURATION ?? 10);
const intervalUs = 500;
const outDir = join(repoRoot, 'bench', 'out');
const profDir = join(outDir, `profiles-${which}`);
rmSync(profDir, { recursive: true, force: true });
mkdirSync(profDir, { recursive: true });
const profArgs = ['--cpu-prof', `--cpu-prof-dir=${profDir}`, `--cpu-prof-interval=${intervalUs}`];

const t = await startTargets({ workers: 2, accessLog: true, nginx: false });
const tunnel = which !== 'connector';
const e = await startEdge(t, { workers: 2, accessLog: true, tunnel, connector: !tunnel, gatehouseNodeArgs: profArgs, cliNodeArgs: profArgs });
let units = 0;
let line: string;
const cliPid = (tunnel ? e.tunnel : e.connector)!.pid;
const primaryPid = e.gatehouse.pid;
try {
  if (tunnel) {
    const client = await TcpClient.start();
    try {
      const direction = which === 'tunnel-up' ? 'up' : 'down';
      const speeds: number[] = [];
      for (let i = 0; i < transfers; i++) {
        const r = await client.transfer(e.tunnelPort!, direction, mib * (1 << 20));
        if (!r.ok) throw new Error(r.problem);
        speeds.push(r.mibPerS);
      }
      units = transfers * mib;
      line = `${transfers} transfers of ${mib} MiB ${direction} through gatehouse tunnel, ${speeds.map((x) => x.toFixed(0)).join(', ')} MiB/s while profiling`;
    } finally {
      client.close();
    }
  } else {
    await runWrk({ url: `https://${OPEN_HOST}:${e.port}/`, threads: 2, connections: 64, durationS: 3 });
    const r = await runWrk({ url: `https://${OPEN_HOST}:${e.port}/`, threads: 2, connections: 64, durationS });
    units = r.requests;
    line = `wrk -t2 -c64 -d${durationS}s on the connector route: ${r.rps.toFixed(0)} req/s while profiling (after 3 s of warm-up, also profiled)`;
  }
} finally {
  await e.close();
  await t.close();
}

// CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile; thread 0 is the main thread
const files = readdirSync(profDir).filter((f) => f.endsWith('.cpuprofile') && f.split('.')[4] === '0');
const pidOf = (f: string) => f.split('.')[3];
const cli = files.filter((f) => pidOf(f) === String(cliPid));
const workers = files.filter((f) => pidOf(f) !== String(cliPid) && pidOf(f) !== String(primaryPid));
const unit = tunnel ? 'MiB' : 'request';
const section = (title: string, fs: string[]) =>
  fs.length === 0 ? [`## ${title}`, '', 'no profile', ''] : [`## ${title}`, '', formatSummary(summarise(fs.map((f) => readProfile(join(profDir, f)))), 25, { intervalUs, requests: units }), ''];
const md = [
  `# CPU profile: ${which}`,
  '',
  `${line}. Profiles sampled every ${intervalUs} µs; "per request" below means per ${unit} (${units} ${unit}s in all, warm-up included where stated); start-up is in the profiles too.`,
  '',
  ...section(`Gatehouse workers (${workers.length})`, workers),
  ...section(tunnel ? '`gatehouse tunnel --listen`' : '`gatehouse connect`', cli),
].join('\n');
writeFileSync(join(outDir, `profile-${which}.md`), md);
process.stdout.write(md);
process.stderr.write(`written to ${join(outDir, `profile-${which}.md`)}; raw profiles in ${profDir}\n`);
