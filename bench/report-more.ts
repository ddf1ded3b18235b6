/**
 * Tables and ratios of the tunnel, connector, etcd and revocation cases (bench/more-cases.ts), in the style of
 * report.ts: the median run of each cell among the runs other load did not disturb, ratios of the medians and
 * run by run (same round), and the targets from the issue.
 */
import { NOISY_CORES } from './quiet.ts';
import type { LoadRun, RevocationSeries, TunnelRun } from './more-cases.ts';

export const targets = { tunnel: 0.7, connector: 0.5 } as const;

const f = (n: number, digits = 0) => (Number.isFinite(n) ? n.toFixed(digits) : '–');
const ms = (n: number) => (Math.abs(n) < 10 ? f(n, 2) : Math.abs(n) < 100 ? f(n, 1) : f(n, 0));
const noisy = (x: { foreignCores: number }) => (x.foreignCores > NOISY_CORES ? ' ⚠' : '');

/** The median of `runs` by `metric`, among the undisturbed ones when there are any. */
function median<T extends { foreignCores: number }>(runs: readonly T[], metric: (r: T) => number): T | undefined {
  if (runs.length === 0) return undefined;
  const clean = runs.filter((r) => r.foreignCores <= NOISY_CORES);
  const use = clean.length > 0 ? clean : runs;
  return [...use].sort((a, b) => metric(a) - metric(b))[Math.floor((use.length - 1) / 2)];
}

/** Nearest-rank percentile. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

// ------------------------------------------------------------------------------------------------ tunnel

export interface TunnelSummary {
  readonly direction: 'up' | 'down';
  readonly direct: TunnelRun;
  readonly tunnel: TunnelRun;
  /** the nginx stream pair, when it ran */
  readonly nginx: TunnelRun | undefined;
  readonly ratio: number;
  readonly vsNginx: number;
  readonly perRound: readonly number[];
  readonly pass: boolean;
}

export function tunnelSummary(runs: readonly TunnelRun[]): TunnelSummary[] {
  const out: TunnelSummary[] = [];
  for (const direction of ['up', 'down'] as const) {
    const pick = (target: TunnelRun['target']) => median(runs.filter((r) => r.direction === direction && r.target === target), (r) => r.mibPerS);
    const direct = pick('direct');
    const tunnel = pick('tunnel');
    const nginx = pick('nginx');
    if (!direct || !tunnel) continue;
    const perRound: number[] = [];
    for (const t of runs.filter((r) => r.direction === direction && r.target === 'tunnel')) {
      const d = runs.find((r) => r.direction === direction && r.target === 'direct' && r.round === t.round);
      if (d) perRound.push(t.mibPerS / d.mibPerS);
    }
    const ratio = tunnel.mibPerS / direct.mibPerS;
    out.push({ direction, direct, tunnel, nginx, ratio, vsNginx: nginx ? tunnel.mibPerS / nginx.mibPerS : NaN, perRound, pass: ratio >= targets.tunnel });
  }
  return out;
}

export function markdownTunnel(ss: readonly TunnelSummary[], mib: number): string {
  const gib = mib / 1024;
  const path = (r: TunnelRun) =>
    r.target === 'direct' ? 'direct TCP to the sink' : r.target === 'nginx' ? 'nginx `stream` pair (reference)' : '`gatehouse tunnel` → Gatehouse';
  const rows = [
    `| ${f(mib)} MiB over one TCP connection | path | MiB/s | / direct | server side (cores) | client side (cores) | sink (cores) | client (cores) | server + client side CPU s per GiB | other load (cores) |`,
    '|---|---|--:|--:|--:|--:|--:|--:|--:|--:|',
  ];
  for (const s of ss) {
    for (const r of [s.direct, s.nginx, s.tunnel]) {
      if (!r) continue;
      rows.push(
        `| ${s.direction === 'up' ? 'up (client → upstream)' : 'down (upstream → client)'} | ${path(r)} | ${f(r.mibPerS)} | ${r.target === 'direct' ? '' : `${f(r.mibPerS / s.direct.mibPerS, 2)}×`} | ` +
          `${r.target === 'direct' ? '' : f(r.gatehouseCores, 2)} | ${r.target === 'direct' ? '' : f(r.cliCores, 2)} | ${f(r.sinkCores, 2)} | ${f(r.clientCores, 2)} | ` +
          `${r.target === 'direct' ? '' : f(((r.gatehouseCores + r.cliCores) * r.seconds) / gib, 2)} | ${f(r.foreignCores, 2)}${noisy(r)} |`,
      );
    }
  }
  rows.push(
    '',
    '| tunnel | `gatehouse tunnel` / direct | target | | run by run | `gatehouse tunnel` / nginx `stream` pair |',
    '|---|--:|--:|---|--:|--:|',
  );
  for (const s of ss) {
    rows.push(
      `| ${s.direction} | **${f(s.ratio, 2)}×** | ≥ ${targets.tunnel}× | ${s.pass ? 'pass' : '**miss**'} | ${s.perRound.map((x) => f(x, 2)).join(', ')} | ${f(s.vsNginx, 2)}× |`,
    );
  }
  return rows.join('\n');
}

// ------------------------------------------------------------------------------------------------ wrk loads

const usPerReq = (m: LoadRun, trees: readonly string[]) => (trees.reduce((x, k) => x + (m.cores[k] ?? 0), 0) * 1e6) / m.rps;

export interface LoadPair {
  readonly case: string;
  readonly base: LoadRun;
  readonly other: LoadRun;
  readonly rps: number;
  readonly p50: number;
  readonly p99: number;
  /** CPU per request of the serving trees (Gatehouse, connector, etcd; not the backend), other / base */
  readonly cpuPerReq: number;
  readonly perRound: readonly number[];
}

function pair(runs: readonly LoadRun[], c: string, base: string, other: string, serving: readonly string[]): LoadPair | undefined {
  const b = median(runs.filter((r) => r.case === c && r.target === base), (r) => r.rps);
  const o = median(runs.filter((r) => r.case === c && r.target === other), (r) => r.rps);
  if (!b || !o) return undefined;
  const perRound: number[] = [];
  for (const x of runs.filter((r) => r.case === c && r.target === other)) {
    const y = runs.find((r) => r.case === c && r.target === base && r.round === x.round);
    if (y) perRound.push(x.rps / y.rps);
  }
  return { case: c, base: b, other: o, rps: o.rps / b.rps, p50: o.p50Ms / b.p50Ms, p99: o.p99Ms / b.p99Ms, cpuPerReq: usPerReq(o, serving) / usPerReq(b, serving), perRound };
}

const CONNECTOR_SERVING = ['gatehouse', 'connector'];
const ETCD_SERVING = ['gatehouse', 'gatehouse A', 'gatehouse B', 'etcd'];

export function connectorPair(runs: readonly LoadRun[]): (LoadPair & { pass: boolean }) | undefined {
  const p = pair(runs, 'connector', 'direct route', 'connector route', CONNECTOR_SERVING);
  return p && { ...p, pass: p.rps >= targets.connector };
}

export function markdownConnector(p: LoadPair & { pass: boolean }): string {
  const rows = [
    '| case | target | req/s | p50 ms | p99 ms | Gatehouse CPU (cores) | connector CPU (cores) | Gatehouse + connector µs/req | backend CPU (cores) | errors | other load (cores) |',
    '|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
  ];
  for (const m of [p.base, p.other]) {
    rows.push(
      `| connector (wrk) | ${m.target === 'direct route' ? 'route to the backend (no connector)' : '`connector:` route via `gatehouse connect`'} | ${f(m.rps)} | ${ms(m.p50Ms)} | ${ms(m.p99Ms)} | ` +
        `${f(m.cores.gatehouse ?? 0, 2)} | ${f(m.cores.connector ?? 0, 2)} | ${f(usPerReq(m, CONNECTOR_SERVING))} | ${f(m.cores.backend ?? 0, 2)} | ${m.errors} | ${f(m.foreignCores, 2)}${noisy(m)} |`,
    );
  }
  return [
    ...rows,
    '',
    '| connector / direct route | req/s | target | | run by run | p50 | p99 | CPU per request (Gatehouse + connector) |',
    '|---|--:|--:|---|--:|--:|--:|--:|',
    `| medians | **${f(p.rps, 2)}×** | ≥ ${targets.connector}× | ${p.pass ? 'pass' : '**miss**'} | ${p.perRound.map((x) => f(x, 2)).join(', ')} | ${f(p.p50, 2)}× | ${f(p.p99, 2)}× | ${f(p.cpuPerReq, 2)}× |`,
  ].join('\n');
}

export function etcdPairs(runs: readonly LoadRun[]): LoadPair[] {
  return (['keep-alive', 'login'] as const).map((c) => pair(runs, c, 'sqlite', 'etcd', ETCD_SERVING)).filter((p): p is LoadPair => p !== undefined);
}

export function markdownEtcd(ps: readonly LoadPair[], o: { etcdWorkers: number; workers: number }): string {
  const title = (c: string) => (c === 'login' ? '3. keep-alive, signed in (wrk ×2)' : '1. keep-alive over TLS (wrk ×2)');
  const target = (t: string) =>
    t === 'sqlite' ? `one Gatehouse on SQLite (${o.workers} workers), both wrk on it` : `two Gatehouses on one etcd (${o.etcdWorkers} worker${o.etcdWorkers > 1 ? 's' : ''} each), one wrk each`;
  const rows = [
    '| case | target | req/s | p50 ms | p99 ms | Gatehouse CPU (cores) | etcd CPU (cores) | Gatehouse + etcd µs/req | errors | other load (cores) |',
    '|---|---|--:|--:|--:|--:|--:|--:|--:|--:|',
  ];
  for (const p of ps) {
    for (const m of [p.base, p.other]) {
      const g = (m.cores.gatehouse ?? 0) + (m.cores['gatehouse A'] ?? 0) + (m.cores['gatehouse B'] ?? 0);
      rows.push(
        `| ${title(m.case)} | ${target(m.target)} | ${f(m.rps)} | ${ms(m.p50Ms)} | ${ms(m.p99Ms)} | ${f(g, 2)} | ${m.cores.etcd === undefined ? '' : f(m.cores.etcd, 2)} | ${f(usPerReq(m, ETCD_SERVING))} | ${m.errors} | ${f(m.foreignCores, 2)}${noisy(m)} |`,
      );
    }
  }
  rows.push('', '| etcd (2 instances) / SQLite (1 instance) | req/s | run by run | p50 | p99 | CPU per request |', '|---|--:|--:|--:|--:|--:|');
  for (const p of ps) {
    rows.push(`| ${title(p.case)} | **${f(p.rps, 2)}×** | ${p.perRound.map((x) => f(x, 2)).join(', ')} | ${f(p.p50, 2)}× | ${f(p.p99, 2)}× | ${f(p.cpuPerReq, 2)}× |`);
  }
  return rows.join('\n');
}

// ------------------------------------------------------------------------------------------------ revocation

export interface RevocationSummary {
  readonly store: string;
  readonly path: string;
  readonly n: number;
  readonly p50: number;
  readonly p90: number;
  readonly max: number;
  readonly min: number;
  readonly p50AfterSend: number;
  readonly maxAfterSend: number;
  readonly p50LastAllowed: number;
  readonly maxLastAllowed: number;
  readonly p50Polls: number;
  /** requests sent after A's answer that B still allowed: total over the series, and the most in one revocation */
  readonly allowedAfterAnswer: number;
  readonly maxAllowedAfterAnswer: number;
  readonly statuses: string;
}

export function revocationSummary(series: readonly RevocationSeries[]): RevocationSummary[] {
  return series.map((s) => {
    const a = s.samples.map((x) => x.afterAnswerMs);
    const sent = s.samples.map((x) => x.afterSendMs);
    const last = s.samples.map((x) => x.lastAllowedSentMs).filter(Number.isFinite);
    return {
      store: s.store,
      path: s.path,
      n: a.length,
      p50: percentile(a, 50),
      p90: percentile(a, 90),
      max: Math.max(...a),
      min: Math.min(...a),
      p50AfterSend: percentile(sent, 50),
      maxAfterSend: Math.max(...sent),
      p50LastAllowed: percentile(last, 50),
      maxLastAllowed: last.length ? Math.max(...last) : NaN,
      p50Polls: percentile(s.samples.map((x) => x.polls), 50),
      allowedAfterAnswer: s.samples.reduce((n, x) => n + x.allowedAfterAnswer, 0),
      maxAllowedAfterAnswer: Math.max(...s.samples.map((x) => x.allowedAfterAnswer)),
      statuses: [...new Set(s.samples.map((x) => x.refusedStatus))].join('/'),
    };
  });
}

export function markdownRevocation(ss: readonly RevocationSummary[], pollMs: number): string {
  const rows = [
    `| sign-out on A, refused on B (polled every ${pollMs} ms, keep-alive) | revocations | p50 ms | p90 ms | max ms | min ms | from sending the sign-out: p50 / max ms | last request B allowed, sent … ms after A's answer: p50 / max | requests sent after A's answer that B allowed: total (most in one) | refused with |`,
    '|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
  ];
  for (const s of ss) {
    rows.push(
      `| ${s.store === 'etcd' ? 'etcd' : 'SQLite'}: ${s.path} | ${s.n} | **${ms(s.p50)}** | ${ms(s.p90)} | **${ms(s.max)}** | ${ms(s.min)} | ${ms(s.p50AfterSend)} / ${ms(s.maxAfterSend)} | ` +
        `${ms(s.p50LastAllowed)} / ${ms(s.maxLastAllowed)} | ${s.allowedAfterAnswer} (${s.maxAllowedAfterAnswer}) | ${s.statuses} |`,
    );
  }
  return rows.join('\n');
}
