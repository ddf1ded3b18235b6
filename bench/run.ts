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
 * Beyond them (bench/more-cases.ts; each started on its own targets after cases 1–3, so those run as before):
 *
 *   tunnel      MiB/s of one TCP connection through `gatehouse tunnel --listen` (the real CLI, a token) to a `tcp:`
 *               route whose upstream is bench/tcp-sink.ts, against a direct connection to the same sink; the
 *               same bytes (BENCH_TUNNEL_MIB, default 512) up and down, checked byte for byte. Target ≥ 0.7×.
 *   connector   wrk like case 1 to a `connector:` route served by a real `gatehouse connect`, against a route to
 *               the same backend without it on the same Gatehouse (bench/edge-targets.ts). Target ≥ 0.5×.
 *   etcd        case 1's and case 3's load as two wrk runs at once (-t1, half the connections each): one against
 *               each of two Gatehouses on one local etcd, or both against the SQLite Gatehouse above
 *               (bench/etcd-targets.ts; BENCH_ETCD_WORKERS workers per instance, default 1). Off by default (slow).
 *   revocation  a session signed out on A (`/.gatehouse/logout`) and the time until B refuses it, B polled on a
 *               keep-alive connection every BENCH_REVOCATION_POLL_MS (default 2) ms: etcd instance A → B, and one
 *               SQLite worker → another; BENCH_REVOCATIONS (default 20) of each, p50/max.
 *
 * Environment: BENCH_DURATION (seconds per measurement, default 10), BENCH_WARMUP (seconds, default 3),
 * BENCH_ROUNDS (default 3, interleaved: targets and cases in reverse order every other round; the median run of each cell is reported), BENCH_ACCESS_LOG (on|off, default on, for both
 * proxies), BENCH_CONNECTIONS (wrk, 64), BENCH_MTLS_CONCURRENCY (32), BENCH_MTLS_THREADS (2),
 * BENCH_QUIET_WAIT (seconds to wait for other load on the machine to stop before each run, default 60),
 * BENCH_RETRIES (how often a run disturbed by other load is repeated, default 2; the last attempt counts),
 * BENCH_CASES (keep-alive,handshake,tunnel,connector,revocation; add login for case 3, etcd for the etcd case, e.g.
 * BENCH_CASES=keep-alive,login,etcd; `all` for every case).
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
import { runConnectorCase, runEtcdCase, runRevocationCase, runTunnelCase, type LoadRun, type MoreSettings, type RevocationSeries, type TunnelRun } from './more-cases.ts';
import {
  connectorPair,
  etcdPairs,
  markdownConnector,
  markdownEtcd,
  markdownRevocation,
  markdownTunnel,
  revocationSummary,
  tunnelSummary,
} from './report-more.ts';
import { STREAM_MODULE, startEdge } from './edge-targets.ts';
import { checkEtcdTargets, startEtcdTargets } from './etcd-targets.ts';
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

/** The cases after 1–3 (bench/more-cases.ts). */
const moreCaseNames = ['tunnel', 'connector', 'etcd', 'revocation'] as const;
type MoreCase = (typeof moreCaseNames)[number];

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
  tunnelMiB: envNumber('BENCH_TUNNEL_MIB', 512),
  revocations: Math.round(envNumber('BENCH_REVOCATIONS', 20)),
  pollMs: envNumber('BENCH_REVOCATION_POLL_MS', 2),
  etcdWorkers: Math.round(envNumber('BENCH_ETCD_WORKERS', 1)),
  ...benchCases(process.env.BENCH_CASES ?? 'keep-alive,handshake,tunnel,connector,revocation'),
};

function benchCases(v: string): { cases: CaseName[]; more: MoreCase[] } {
  const known: readonly string[] = [...caseNames, ...moreCaseNames];
  const list = v.trim() === 'all' ? [...known] : v.split(',').map((s) => s.trim()).filter(Boolean);
  const unknown = list.filter((c) => !known.includes(c));
  if (list.length === 0 || unknown.length > 0) throw new Error(`BENCH_CASES: unknown case(s) ${unknown.join(', ') || '(none given)'}; known: ${known.join(', ')} (or all)`);
  return {
    cases: list.filter((c): c is CaseName => (caseNames as readonly string[]).includes(c)),
    more: list.filter((c): c is MoreCase => (moreCaseNames as readonly string[]).includes(c)),
  };
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

interface MoreResults {
  readonly markdown: string[];
  readonly json: Record<string, unknown>;
  /** a target of the tunnel or connector case was missed */
  readonly missed: boolean;
}

/** The tunnel, connector, etcd and revocation cases, each on its own targets, started after cases 1–3. */
async function moreCases(t: Targets): Promise<MoreResults> {
  const s: MoreSettings = {
    durationS: settings.durationS,
    warmupS: settings.warmupS,
    rounds: settings.rounds,
    connections: settings.connections,
    wrkThreads: settings.wrkThreads,
    quietWaitS: settings.quietWaitS,
    retries: settings.retries,
    tunnelMiB: settings.tunnelMiB,
    revocations: settings.revocations,
    pollMs: settings.pollMs,
  };
  const has = (c: MoreCase) => settings.more.includes(c);
  const markdown: string[] = [];
  const json: Record<string, unknown> = {};
  let missed = false;
  if (has('tunnel') || has('connector')) {
    log(`starting the edge Gatehouse (workers: ${settings.workers})${has('connector') ? ', gatehouse connect' : ''}${has('tunnel') ? ', the TCP sink and gatehouse tunnel --listen' : ''}…`);
    const e = await startEdge(t, { workers: settings.workers, accessLog: settings.accessLog, tunnel: has('tunnel'), connector: has('connector'), nginxStream: has('tunnel') });
    if (has('tunnel') && !e.stream) log(`  no nginx stream module (${STREAM_MODULE}; apt-get install libnginx-mod-stream): the tunnel case runs without its nginx reference`);
    try {
      if (has('connector')) log(`  gatehouse connect holds sessions with workers ${e.connectorWorkers.join(', ')}`);
      if (has('tunnel')) {
        const runs: TunnelRun[] = await runTunnelCase(e, s, log);
        const summary = tunnelSummary(runs);
        json.tunnel = { runs, summary };
        missed ||= summary.some((x) => !x.pass);
        markdown.push(
          `Tunnel: ${s.tunnelMiB} MiB over one TCP connection, up (client → upstream, timed to the sink's acknowledgement) and down (upstream → client, timed to the last byte), ` +
            `to \`bench/tcp-sink.ts\` directly, and through \`gatehouse tunnel --listen\` (a child process, \`--token\`; TLS to a second Gatehouse with ${settings.workers} workers, \`CONNECT\` to a \`tcp:\` route, plain TCP to the sink)` +
            `${e.stream ? `; for reference through the same three hops built from nginx \`stream\` (a 1-worker nginx with \`proxy_ssl on\` in front of a ${settings.workers}-worker nginx terminating TLS)` : ''}. ` +
            'Every byte is checked against the sent pattern; the client is a process of its own (`bench/tcp-client.ts`). Median run of each cell shown.',
          '',
          markdownTunnel(summary, s.tunnelMiB),
          '',
        );
      }
      if (has('connector')) {
        const runs: LoadRun[] = await runConnectorCase(t, e, s, log);
        const p = connectorPair(runs);
        json.connector = { runs, pair: p, workers: e.connectorWorkers };
        if (p) {
          missed ||= !p.pass;
          markdown.push(
            `Connector: \`wrk -t${settings.wrkThreads} -c${settings.connections} -d${settings.durationS}s --latency\` against a second Gatehouse (${settings.workers} workers, access log ${settings.accessLog ? 'on' : 'off'}): ` +
              `a route whose upstream is \`connector:bench\`, served by \`gatehouse connect --to http://127.0.0.1:BACKEND\` (a child process with one session per worker: ${e.connectorWorkers.join(', ')}), ` +
              'and a route to the same backend directly. Both routes public; the connector and Gatehouse share the two cores with wrk and the backend.',
            '',
            markdownConnector(p),
            '',
          );
        }
      }
    } finally {
      await e.close();
    }
  }
  if (has('etcd') || has('revocation')) {
    log(`starting etcd and two Gatehouses on it (workers: ${settings.etcdWorkers} each)…`);
    const x = await startEtcdTargets(t, { workers: settings.etcdWorkers, accessLog: settings.accessLog, identityHeaders: t.identityHeaders });
    try {
      const notes = await checkEtcdTargets(t, x);
      for (const n of notes) log(`  ${n}`);
      if (has('etcd')) {
        const runs: LoadRun[] = await runEtcdCase(t, x, s, log);
        const ps = etcdPairs(runs);
        json.etcd = { runs, pairs: ps, etcdVersion: x.version, etcdWorkers: settings.etcdWorkers };
        markdown.push(
          `etcd: the load of case 1 and of case 3 (same routes, session created in the store before the start) as two \`wrk -t1 -c${Math.round(settings.connections / 2)}\` runs at once: ` +
            `one against each of two Gatehouses on one local etcd ${x.version} (plain HTTP, default fsync), or both against the SQLite Gatehouse of cases 1–3. ` +
            'req/s is the sum of the two runs, p50/p99 the slower run\'s.',
          '',
          markdownEtcd(ps, { etcdWorkers: settings.etcdWorkers, workers: settings.workers }),
          '',
        );
      }
      if (has('revocation')) {
        const series: RevocationSeries[] = await runRevocationCase(t, x, s, log);
        const summary = revocationSummary(series);
        json.revocation = { series, summary };
        markdown.push(
          `Revocation: a session created in the store, seen allowed on both A and B, then signed out on A (\`GET /.gatehouse/logout\` with its cookie, a keep-alive connection), while B is asked with the same cookie ` +
            `on another keep-alive connection every ${s.pollMs} ms; the time is from A's answer (the revocation is written) to B's first refusal, so it includes up to one poll interval and one request. ` +
            `${s.revocations} revocations each, alternating; other load during the series ${series[0]?.foreignCores.toFixed(2) ?? '?'} cores.`,
          '',
          markdownRevocation(summary, s.pollMs),
          '',
        );
      }
    } finally {
      await x.close();
    }
  }
  return { markdown, json, missed };
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
  let more: MoreResults;
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
    more = await moreCases(t);
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
    ...(results.length > 0 ? [markdownTable(results, { identityHeaders: t.identityHeaders }), ''] : []),
    ...(rs.length > 0 ? [markdownRatios(rs), ''] : []),
    ...(lr ? [markdownLoginRatio(lr), ''] : []),
    ...more.markdown,
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
  writeFileSync(join(outDir, 'results.json'), JSON.stringify({ settings, loadavg: loadavg(), runs: all, results, ratios: rs, loginRatio: lr, more: more.json }, null, 2));
  process.stdout.write(`${md}\n`);
  log(`written to ${join(outDir, 'results.md')}`);
  if (rs.some((r) => !r.pass) || more.missed) process.exitCode = 1;
}

await main();
