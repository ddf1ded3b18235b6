/**
 * Where Gatehouse's time goes under load: starts the backend and Gatehouse with `--cpu-prof` (cluster
 * workers inherit the flag), runs one case against it, stops Gatehouse so the workers write their
 * profiles, and summarises the workers' profiles together (the idle primary is left out), with CPU µs per
 * request for each category and function.
 *
 *   node --import tsx bench/profile.ts [keep-alive|handshake|login]
 *
 * `login` is case 3 of bench/run.ts: keep-alive to the `auth: login` route with a session cookie and
 * identity headers (see bench/targets.ts).
 * Environment: BENCH_DURATION (default 10), BENCH_PROFILE_WORKERS (default 2), BENCH_ACCESS_LOG (on|off),
 * BENCH_PROFILE_TARGET=node-proxy to profile the minimal Node proxy of bench/node-floor-server.ts instead
 * (the same Node HTTP machinery without Gatehouse's code: the difference is ours).
 * Writes bench/out/profile-CASE[-node-proxy].md and keeps the .cpuprofile files in bench/out/profiles-…/
 * (open them in Chrome DevTools → Performance, or speedscope).
 */
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Child, freePort } from './child.ts';
import { formatSummary, readProfile, summarise } from './cpuprofile-summary.ts';
import { runLoad } from './mtls-load.ts';
import { LOGIN_HOST, MTLS_HOST, OPEN_HOST, repoRoot, startTargets } from './targets.ts';
import { runWrk } from './wrk.ts';

const which = process.argv[2] ?? 'keep-alive';
if (which !== 'keep-alive' && which !== 'handshake' && which !== 'login') throw new Error('usage: profile.ts [keep-alive|handshake|login]');
const target = process.env.BENCH_PROFILE_TARGET ?? 'gatehouse';
if (target !== 'gatehouse' && target !== 'node-proxy') throw new Error('BENCH_PROFILE_TARGET is gatehouse or node-proxy');
if (target === 'node-proxy' && which !== 'keep-alive') throw new Error('the minimal Node proxy serves the keep-alive case only');
const durationS = Number(process.env.BENCH_DURATION ?? 10);
const workers = Number(process.env.BENCH_PROFILE_WORKERS ?? 2);
const accessLog = (process.env.BENCH_ACCESS_LOG ?? 'on') !== 'off';
const intervalUs = 500;
const name = target === 'gatehouse' ? which : `${which}-${target}`;
const outDir = join(repoRoot, 'bench', 'out');
const profDir = join(outDir, `profiles-${name}`);
rmSync(profDir, { recursive: true, force: true });
mkdirSync(profDir, { recursive: true });
const profArgs = ['--cpu-prof', `--cpu-prof-dir=${profDir}`, `--cpu-prof-interval=${intervalUs}`];

const t = await startTargets({ workers, accessLog, nginx: false, ...(target === 'gatehouse' ? { gatehouseNodeArgs: profArgs } : {}) });
let server: Child = t.gatehouse;
let port = t.gatehousePort;
let requests = 0;
let result: { requests: number; rps: number; p50Ms: number; p99Ms: number };
try {
  if (target === 'node-proxy') {
    port = await freePort();
    server = Child.start({
      name: 'node-proxy',
      command: process.execPath,
      args: [...profArgs, '--import', 'tsx', join(repoRoot, 'bench', 'node-floor-server.ts'), 'proxy', String(port), String(t.backendPort), t.server.cert, t.server.key],
      cwd: repoRoot,
      stdout: join(t.dir, 'node-proxy.out'),
      stderr: join(t.dir, 'node-proxy.err'),
    });
    await server.waitForPort(port, 30_000);
  }
  const load = (d: number) =>
    which === 'keep-alive'
      ? runWrk({ url: `https://${OPEN_HOST}:${port}/`, threads: 2, connections: 64, durationS: d })
      : which === 'login'
        ? runWrk({ url: `https://${LOGIN_HOST}:${port}/`, threads: 2, connections: 64, durationS: d, headers: [`Cookie: ${t.loginCookie}`] })
        : runLoad({ port, servername: MTLS_HOST, tls: { cert: t.client.certPem, key: t.client.keyPem }, concurrency: 32, threads: 2, durationS: d });
  requests += (await load(Math.min(3, durationS))).requests; // warm-up: in the profile too
  result = await load(durationS);
  requests += result.requests;
} finally {
  await server.stop(30_000);
  await t.close();
}

// file names are CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile: the primary is the child we started,
// thread 0 is a process's main thread (others are tsx's module-loader threads, busy only at start)
const files = readdirSync(profDir).filter((f) => f.endsWith('.cpuprofile'));
const workerFiles = files.filter((f) => f.split('.')[3] !== String(server.pid) && f.split('.')[4] === '0');
if (workerFiles.length === 0) throw new Error(`no worker profiles in ${profDir} (found: ${files.join(', ') || 'none'})`);
const summary = formatSummary(summarise(workerFiles.map((f) => readProfile(join(profDir, f)))), 30, { intervalUs, requests });
const md = [
  `# CPU profile: ${target === 'gatehouse' ? 'Gatehouse' : 'minimal Node proxy (bench/node-floor-server.ts proxy)'}, ${which}`,
  '',
  `${workers} worker(s), access log ${accessLog ? 'on' : 'off'}, ${durationS} s of load after a warm-up; ` +
    `${result.rps.toFixed(0)} req/s, p50 ${result.p50Ms.toFixed(2)} ms, p99 ${result.p99Ms.toFixed(2)} ms while profiling ` +
    `(the profiler slows the workers down). Profiles of ${workerFiles.length} worker(s), sampled every ${intervalUs} µs; ` +
    'the time to start (module loading) is in them too, a small share.',
  '',
  summary,
  '',
].join('\n');
writeFileSync(join(outDir, `profile-${name}.md`), md);
process.stdout.write(md);
process.stderr.write(`written to ${join(outDir, `profile-${name}.md`)}; raw profiles in ${profDir}\n`);
