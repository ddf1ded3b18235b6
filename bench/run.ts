/**
 * `npm run bench`: Gatehouse side by side with nginx and with the backend itself, in one run, on the same
 * cores, with the same certificates (ECDSA P-256) and the same backend.
 *
 *   case 1  keep-alive over TLS: wrk -t2 -c64 --latency to a route that needs no client certificate
 *   case 2  a new mTLS handshake per request: bench/mtls-load.ts (client certificate, no session reuse,
 *           one GET per connection, Connection: close) to a route that checks the certificate subject
 *   case 3  (`login`) keep-alive over TLS like case 1, to an `auth: login` route with identity headers,
 *           every request with a signed-in session's cookie: Gatehouse only (nginx has no sign-in), shown
 *           as a ratio to Gatehouse's case 1
 *
 * Environment: BENCH_DURATION (seconds per measurement, default 10), BENCH_WARMUP (seconds, default 3),
 * BENCH_ROUNDS (default 3, interleaved: targets and cases in reverse order every other round; the median run of each cell is reported), BENCH_ACCESS_LOG (on|off, default on, for both
 * proxies), BENCH_CONNECTIONS (wrk, 64), BENCH_MTLS_CONCURRENCY (32), BENCH_MTLS_THREADS (2),
 * BENCH_QUIET_WAIT (seconds to wait for other load on the machine to stop before each run, default 60),
 * BENCH_RETRIES (how often a run disturbed by other load is repeated, default 2; the last attempt counts),
 * BENCH_CASES (keep-alive,handshake; add login for case 3, e.g. BENCH_CASES=keep-alive,login).
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { runWrk } from './wrk.ts';
import { runLoad, type LoadOptions } from './mtls-load.ts';
import { cpuBetween, cpuSnapshot, type CpuUse } from './process-cpu.ts';
import { checkTargets } from './sanity.ts';
import { connectionSplit } from './connection-split.ts';
import { NOISY_CORES, waitForQuiet } from './quiet.ts';
import { LOGIN_HOST, MTLS_HOST, OPEN_HOST, repoRoot, startTargets, type Targets } from './targets.ts';
import {
  caseNames,
  loginRatio,
  markdownLoginRatio,
  markdownRatios,
  markdownTable,
  medians,
  ratios,
  type CaseName,
  type Measurement,
  type TargetName,
} from './report.ts';

function envNumber(name: string, fallback: number): number {
  const v = process.env[name];
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number, not ${JSON.stringify(v)}`);
  return n;
}

const settings = {
  durationS: envNumber('BENCH_DURATION', 10),
  warmupS: envNumber('BENCH_WARMUP', 3),
  rounds: Math.round(envNumber('BENCH_ROUNDS', 3)),
  accessLog: (process.env.BENCH_ACCESS_LOG ?? 'on') !== 'off',
  connections: envNumber('BENCH_CONNECTIONS', 64),
  wrkThreads: 2,
  mtlsConcurrency: envNumber('BENCH_MTLS_CONCURRENCY', 32),
  mtlsThreads: envNumber('BENCH_MTLS_THREADS', 2),
  quietWaitS: Number(process.env.BENCH_QUIET_WAIT ?? 60),
  retries: Math.round(Number(process.env.BENCH_RETRIES ?? 2)),
  workers: 2,
  cases: benchCases(process.env.BENCH_CASES ?? 'keep-alive,handshake'),
};

function benchCases(v: string): CaseName[] {
  const list = v.split(',').map((s) => s.trim()).filter(Boolean);
  const unknown = list.filter((c) => !(caseNames as readonly string[]).includes(c));
  if (list.length === 0 || unknown.length > 0) throw new Error(`BENCH_CASES: unknown case(s) ${unknown.join(', ') || '(none given)'}; known: ${caseNames.join(', ')}`);
  return list as CaseName[];
}

const log = (s: string) => process.stderr.write(`${s}\n`);

type Load = (durationS: number) => Promise<{ requests: number; rps: number; p50Ms: number; p99Ms: number; errors: number; firstError?: string | undefined }>;

/** One measurement, repeated (up to BENCH_RETRIES times) while processes outside the benchmark disturb it. */
async function measure(c: CaseName, target: TargetName, t: Targets, load: Load, round: number): Promise<Measurement> {
  for (let attempt = 0; ; attempt++) {
    const m = await measureOnce(c, target, t, load, round);
    if (m.foreignCores <= NOISY_CORES || attempt >= settings.retries) return m;
    log(`  disturbed (other load ${m.foreignCores.toFixed(2)} cores): again (${attempt + 1}/${settings.retries})`);
  }
}

async function measureOnce(c: CaseName, target: TargetName, t: Targets, load: Load, round: number): Promise<Measurement> {
  const server = target === 'direct' ? t.backend.pid : target === 'nginx' ? t.nginx!.pid : t.gatehouse.pid;
  const trees = [server, t.backend.pid];
  await waitForQuiet(settings.quietWaitS, log);
  await load(settings.warmupS);
  const a = cpuSnapshot(trees);
  const started = performance.now();
  const running = load(settings.durationS);
  const port = target === 'direct' ? t.backendPort : target === 'nginx' ? t.nginxPort! : t.gatehousePort;
  const split = c !== 'handshake' && target !== 'direct' ? await new Promise<string>((r) => setTimeout(() => void connectionSplit(port).then(r), 2000)) : undefined;
  const r = await running;
  const use: CpuUse = cpuBetween(a, cpuSnapshot(trees), (performance.now() - started) / 1000);
  const m: Measurement = {
    case: c,
    target,
    requests: r.requests,
    rps: r.rps,
    p50Ms: r.p50Ms,
    p99Ms: r.p99Ms,
    errors: r.errors,
    firstError: r.firstError,
    serverCores: use.trees[0]!,
    backendCores: target === 'direct' ? 0 : use.trees[1]!,
    foreignCores: use.foreign,
    split,
    round,
  };
  log(
    `  ${c.padEnd(10)} ${target.padEnd(9)} ${m.rps.toFixed(0).padStart(7)} req/s  p50 ${m.p50Ms.toFixed(2)} ms  p99 ${m.p99Ms.toFixed(2)} ms  ` +
      `server ${m.serverCores.toFixed(2)} cores  backend ${m.backendCores.toFixed(2)}  other ${m.foreignCores.toFixed(2)}` +
      (split ? `  connections per worker ${split}` : '') +
      (m.errors ? `  errors ${m.errors} (${m.firstError ?? 'non-2xx'})` : ''),
  );
  return m;
}

function loads(c: CaseName, target: TargetName, t: Targets): Load {
  if (c === 'login') {
    const url = `https://${LOGIN_HOST}:${t.gatehousePort}/`;
    return (durationS) => runWrk({ url, threads: settings.wrkThreads, connections: settings.connections, durationS, headers: [`Cookie: ${t.loginCookie}`] });
  }
  if (c === 'keep-alive') {
    const url = target === 'direct' ? `http://127.0.0.1:${t.backendPort}/` : `https://${OPEN_HOST}:${target === 'nginx' ? t.nginxPort : t.gatehousePort}/`;
    return (durationS) => runWrk({ url, threads: settings.wrkThreads, connections: settings.connections, durationS });
  }
  const base: Omit<LoadOptions, 'durationS'> =
    target === 'direct'
      ? { port: t.backendPort, concurrency: settings.mtlsConcurrency, threads: settings.mtlsThreads }
      : {
          port: target === 'nginx' ? t.nginxPort! : t.gatehousePort,
          servername: MTLS_HOST,
          tls: { cert: t.client.certPem, key: t.client.keyPem },
          concurrency: settings.mtlsConcurrency,
          threads: settings.mtlsThreads,
        };
  return (durationS) => runLoad({ ...base, durationS });
}

function version(cmd: string, args: string[]): string {
  // nginx -v and wrk -v print to stderr (wrk exits 1)
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 5000 });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.split('\n')[0]!.trim();
}

async function main(): Promise<void> {
  const nginxVersion = version('nginx', ['-v']);
  const wrkVersion = version('wrk', ['-v']);
  if (!nginxVersion.includes('nginx')) throw new Error('nginx is not installed (apt-get install nginx-light)');
  if (!wrkVersion.includes('wrk')) throw new Error('wrk is not installed (apt-get install wrk)');
  log(`starting the backend, nginx and Gatehouse (workers: ${settings.workers}, access log ${settings.accessLog ? 'on' : 'off'})…`);
  const t = await startTargets({ workers: settings.workers, accessLog: settings.accessLog });
  const all: Measurement[] = [];
  let notes: string[];
  try {
    notes = await checkTargets(t);
    for (const n of notes) log(`  ${n}`);
    for (let round = 0; round < settings.rounds; round++) {
      if (settings.rounds > 1) log(`round ${round + 1}/${settings.rounds}`);
      const order: TargetName[] = round % 2 === 0 ? ['direct', 'nginx', 'gatehouse'] : ['gatehouse', 'nginx', 'direct'];
      // cases reversed too on odd rounds (A B, B A): case 3 runs next to Gatehouse's case 1 in every round
      for (const c of round % 2 === 0 ? settings.cases : [...settings.cases].reverse()) {
        for (const target of order) {
          if (c === 'login' && target !== 'gatehouse') continue; // no sign-in in nginx
          all.push(await measure(c, target, t, loads(c, target, t), round));
        }
      }
    }
  } finally {
    await t.close();
  }

  const results = medians(all);
  const rs = ratios(results);
  const lr = loginRatio(all, results);
  const md = [
    '# Gatehouse benchmark',
    '',
    `${new Date().toISOString()} · ${cpus().length} cores (${cpus()[0]?.model ?? '?'}) · Node ${process.version} · ${nginxVersion} · ${wrkVersion.replace(/ Copyright.*/, '')}`,
    '',
    `Every target shares the same ${cpus().length} cores with the load generator and the backend (nginx \`return 200 "ok"\`, plain HTTP, 2 workers). ` +
      `nginx and Gatehouse run 2 worker processes each, ECDSA P-256 certificates, access log ${settings.accessLog ? 'on (nginx: JSON lines to a file, buffer=64k; Gatehouse: JSON lines on stdout redirected to a file)' : 'off on both'}. ` +
      `${settings.durationS} s per measurement after ${settings.warmupS} s of warm-up; ${settings.rounds} round(s)${settings.rounds > 1 ? ', median run shown' : ''}.`,
    '',
    `Case 1: \`wrk -t${settings.wrkThreads} -c${settings.connections} -d${settings.durationS}s --latency\`. ` +
      `Case 2: \`bench/mtls-load.ts\`, ${settings.mtlsConcurrency} loops in ${settings.mtlsThreads} worker threads, TLS 1.3 with a client certificate, no session reuse, one \`GET\` per connection with \`Connection: close\`; latency from connect to the server's close. ` +
      `Case 3: like case 1 against Gatehouse's \`auth: login\` route (host ${LOGIN_HOST}, \`allow.users\`, \`identityHeaders: ${t.identityHeaders}\`) with \`-H "Cookie: __Host-gatehouse=…"\` of a session created in the store before the start: ` +
      `Gatehouse checks the cookie MAC, finds the session, evaluates the policy${t.identityHeaders ? ' and sends X-Gatehouse-User, X-Gatehouse-Roles and an ES256 X-Gatehouse-Jwt-Assertion (cached per session and route) upstream' : '; identity headers OFF (BENCH_IDENTITY_HEADERS=off): nothing about the user goes upstream'}. Gatehouse only: nginx has no sign-in.`,
    '',
    markdownTable(results, { identityHeaders: t.identityHeaders }),
    '',
    ...(rs.length > 0 ? [markdownRatios(rs), ''] : []),
    ...(lr ? [markdownLoginRatio(lr), ''] : []),
    `"server CPU" is the CPU time of the server's process tree divided by the run time; "other load" is CPU used on the machine by processes outside the benchmark during the run (⚠ above ${NOISY_CORES} cores: the run was disturbed).`,
    '',
    'Equivalence checks before the runs:',
    '',
    ...notes.map((n) => `- ${n}`),
    '',
  ].join('\n');
  const outDir = join(repoRoot, 'bench', 'out');
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, 'results.md'), md);
  writeFileSync(join(outDir, 'results.json'), JSON.stringify({ settings, loadavg: loadavg(), runs: all, results, ratios: rs, loginRatio: lr }, null, 2));
  process.stdout.write(`${md}\n`);
  log(`written to ${join(outDir, 'results.md')}`);
  if (rs.some((r) => !r.pass)) process.exitCode = 1;
}

await main();
