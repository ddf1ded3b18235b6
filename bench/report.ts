/**
 * The results table (Markdown, printed as is and written to bench/out/results.md), the floors that
 * Gatehouse must clear against nginx, and case 3 (signed in, Gatehouse only) next to Gatehouse's case 1.
 */
import { NOISY_CORES } from './quiet.ts';

export type CaseName = 'keep-alive' | 'handshake' | 'login';
export const caseNames: readonly CaseName[] = ['keep-alive', 'handshake', 'login'];
/** The cases with an nginx equivalent; `login` (sign-in) has none and runs against Gatehouse only. */
export const nginxCases = ['keep-alive', 'handshake'] as const;
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
  /** 0-based round the run belongs to (to pair case 3 with case 1 of the same round) */
  readonly round?: number | undefined;
}

export const floors: Record<(typeof nginxCases)[number], number> = { 'keep-alive': 0.45, handshake: 0.6 };

export const caseTitles: Record<CaseName, string> = {
  'keep-alive': '1. keep-alive over TLS (wrk)',
  handshake: '2. new mTLS handshake per request',
  login: '3. keep-alive, signed in, identity headers (wrk)',
};

const targetTitles: Record<CaseName, Partial<Record<TargetName, string>>> = {
  'keep-alive': { direct: 'direct (plain HTTP)', nginx: 'nginx (TLS)', gatehouse: 'Gatehouse (TLS)' },
  handshake: { direct: 'direct (plain HTTP, new TCP conn.)', nginx: 'nginx (mTLS)', gatehouse: 'Gatehouse (mTLS)' },
  login: { gatehouse: 'Gatehouse (TLS, session cookie, `auth: login`)' },
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
  for (const c of nginxCases) {
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

export function markdownTable(results: readonly Measurement[], o: { identityHeaders?: boolean } = {}): string {
  const rows = [
    '| case | target | req/s | p50 ms | p99 ms | server CPU (cores) | server CPU µs/req | errors | other load (cores) | conns per worker |',
    '|---|---|--:|--:|--:|--:|--:|--:|--:|--:|',
  ];
  for (const c of caseNames) {
    for (const t of ['direct', 'nginx', 'gatehouse'] as const) {
      const m = results.find((r) => r.case === c && r.target === t);
      if (!m) continue;
      const noisy = m.foreignCores > NOISY_CORES ? ' ⚠' : '';
      rows.push(
        `| ${c === 'login' && o.identityHeaders === false ? '3. keep-alive, signed in, identity headers OFF (wrk)' : caseTitles[c]} | ${targetTitles[c][t] ?? t} | ${f(m.rps)} | ${ms(m.p50Ms)} | ${ms(m.p99Ms)} | ${f(m.serverCores, 2)} | ` +
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

const usPerReq = (m: Measurement) => (m.serverCores * 1e6) / m.rps;

/** Case 3 against Gatehouse's case 1: what being signed in with identity headers costs. */
export interface LoginRatio {
  readonly login: Measurement;
  readonly keepAlive: Measurement;
  readonly rps: number;
  readonly p50: number;
  readonly p99: number;
  readonly cpuPerReq: number;
  /** server CPU µs per request, case 3 minus case 1 */
  readonly extraUsPerReq: number;
  /** the same ratios run by run: case 3 and case 1 of the same round */
  readonly perRound: ReadonlyArray<{ readonly round: number; readonly rps: number; readonly cpuPerReq: number; readonly noisy: boolean }>;
}

/** Undefined unless both case 1 and case 3 ran against Gatehouse. */
export function loginRatio(all: readonly Measurement[], results: readonly Measurement[]): LoginRatio | undefined {
  const login = results.find((m) => m.case === 'login' && m.target === 'gatehouse');
  const keepAlive = results.find((m) => m.case === 'keep-alive' && m.target === 'gatehouse');
  if (!login || !keepAlive) return undefined;
  const perRound: Array<LoginRatio['perRound'][number]> = [];
  for (const l of all) {
    if (l.case !== 'login' || l.target !== 'gatehouse') continue;
    const k = all.find((m) => m.case === 'keep-alive' && m.target === 'gatehouse' && m.round === l.round);
    if (!k) continue;
    perRound.push({ round: l.round ?? 0, rps: l.rps / k.rps, cpuPerReq: usPerReq(l) / usPerReq(k), noisy: l.foreignCores > NOISY_CORES || k.foreignCores > NOISY_CORES });
  }
  return {
    login,
    keepAlive,
    rps: login.rps / keepAlive.rps,
    p50: login.p50Ms / keepAlive.p50Ms,
    p99: login.p99Ms / keepAlive.p99Ms,
    cpuPerReq: usPerReq(login) / usPerReq(keepAlive),
    extraUsPerReq: usPerReq(login) - usPerReq(keepAlive),
    perRound,
  };
}

export function markdownLoginRatio(r: LoginRatio): string {
  const rounds = (pick: (x: LoginRatio['perRound'][number]) => number) =>
    r.perRound.map((x) => `${f(pick(x), 2)}${x.noisy ? '⚠' : ''}`).join(', ');
  return [
    '| case 3 / Gatehouse case 1 (no nginx equivalent) | req/s | p50 | p99 | server CPU µs/req | extra CPU per request |',
    '|---|--:|--:|--:|--:|--:|',
    `| medians | **${f(r.rps, 2)}×** | ${f(r.p50, 2)}× | ${f(r.p99, 2)}× | **${f(r.cpuPerReq, 2)}×** | ${r.extraUsPerReq >= 0 ? '+' : ''}${f(r.extraUsPerReq)} µs |`,
    ...(r.perRound.length > 1 ? [`| run by run (same round) | ${rounds((x) => x.rps)} | | | ${rounds((x) => x.cpuPerReq)} | |`] : []),
  ].join('\n');
}
