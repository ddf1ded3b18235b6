import { GatehouseError } from '../core/index.ts';

/** Well-known misspellings and names from other tools, with the option Gatehouse uses instead. */
const aliases: Record<string, string> = {
  days: 'validityDays',
  validity: 'validityDays',
  validFrom: 'notBefore',
  validTo: 'notAfter',
  san: 'dnsNames',
  sans: 'dnsNames',
  altNames: 'dnsNames',
  dns: 'dnsNames',
  ips: 'ipAddresses',
  ip: 'ipAddresses',
  key: 'keyPem',
  cert: 'certPem',
  csr: 'csrPem',
  pathLen: 'pathLength',
  pathlen: 'pathLength',
  passphrase: 'password',
  chain: 'chainPems',
  type: 'kind',
  keyType: 'keyAlgorithm',
  serials: 'revoked',
};

function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, diagonal + (a[i - 1]!.toLowerCase() === b[j - 1]!.toLowerCase() ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length]!;
}

/** Options are checked when a call starts: unknown names fail, with the likely intended name. */
export function checkOptions(options: unknown, what: string, allowed: readonly string[]): void {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new GatehouseError('ERR_USAGE', `${what} expects an options object`);
  }
  for (const key of Object.keys(options)) {
    if (allowed.includes(key)) continue;
    const alias = Object.hasOwn(aliases, key) ? aliases[key] : undefined;
    const near = alias && allowed.includes(alias) ? alias : allowed.find((name) => distance(key, name) <= 2);
    const hint = near ? ` (did you mean ${near}?)` : ` (known options: ${allowed.join(', ')})`;
    throw new GatehouseError('ERR_USAGE', `${what}: unknown option "${key}"${hint}`);
  }
}
