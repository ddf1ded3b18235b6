/**
 * The results table (Markdown, printed as is and written to bench/out/results.md) and the floors that
 * Gatehouse must clear against nginx.
 */
import { NOISY_CORES } from './quiet.ts';

export type CaseName = 'keep-alive' | 'handshake';
export type TargetName = 'direct' | 'nginx' | 'gatehouse';

export interface Measurement {
  readonly case: CaseName;
  readonly target: TargetName;
  readonly requests: number;
  readonly rps: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly errors: number;
  readonly firstError?: string | undefined;
  /** cores used by the server under test (the proxy, or the backend for `direct`) */
  readonly serverCores: number;
  /** cores used by the backend behind a proxy */
  readonly backendCores: number;
  /** cores used by processes outside the benchmark during the run */
  readonly foreignCores: number;
  /** keep-alive: wrk's connections per server worker, e.g. "40/24" */
  readonly split?: string | undefined;
}

export const floors: Record<CaseName, number> = { 'keep-alive': 0.45, handshake: 0.6 };

export const caseTitles: Record<CaseName, string> = {
  'keep-alive': '1. keep-alive over TLS (wrk)',
  handshake: '2. new mTLS handshake per request',
};

const targetTitles: Record<CaseName, Record<TargetName, string>> = {
  'keep-alive': { direct: 'direct (plain HTTP)', nginx: 'nginx (TLS)', gatehouse: 'Gatehouse (TLS)' },
  handshake: { direct: 'direct (plain HTTP, new TCP conn.)', nginx: 'nginx (mTLS)', gatehouse: 'Gatehouse (mTLS)' },
};


const f = (n: number, digits = 0) => (Number.isFinite(n) ? n.toFixed(digits) : '–');
const ms = (n: number) => (n < 10 ? f(n, 2) : n < 100 ? f(n, 1) : f(n, 0));

/**
 * The median run (by req/s) of each case × target, among the runs that other processes did not disturb
 * when there are any (all runs otherwise).
 */
export function medians(all: readonly Measurement[]): Measurement[] {
  const groups = new Map<string, Measurement[]>();
  for (const m of all) {
    const k = `${m.case}|${m.target}`;
    const g = groups.get(k);
    if (g) g.push(m);
    else groups.set(k, [m]);
  }
  return [...groups.values()].map((g) => {
    const clean = g.filter((m) => m.foreignCores <= NOISY_CORES);
    const use = clean.length > 0 ? clean : g;
    return [...use].sort((a, b) => a.rps - b.rps)[Math.floor((use.length - 1) / 2)]!;
  });
}

export interface Ratio {
  readonly case: CaseName;
  readonly vsNginx: number;
  readonly vsDirect: number;
  readonly p50VsNginx: number;
  readonly p99VsNginx: number;
  readonly cpuPerReqVsNginx: number;
  readonly floor: number;
  readonly pass: boolean;
}

export function ratios(results: readonly Measurement[]): Ratio[] {
  const out: Ratio[] = [];
  for (const c of ['keep-alive', 'handshake'] as const) {
    const get = (t: TargetName) => results.find((m) => m.case === c && m.target === t);
    const g = get('gatehouse');
    const n = get('nginx');
    const d = get('direct');
    if (!g || !n) continue;
    const vsNginx = g.rps / n.rps;
    out.push({
      case: c,
      vsNginx,
      vsDirect: d ? g.rps / d.rps : NaN,
      p50VsNginx: g.p50Ms / n.p50Ms,
      p99VsNginx: g.p99Ms / n.p99Ms,
      cpuPerReqVsNginx: g.serverCores / g.rps / (n.serverCores / n.rps),
      floor: floors[c],
      pass: vsNginx >= floors[c],
    });
  }
  return out;
}

export function markdownTable(results: readonly Measurement[]): string {
  const rows = [
    '| case | target | req/s | p50 ms | p99 ms | server CPU (cores) | server CPU µs/req | errors | other load (cores) | conns per worker |',
    '|---|---|--:|--:|--:|--:|--:|--:|--:|--:|',
  ];
  for (const c of ['keep-alive', 'handshake'] as const) {
    for (const t of ['direct', 'nginx', 'gatehouse'] as const) {
      const m = results.find((r) => r.case === c && r.target === t);
      if (!m) continue;
      const noisy = m.foreignCores > NOISY_CORES ? ' ⚠' : '';
      rows.push(
        `| ${caseTitles[c]} | ${targetTitles[c][t]} | ${f(m.rps)} | ${ms(m.p50Ms)} | ${ms(m.p99Ms)} | ${f(m.serverCores, 2)} | ` +
          `${f((m.serverCores * 1e6) / m.rps)} | ${m.errors} | ${f(m.foreignCores, 2)}${noisy} | ${m.split ?? ''} |`,
      );
    }
  }
  return rows.join('\n');
}

export function markdownRatios(rs: readonly Ratio[]): string {
  const rows = [
    '| case | Gatehouse/nginx req/s | floor | | Gatehouse/direct req/s | p50 Gatehouse/nginx | p99 Gatehouse/nginx | CPU per request Gatehouse/nginx |',
    '|---|--:|--:|---|--:|--:|--:|--:|',
  ];
  for (const r of rs) {
    rows.push(
      `| ${caseTitles[r.case]} | **${f(r.vsNginx, 2)}×** | ≥ ${r.floor}× | ${r.pass ? 'pass' : '**FAIL**'} | ${f(r.vsDirect, 2)}× | ` +
        `${f(r.p50VsNginx, 2)}× | ${f(r.p99VsNginx, 2)}× | ${f(r.cpuPerReqVsNginx, 2)}× |`,
    );
  }
  return rows.join('\n');
}
