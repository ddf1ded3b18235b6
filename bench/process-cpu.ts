/**
 * CPU time of a process and all its descendants, read from /proc (Linux): how much of the two cores the
 * server under test used during a run, whatever share the load generator took.
 */
import { readdirSync, readFileSync } from 'node:fs';

const TICKS_PER_SECOND = 100; // USER_HZ on Linux

interface Stat {
  readonly pid: number;
  readonly ppid: number;
  readonly ticks: number;
}

function readStat(pid: string): Stat | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // the command name is in parentheses and may contain spaces: fields start after the last ')'
    const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
    // rest[0] is field 3 (state): ppid is field 4, utime 14, stime 15
    return { pid: Number(pid), ppid: Number(rest[1]), ticks: Number(rest[11]) + Number(rest[12]) };
  } catch {
    return undefined;
  }
}

/** Seconds of CPU (user + system) used so far by `root` and every live descendant. */
export function treeCpuSeconds(root: number): number {
  const stats: Stat[] = [];
  for (const name of readdirSync('/proc')) {
    if (name.charCodeAt(0) < 0x30 || name.charCodeAt(0) > 0x39) continue;
    const s = readStat(name);
    if (s) stats.push(s);
  }
  const children = new Map<number, Stat[]>();
  for (const s of stats) {
    const list = children.get(s.ppid);
    if (list) list.push(s);
    else children.set(s.ppid, [s]);
  }
  let ticks = 0;
  const queue = stats.filter((s) => s.pid === root);
  while (queue.length > 0) {
    const s = queue.pop()!;
    ticks += s.ticks;
    queue.push(...(children.get(s.pid) ?? []));
  }
  return ticks / TICKS_PER_SECOND;
}

/** CPU seconds of the whole machine (all cores, busy time) from /proc/stat. */
export function machineBusySeconds(): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
  const [, user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).map(Number);
  return (user! + nice! + system! + irq! + softirq! + steal!) / TICKS_PER_SECOND;
}

/** CPU seconds of this process's children that have exited and been reaped (e.g. a finished `wrk`). */
export function reapedChildrenSeconds(): number {
  const text = readFileSync('/proc/self/stat', 'utf8');
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // fields 16 (cutime) and 17 (cstime)
  return (Number(rest[13]) + Number(rest[14])) / TICKS_PER_SECOND;
}

export interface CpuSnapshot {
  readonly machine: number;
  readonly ours: number;
  readonly trees: readonly number[];
}

/**
 * CPU bookkeeping around one measurement: each listed process tree, everything this benchmark runs
 * (itself, its load threads, its children, reaped ones included), and the rest of the machine, which is
 * load the benchmark did not make (other users' work) and makes the numbers noisy.
 */
export function cpuSnapshot(trees: readonly number[]): CpuSnapshot {
  return {
    machine: machineBusySeconds(),
    ours: treeCpuSeconds(process.pid) + reapedChildrenSeconds(),
    trees: trees.map(treeCpuSeconds),
  };
}

export interface CpuUse {
  /** cores used by each listed tree, on average */
  readonly trees: readonly number[];
  /** cores used by processes that are not part of the benchmark */
  readonly foreign: number;
  readonly seconds: number;
}

export function cpuBetween(a: CpuSnapshot, b: CpuSnapshot, seconds: number): CpuUse {
  return {
    trees: b.trees.map((t, i) => (t - a.trees[i]!) / seconds),
    foreign: Math.max(0, (b.machine - a.machine - (b.ours - a.ours)) / seconds),
    seconds,
  };
}
