import { GatehouseError } from './errors.ts';

const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const durationPattern = /^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+$/;
const partPattern = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/g;

/** Parses `90s`, `2m`, `12h`, `1h30m`, `250ms` into milliseconds. */
export function parseDuration(text: string): number {
  const s = text.trim();
  if (!durationPattern.test(s)) {
    throw new GatehouseError('ERR_USAGE', `"${text}" is not a duration (use e.g. 90s, 2m, 12h, 1h30m, 250ms)`);
  }
  let total = 0;
  for (const m of s.matchAll(partPattern)) total += Number(m[1]) * (units[m[2]!] ?? 0);
  return Math.round(total);
}

export function formatDuration(ms: number): string {
  if (ms % 3_600_000 === 0 && ms > 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0 && ms > 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}
