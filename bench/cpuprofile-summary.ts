/**
 * Summarises V8 .cpuprofile files (from `node --cpu-prof`): self time by function and by file, a split into
 * Gatehouse's own code, Node's HTTP / TLS / stream internals, GC, native and idle time, and the inclusive
 * time of Gatehouse's functions. Several profiles (one per worker) are added together.
 *
 *   node --import tsx bench/cpuprofile-summary.ts [--top 30] FILE.cpuprofile…
 */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

interface CallFrame {
  readonly functionName: string;
  readonly url: string;
  readonly lineNumber: number;
}

interface ProfileNode {
  readonly id: number;
  readonly callFrame: CallFrame;
  readonly hitCount?: number;
  readonly children?: readonly number[];
}

interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly startTime: number;
  readonly endTime: number;
  readonly samples?: readonly number[];
  readonly timeDeltas?: readonly number[];
}

export type Category =
  | 'idle'
  | 'gatehouse'
  | 'node http'
  | 'node tls/net/streams'
  | 'node other'
  | 'dependencies'
  | 'gc'
  | 'native (program)'
  | 'native (bindings)';

const srcMarker = '/src/';

/** Where a frame belongs. Native bindings (empty url) carry the cost of the C++ they call: llhttp, OpenSSL, writes. */
export function categorise(f: CallFrame): Category {
  const { url, functionName: fn } = f;
  if (fn === '(idle)') return 'idle';
  if (fn === '(garbage collector)') return 'gc';
  if (fn === '(program)' || fn === '(root)') return 'native (program)';
  if (url === '') return 'native (bindings)';
  if (url.includes('/node_modules/')) return 'dependencies';
  if (url.includes(srcMarker) && url.startsWith('file://')) return 'gatehouse';
  if (/^node:(_http_|internal\/http|http|https)/.test(url)) return 'node http';
  if (/^node:(_tls|tls|net|internal\/(stream|streams|tls|net)|stream|internal\/stream_base)/.test(url)) return 'node tls/net/streams';
  return 'node other';
}

function shortUrl(url: string): string {
  if (url === '') return '(native)';
  const i = url.indexOf(srcMarker);
  if (url.startsWith('file://') && i >= 0) return url.slice(i + 1);
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) return url.slice(nm + 14);
  return url.startsWith('file://') ? basename(url) : url;
}

function frameKey(f: CallFrame): string {
  const name = f.functionName || '(anonymous)';
  if (!f.url) return name;
  // tsx's output does not keep the source's line numbers: name and file are enough for our own code
  return f.url.startsWith('file://') && f.url.includes(srcMarker) ? `${name}  ${shortUrl(f.url)}` : `${name}  ${shortUrl(f.url)}:${f.lineNumber + 1}`;
}

export interface Summary {
  readonly samples: number;
  readonly busySamples: number;
  readonly byCategory: Map<Category, number>;
  readonly selfByFunction: Map<string, { samples: number; category: Category }>;
  readonly selfByFile: Map<string, number>;
  /** inclusive samples of Gatehouse functions (recursion counted once) */
  readonly inclusiveGatehouse: Map<string, number>;
}

/** Adds profiles together; counts samples (each sample is one interval of the sampling period). */
export function summarise(profiles: readonly CpuProfile[]): Summary {
  const byCategory = new Map<Category, number>();
  const selfByFunction = new Map<string, { samples: number; category: Category }>();
  const selfByFile = new Map<string, number>();
  const inclusiveGatehouse = new Map<string, number>();
  let samples = 0;
  let idle = 0;
  for (const p of profiles) {
    const byId = new Map(p.nodes.map((n) => [n.id, n]));
    const parent = new Map<number, number>();
    for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
    const hits = new Map<number, number>();
    if (p.samples) for (const s of p.samples) hits.set(s, (hits.get(s) ?? 0) + 1);
    else for (const n of p.nodes) hits.set(n.id, n.hitCount ?? 0);
    for (const [id, count] of hits) {
      const node = byId.get(id)!;
      const f = node.callFrame;
      const cat = categorise(f);
      samples += count;
      if (cat === 'idle') idle += count;
      byCategory.set(cat, (byCategory.get(cat) ?? 0) + count);
      const key = frameKey(f);
      const e = selfByFunction.get(key);
      if (e) e.samples += count;
      else selfByFunction.set(key, { samples: count, category: cat });
      if (cat !== 'idle') {
        const file = f.url ? shortUrl(f.url) : `(${cat})`;
        selfByFile.set(file, (selfByFile.get(file) ?? 0) + count);
      }
      // inclusive: every distinct Gatehouse frame on the stack gets the sample once
      const seen = new Set<string>();
      for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
        const cf = byId.get(at)!.callFrame;
        if (categorise(cf) !== 'gatehouse') continue;
        const k = frameKey(cf);
        if (seen.has(k)) continue;
        seen.add(k);
        inclusiveGatehouse.set(k, (inclusiveGatehouse.get(k) ?? 0) + count);
      }
    }
  }
  return { samples, busySamples: samples - idle, byCategory, selfByFunction, selfByFile, inclusiveGatehouse };
}

const pct = (n: number, of: number) => `${((100 * n) / of).toFixed(1)}%`;

export interface PerRequest {
  /** the profiles' sampling interval */
  readonly intervalUs: number;
  /** requests served while the profiles were recorded */
  readonly requests: number;
}

/**
 * Markdown tables; percentages are of busy (non-idle) samples. With `perRequest`, the split by category
 * and the top functions also show CPU µs per request (samples × interval ÷ requests).
 */
export function formatSummary(s: Summary, top = 25, perRequest?: PerRequest): string {
  const busy = s.busySamples || 1;
  const us = (n: number) => (perRequest ? ` ${((n * perRequest.intervalUs) / perRequest.requests).toFixed(1)} |` : '');
  const usHead = perRequest ? ' µs/req |' : '';
  const usRule = perRequest ? '--:|' : '';
  const out: string[] = [];
  out.push(`${s.samples} samples, ${s.busySamples} busy (${pct(s.busySamples, s.samples || 1)}); percentages below are of busy samples.`);
  if (perRequest) out.push(`Busy CPU per request: ${((s.busySamples * perRequest.intervalUs) / perRequest.requests).toFixed(1)} µs (${perRequest.requests} requests).`);
  out.push('');
  out.push(`| where | self % |${usHead}`, `|---|--:|${usRule}`);
  for (const [cat, n] of [...s.byCategory].filter(([c]) => c !== 'idle').sort((a, b) => b[1] - a[1])) out.push(`| ${cat} | ${pct(n, busy)} |${us(n)}`);
  out.push('', `Top ${top} functions by self time:`, '', `| self % |${usHead} function | where |`, `|--:|${usRule}---|---|`);
  for (const [fn, e] of [...s.selfByFunction].filter(([, e]) => e.category !== 'idle').sort((a, b) => b[1].samples - a[1].samples).slice(0, top)) {
    out.push(`| ${pct(e.samples, busy)} |${us(e.samples)} \`${fn.replace(/\|/g, '\\|')}\` | ${e.category} |`);
  }
  out.push('', `Top ${Math.min(top, 20)} files by self time:`, '', '| self % | file |', '|--:|---|');
  for (const [file, n] of [...s.selfByFile].sort((a, b) => b[1] - a[1]).slice(0, Math.min(top, 20))) {
    out.push(`| ${pct(n, busy)} | ${file} |`);
  }
  out.push('', 'Gatehouse functions, inclusive (the function and everything it calls, Node internals included):', '', `| inclusive % |${usHead} function |`, `|--:|${usRule}---|`);
  for (const [fn, n] of [...s.inclusiveGatehouse].sort((a, b) => b[1] - a[1]).slice(0, top)) out.push(`| ${pct(n, busy)} |${us(n)} \`${fn}\` |`);
  return out.join('\n');
}

export function readProfile(file: string): CpuProfile {
  return JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values, positionals } = parseArgs({ options: { top: { type: 'string', default: '25' } }, allowPositionals: true });
  if (positionals.length === 0) throw new Error('usage: cpuprofile-summary.ts [--top N] FILE.cpuprofile…');
  console.log(formatSummary(summarise(positionals.map(readProfile)), Number(values.top)));
}
