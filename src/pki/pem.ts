/** PEM (RFC 7468): base64 DER between `-----BEGIN label-----` and `-----END label-----` lines. */

export function encodePem(der: Uint8Array, label: string): string {
  const b64 = Buffer.from(der).toString('base64');
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += 64) lines.push(b64.slice(i, i + 64));
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

const blockPattern = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;

/** The DER of every block whose label is one of `labels`, in order; other blocks are skipped. */
export function decodePem(text: string, labels: readonly string[]): Buffer[] {
  const out: Buffer[] = [];
  for (const m of text.matchAll(blockPattern)) {
    if (!labels.includes(m[1]!)) continue;
    // RFC 7468 allows explanatory headers in some legacy blocks; none of ours carry them.
    const body = m[2]!.replace(/\s+/g, '');
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(body)) continue;
    out.push(Buffer.from(body, 'base64'));
  }
  return out;
}

/** True when `data` looks like PEM text rather than DER (DER starts with a SEQUENCE tag). */
export function looksLikePem(data: string | Buffer): boolean {
  if (typeof data === 'string') return true;
  return data.subarray(0, 64).toString('latin1').includes('-----BEGIN ');
}
