/**
 * How much of Gatehouse's keep-alive cost is Node's own: wrk against minimal Node HTTPS front ends
 * (bench/node-floor-server.ts: answer directly; forward with http.request; forward with undici when it is
 * installed) next to nginx and Gatehouse, same cores, same certificates, same backend.
 *
 *   node --import tsx bench/node-floor.ts      (UNDICI_PATH=/path/to/undici/index.js to add the undici row)
 */
import { join } from 'node:path';
import { Child, freePort } from './child.ts';
import { cpuBetween, cpuSnapshot } from './process-cpu.ts';
import { OPEN_HOST, repoRoot, startTargets } from './targets.ts';
import { runWrk } from './wrk.ts';

const durationS = Number(process.env.BENCH_DURATION ?? 10);
const warmupS = Number(process.env.BENCH_WARMUP ?? 3);
const accessLog = (process.env.BENCH_ACCESS_LOG ?? 'on') !== 'off';
const modes = ['ok', 'proxy', ...(process.env.UNDICI_PATH ? ['undici', 'undici-dispatch'] : [])];

const modeTitles: Record<string, string> = {
  ok: 'answering itself',
  proxy: '+ http.request (keep-alive agent)',
  undici: '+ undici Pool.request',
  'undici-dispatch': '+ undici Pool.dispatch',
};

const t = await startTargets({ workers: 2, accessLog });
const rows: string[] = ['| front end | req/s | p50 ms | p99 ms | server CPU (cores) | server CPU µs/req | other load |', '|---|--:|--:|--:|--:|--:|--:|'];
async function measure(name: string, pid: number, port: number): Promise<void> {
  const url = `https://${OPEN_HOST}:${port}/`;
  await runWrk({ url, threads: 2, connections: 64, durationS: warmupS });
  const a = cpuSnapshot([pid]);
  const started = performance.now();
  const r = await runWrk({ url, threads: 2, connections: 64, durationS });
  const use = cpuBetween(a, cpuSnapshot([pid]), (performance.now() - started) / 1000);
  const row = `| ${name} | ${r.rps.toFixed(0)} | ${r.p50Ms.toFixed(2)} | ${r.p99Ms.toFixed(2)} | ${use.trees[0]!.toFixed(2)} | ${((use.trees[0]! * 1e6) / r.rps).toFixed(0)} | ${use.foreign.toFixed(2)} |`;
  rows.push(row);
  process.stderr.write(`${row}\n`);
}
try {
  await measure('nginx proxy', t.nginx!.pid, t.nginxPort!);
  await measure('Gatehouse', t.gatehouse.pid, t.gatehousePort);
  for (const mode of modes) {
    const port = await freePort();
    const c = Child.start({
      name: `node-${mode}`,
      command: process.execPath,
      args: ['--import', 'tsx', join(repoRoot, 'bench', 'node-floor-server.ts'), mode, String(port), String(t.backendPort), t.server.cert, t.server.key],
      cwd: repoRoot,
      stdout: join(t.dir, `node-${mode}.out`),
      stderr: join(t.dir, `node-${mode}.err`),
    });
    try {
      await c.waitForPort(port, 30_000);
      await measure(`Node: https server ${modeTitles[mode] ?? mode}`, c.pid, port);
    } finally {
      await c.stop();
    }
  }
} finally {
  await t.close();
}
process.stdout.write(`${rows.join('\n')}\n`);
