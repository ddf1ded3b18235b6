import { GatehouseError } from './errors.ts';

const multipliers: Record<string, number> = { '': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };
const sizePattern = /^(\d+(?:\.\d+)?)\s*([kmg]?)(?:i?b)?$/i;

/** Parses `512k`, `10m`, `1g`, `4096` (bytes) into bytes. Units are powers of 1024. */
export function parseSize(text: string | number): number {
  if (typeof text === 'number') {
    if (Number.isInteger(text) && text >= 0) return text;
    throw new GatehouseError('ERR_USAGE', `${text} is not a size in bytes`);
  }
  const m = sizePattern.exec(text.trim());
  if (!m) throw new GatehouseError('ERR_USAGE', `"${text}" is not a size (use e.g. 512k, 10m, 1g)`);
  return Math.round(Number(m[1]) * (multipliers[m[2]!.toLowerCase()] ?? 1));
}
