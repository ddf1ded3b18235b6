/**
 * The cases beyond 1–3, each measured side by side in the same run (rounds interleaved, the order reversed every
 * other round, a wait for a quiet machine before each measurement and a retry when other load disturbed it):
 *
 *   tunnel      MiB/s through `gatehouse tunnel --listen` to a `tcp:` route whose upstream is bench/tcp-sink.ts,
 *               against a direct TCP connection to the same sink; the same bytes each way, checked byte for byte
 *   connector   wrk keep-alive (like case 1) to a `connector:` route served by `gatehouse connect`, against a
 *               route to the same backend without it, on the same Gatehouse
 *   etcd        case 1 and case 3's load, split in two wrk runs at once, against two Gatehouse instances on one
 *               etcd (one wrk each), and against the main Gatehouse on SQLite (both wrk runs on it)
 *   revocation  a session signed out on one instance (A) and then refused on another (B, etcd) or on another
 *               worker of the SQLite Gatehouse: B is polled on a keep-alive connection every few ms
 */
import { cpuBetween, cpuSnapshot } from './process-cpu.ts';
import { NOISY_CORES, waitForQuiet } from './quiet.ts';
import { runWrk, type WrkResult } from './wrk.ts';
import type { Transfer } from './pattern.ts';
import { TcpClient } from './tcp-client.ts';
import { KeepAliveClient, serverPid, type Answer } from './keepalive-client.ts';
import { LOGIN_HOST, OPEN_HOST, createSessionIn, type Targets } from './targets.ts';
import type { EdgeTargets } from './edge-targets.ts';
import type { EtcdTargets } from './etcd-targets.ts';
import { SESSION_COOKIE } from '../src/authn/index.ts';
import { openSqliteStore, type Store } from '../src/store/index.ts';

export interface MoreSettings {
  readonly durationS: number;
  readonly warmupS: number;
  readonly rounds: number;
  readonly connections: number;
  readonly wrkThreads: number;
  readonly quietWaitS: number;
  readonly retries: number;
  readonly tunnelMiB: number;
  readonly revocations: number;
  readonly pollMs: number;
}

type Log = (s: string) => void;

/** Runs `once` after waiting for a quiet machine, again (up to `retries` times) while other load disturbed it. */
async function quietly<T extends { foreignCores: number }>(s: MoreSettings, log: Log, once: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    await waitForQuiet(s.quietWaitS, log);
    const m = await once();
    if (m.foreignCores <= NOISY_CORES || attempt >= s.retries) return m;
    log(`  disturbed (other load ${m.foreignCores.toFixed(2)} cores): again (${attempt + 1}/${s.retries})`);
  }
}

const f2 = (n: number) => n.toFixed(2);

// ------------------------------------------------------------------------------------------------ tunnel

export type TunnelTarget = 'direct' | 'tunnel' | 'nginx';

export interface TunnelRun {
  readonly direction: 'up' | 'down';
  readonly target: TunnelTarget;
  readonly mibPerS: number;
  readonly seconds: number;
  readonly bytes: number;
  readonly ok: boolean;
  readonly problem?: string | undefined;
  /** cores used during the transfer by the edge Gatehouse (nginx: the TLS server side), the `gatehouse tunnel` process (nginx: the client side), the sink, the client process */
  readonly gatehouseCores: number;
  readonly cliCores: number;
  readonly sinkCores: number;
  readonly clientCores: number;
  readonly foreignCores: number;
  readonly round: number;
}

export async function runTunnelCase(e: EdgeTargets, s: MoreSettings, log: Log): Promise<TunnelRun[]> {
  const total = Math.round(s.tunnelMiB * (1 << 20));
  const warm = Math.min(64 << 20, total);
  const runs: TunnelRun[] = [];
  const client = await TcpClient.start();
  try {
    // one checked transfer each way through the tunnel before anything is timed
    for (const d of ['up', 'down'] as const) {
      const r = await client.transfer(e.tunnelPort!, d, 16 << 20);
      if (!r.ok) throw new Error(`tunnel check (${d}, 16 MiB): ${r.problem}`);
    }
    if (e.stream) {
      for (const d of ['up', 'down'] as const) {
        const r = await client.transfer(e.stream.port, d, 16 << 20);
        if (!r.ok) throw new Error(`nginx stream check (${d}, 16 MiB): ${r.problem}`);
      }
    }
    log(`  tunnel check: 16 MiB each way through gatehouse tunnel${e.stream ? ' and the nginx stream pair' : ''}, every byte as sent`);
    for (let round = 0; round < s.rounds; round++) {
      if (s.rounds > 1) log(`tunnel round ${round + 1}/${s.rounds}`);
      const all: TunnelTarget[] = e.stream ? ['direct', 'nginx', 'tunnel'] : ['direct', 'tunnel'];
      const targets = round % 2 === 0 ? all : [...all].reverse();
      for (const direction of round % 2 === 0 ? (['up', 'down'] as const) : (['down', 'up'] as const)) {
        for (const target of targets) {
          const port = target === 'direct' ? e.sinkPort : target === 'nginx' ? e.stream!.port : e.tunnelPort!;
          const m = await quietly(s, log, async (): Promise<TunnelRun> => {
            await client.transfer(port, direction, warm);
            const trees = target === 'nginx' ? [e.stream!.server.pid, e.stream!.client.pid, e.sink.pid, client.pid] : [e.gatehouse.pid, e.tunnel!.pid, e.sink.pid, client.pid];
            const a = cpuSnapshot(trees);
            const r: Transfer = await client.transfer(port, direction, total);
            // the transfer's own clock; the snapshots bracket it (plus an IPC round trip)
            const use = cpuBetween(a, cpuSnapshot(trees), r.seconds);
            return {
              direction,
              target,
              mibPerS: r.mibPerS,
              seconds: r.seconds,
              bytes: r.bytes,
              ok: r.ok,
              problem: r.problem,
              gatehouseCores: target === 'direct' ? 0 : use.trees[0]!,
              cliCores: target === 'direct' ? 0 : use.trees[1]!,
              sinkCores: use.trees[2]!,
              clientCores: use.trees[3]!,
              foreignCores: use.foreign,
              round,
            };
          });
          if (!m.ok) throw new Error(`tunnel case: ${target} ${direction}: ${m.problem}`);
          log(
            `  tunnel ${direction.padEnd(4)} ${target.padEnd(6)} ${m.mibPerS.toFixed(0).padStart(5)} MiB/s (${m.seconds.toFixed(2)} s)  ` +
              `gatehouse ${f2(m.gatehouseCores)} cores  cli ${f2(m.cliCores)}  sink ${f2(m.sinkCores)}  client ${f2(m.clientCores)}  other ${f2(m.foreignCores)}`,
          );
          runs.push(m);
        }
      }
    }
  } finally {
    client.close();
  }
  return runs;
}

// ------------------------------------------------------------------------------------------------ wrk loads

export interface LoadRun {
  readonly case: string;
  readonly target: string;
  readonly requests: number;
  readonly rps: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly errors: number;
  /** cores used by each named process tree (Gatehouse, connector, etcd, backend) */
  readonly cores: Readonly<Record<string, number>>;
  readonly foreignCores: number;
  readonly round: number;
}

interface LoadSpec {
  readonly case: string;
  readonly target: string;
  /** wrk runs started together: URL and extra headers */
  readonly wrk: ReadonlyArray<{ url: string; headers?: readonly string[] }>;
  readonly trees: Readonly<Record<string, number>>;
}

/** wrk with `connections` split over the runs given (and threads one per run when there are two). */
async function wrkTogether(spec: LoadSpec, s: MoreSettings, durationS: number): Promise<WrkResult[]> {
  const n = spec.wrk.length;
  return Promise.all(
    spec.wrk.map((w) =>
      runWrk({
        url: w.url,
        threads: Math.max(1, Math.round(s.wrkThreads / n)),
        connections: Math.round(s.connections / n),
        durationS,
        ...(w.headers ? { headers: w.headers } : {}),
      }),
    ),
  );
}

async function measureLoad(spec: LoadSpec, s: MoreSettings, log: Log, round: number): Promise<LoadRun> {
  const m = await quietly(s, log, async (): Promise<LoadRun> => {
    await wrkTogether(spec, s, s.warmupS);
    const names = Object.keys(spec.trees);
    const pids = names.map((k) => spec.trees[k]!);
    const a = cpuSnapshot(pids);
    const started = performance.now();
    const rs = await wrkTogether(spec, s, s.durationS);
    const use = cpuBetween(a, cpuSnapshot(pids), (performance.now() - started) / 1000);
    return {
      case: spec.case,
      target: spec.target,
      requests: rs.reduce((x, r) => x + r.requests, 0),
      rps: rs.reduce((x, r) => x + r.rps, 0),
      // percentiles cannot be merged: the slower of the runs
      p50Ms: Math.max(...rs.map((r) => r.p50Ms)),
      p99Ms: Math.max(...rs.map((r) => r.p99Ms)),
      errors: rs.reduce((x, r) => x + r.errors, 0),
      cores: Object.fromEntries(names.map((k, i) => [k, use.trees[i]!])),
      foreignCores: use.foreign,
      round,
    };
  });
  log(
    `  ${m.case.padEnd(10)} ${m.target.padEnd(22)} ${m.rps.toFixed(0).padStart(7)} req/s  p50 ${m.p50Ms.toFixed(2)} ms  p99 ${m.p99Ms.toFixed(2)} ms  ` +
      Object.entries(m.cores).map(([k, v]) => `${k} ${f2(v)}`).join('  ') +
      `  other ${f2(m.foreignCores)}` +
      (m.errors ? `  errors ${m.errors}` : ''),
  );
  return m;
}

export type ConnectorTarget = 'direct route' | 'connector route';

export async function runConnectorCase(t: Targets, e: EdgeTargets, s: MoreSettings, log: Log): Promise<LoadRun[]> {
  const specs: Record<ConnectorTarget, LoadSpec> = {
    'direct route': {
      case: 'connector',
      target: 'direct route',
      wrk: [{ url: `https://${LOGIN_HOST}:${e.port}/` }],
      trees: { gatehouse: e.gatehouse.pid, connector: e.connector!.pid, backend: t.backend.pid },
    },
    'connector route': {
      case: 'connector',
      target: 'connector route',
      wrk: [{ url: `https://${OPEN_HOST}:${e.port}/` }],
      trees: { gatehouse: e.gatehouse.pid, connector: e.connector!.pid, backend: t.backend.pid },
    },
  };
  const runs: LoadRun[] = [];
  for (let round = 0; round < s.rounds; round++) {
    if (s.rounds > 1) log(`connector round ${round + 1}/${s.rounds}`);
    const order: ConnectorTarget[] = round % 2 === 0 ? ['direct route', 'connector route'] : ['connector route', 'direct route'];
    for (const target of order) runs.push(await measureLoad(specs[target], s, log, round));
  }
  return runs;
}

export type EtcdCase = 'keep-alive' | 'login';
export type EtcdTarget = 'sqlite' | 'etcd';

export async function runEtcdCase(t: Targets, x: EtcdTargets, s: MoreSettings, log: Log): Promise<LoadRun[]> {
  const [a, b] = x.instances;
  const spec = (c: EtcdCase, target: EtcdTarget): LoadSpec => {
    const host = c === 'login' ? LOGIN_HOST : OPEN_HOST;
    const headers = c === 'login' ? [`Cookie: ${target === 'sqlite' ? t.loginCookie : x.loginCookie}`] : undefined;
    const ports = target === 'sqlite' ? [t.gatehousePort, t.gatehousePort] : [a.port, b.port];
    return {
      case: c,
      target,
      wrk: ports.map((p) => ({ url: `https://${host}:${p}/`, ...(headers ? { headers } : {}) })),
      trees:
        target === 'sqlite'
          ? { gatehouse: t.gatehouse.pid, backend: t.backend.pid }
          : { 'gatehouse A': a.child.pid, 'gatehouse B': b.child.pid, etcd: x.etcd.pid, backend: t.backend.pid },
    };
  };
  const runs: LoadRun[] = [];
  for (let round = 0; round < s.rounds; round++) {
    if (s.rounds > 1) log(`etcd round ${round + 1}/${s.rounds}`);
    const order: EtcdTarget[] = round % 2 === 0 ? ['sqlite', 'etcd'] : ['etcd', 'sqlite'];
    for (const c of round % 2 === 0 ? (['keep-alive', 'login'] as const) : (['login', 'keep-alive'] as const)) {
      for (const target of order) runs.push(await measureLoad(spec(c, target), s, log, round));
    }
  }
  return runs;
}

// ------------------------------------------------------------------------------------------------ revocation

export interface RevocationSample {
  /** from A's answer to the sign-out (the revocation is written) to B's first refusal, ms */
  readonly afterAnswerMs: number;
  /** from sending the sign-out to A to B's first refusal, ms */
  readonly afterSendMs: number;
  /** from A's answer to the last request B still allowed (sent), ms: the revocation reached B after that */
  readonly lastAllowedSentMs: number;
  /** requests B answered between the sign-out being sent and the refusal */
  readonly polls: number;
  /** requests sent to B after A had answered the sign-out that B still allowed (the window a stolen cookie stays usable) */
  readonly allowedAfterAnswer: number;
  readonly refusedStatus: number;
}

export interface RevocationSeries {
  readonly store: 'etcd' | 'sqlite';
  readonly path: string;
  readonly samples: readonly RevocationSample[];
  readonly foreignCores: number;
  readonly pollMs: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function untilStatus(c: KeepAliveClient, cookie: string, status: number, timeoutMs: number): Promise<Answer> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await c.request('/', { Cookie: cookie });
    if (r.status === status) return r;
    if (Date.now() > deadline) throw new Error(`expected ${status}, still ${r.status} after ${timeoutMs} ms: ${r.body.slice(0, 200)}`);
    await sleep(5);
  }
}

/** One revocation: A signs the session out while B is polled with it; resolves when B refuses it. */
async function revokeOnce(a: KeepAliveClient, b: KeepAliveClient, cookie: string, pollMs: number): Promise<RevocationSample> {
  // both have the new session (B through its change feed, or the store on a mirror miss)
  await untilStatus(b, cookie, 200, 5000);
  await untilStatus(a, cookie, 200, 5000);
  await sleep(50); // B's change feed has delivered the new session by now: B answers from memory, as for any session
  const answers: Answer[] = [];
  let stop = false;
  const poll = (async (): Promise<Answer> => {
    const deadline = performance.now() + 15_000;
    for (;;) {
      const r = await b.request('/', { Cookie: cookie });
      answers.push(r);
      if (r.status !== 200) return r;
      if (stop || performance.now() > deadline) throw new Error('B still allows the session 15 s after it was signed out on A');
      await sleep(pollMs);
    }
  })();
  await sleep(Math.max(10, pollMs * 3));
  const out = await a.request('/.gatehouse/logout', { Cookie: cookie });
  if (out.status !== 302) {
    stop = true;
    void poll.catch(() => undefined);
    throw new Error(`sign-out on A answered ${out.status}, not 302: ${out.body.slice(0, 200)}`);
  }
  const refused = await poll;
  const allowed = answers.filter((r) => r.status === 200);
  const lastAllowed = allowed[allowed.length - 1];
  return {
    afterAnswerMs: refused.receivedAt - out.receivedAt,
    afterSendMs: refused.receivedAt - out.sentAt,
    lastAllowedSentMs: lastAllowed ? lastAllowed.sentAt - out.receivedAt : NaN,
    polls: answers.filter((r) => r.sentAt >= out.sentAt).length,
    allowedAfterAnswer: allowed.filter((r) => r.sentAt >= out.receivedAt).length,
    refusedStatus: refused.status,
  };
}

/** Two keep-alive connections to the same Gatehouse held by different worker processes. */
async function twoWorkers(port: number): Promise<[KeepAliveClient, KeepAliveClient, number, number]> {
  const open: Array<{ c: KeepAliveClient; pid: number | undefined }> = [];
  for (let i = 0; i < 24; i++) {
    const c = await KeepAliveClient.open(port, LOGIN_HOST);
    await c.request('/'); // the connection is accepted and served
    const pid = await serverPid(port, c.localPort);
    const other = open.find((o) => o.pid !== undefined && pid !== undefined && o.pid !== pid);
    if (other) {
      for (const o of open) if (o !== other) o.c.close();
      return [other.c, c, other.pid!, pid!];
    }
    open.push({ c, pid });
  }
  for (const o of open) o.c.close();
  throw new Error(`24 connections to port ${port} all landed on one worker (or ss could not tell)`);
}

export async function runRevocationCase(t: Targets, x: EtcdTargets, s: MoreSettings, log: Log): Promise<RevocationSeries[]> {
  const sqlite: Store = await openSqliteStore(t.files.gatehouseDb);
  const [ea, eb] = await Promise.all([KeepAliveClient.open(x.instances[0].port, LOGIN_HOST), KeepAliveClient.open(x.instances[1].port, LOGIN_HOST)]);
  const [sa, sb, pa, pb] = await twoWorkers(t.gatehousePort);
  log(`  revocation: etcd instance A (port ${x.instances[0].port}) → B (port ${x.instances[1].port}); SQLite worker pid ${pa} → pid ${pb}`);
  const samples: Record<'etcd' | 'sqlite', RevocationSample[]> = { etcd: [], sqlite: [] };
  try {
    await waitForQuiet(s.quietWaitS, log);
    const before = cpuSnapshot([]);
    const started = performance.now();
    for (let i = 0; i < s.revocations; i++) {
      for (const store of i % 2 === 0 ? (['etcd', 'sqlite'] as const) : (['sqlite', 'etcd'] as const)) {
        const cookie = `${SESSION_COOKIE}=${await createSessionIn(store === 'etcd' ? x.store : sqlite, LOGIN_HOST)}`;
        const r = store === 'etcd' ? await revokeOnce(ea, eb, cookie, s.pollMs) : await revokeOnce(sa, sb, cookie, s.pollMs);
        samples[store].push(r);
      }
      const e = samples.etcd[samples.etcd.length - 1]!;
      const q = samples.sqlite[samples.sqlite.length - 1]!;
      log(`  revocation ${String(i + 1).padStart(2)}: etcd ${e.afterAnswerMs.toFixed(1)} ms (${e.polls} polls)  sqlite ${q.afterAnswerMs.toFixed(1)} ms (${q.polls} polls)`);
    }
    const foreign = cpuBetween(before, cpuSnapshot([]), (performance.now() - started) / 1000).foreign;
    return [
      { store: 'etcd', path: 'instance A → instance B (one etcd)', samples: samples.etcd, foreignCores: foreign, pollMs: s.pollMs },
      { store: 'sqlite', path: 'worker → another worker of one instance', samples: samples.sqlite, foreignCores: foreign, pollMs: s.pollMs },
    ];
  } finally {
    for (const c of [ea, eb, sa, sb]) c.close();
    await sqlite.close();
  }
}
