/**
 * Path normalisation, done once per request: the normalised path is both what the policy checks and
 * what is forwarded. Percent-encoded unreserved characters are decoded, other escapes are upper-cased
 * (an encoded slash stays encoded), dot segments are removed (also when encoded), repeated slashes are
 * collapsed. Returns undefined for a target that cannot be normalised safely.
 */
const HEX = '0123456789ABCDEF';

function isUnreserved(c: number): boolean {
  return (
    (c >= 0x41 && c <= 0x5a) || // A-Z
    (c >= 0x61 && c <= 0x7a) || // a-z
    (c >= 0x30 && c <= 0x39) || // 0-9
    c === 0x2d || c === 0x2e || c === 0x5f || c === 0x7e // - . _ ~
  );
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}

/** Characters allowed verbatim in a path (RFC 3986 pchar plus "/"); anything else is percent-encoded. */
function isPathChar(c: number): boolean {
  return (
    isUnreserved(c) ||
    c === 0x2f || // /
    c === 0x21 || c === 0x24 || (c >= 0x26 && c <= 0x2c) || c === 0x3b || c === 0x3d || // sub-delims ! $ & ' ( ) * + , ; =
    c === 0x3a || c === 0x40 // : @
  );
}

/** Decode unreserved escapes, upper-case the rest, encode characters that may not appear raw. */
function canonicalEscapes(path: string): string | undefined {
  // fast path: nothing to do for the common plain path
  let plain = true;
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i);
    if (c === 0x25 || !isPathChar(c)) {
      plain = false;
      break;
    }
  }
  if (plain) return path;
  let out = '';
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i);
    if (c === 0x25) {
      const h = hexValue(path.charCodeAt(i + 1));
      const l = hexValue(path.charCodeAt(i + 2));
      if (h < 0 || l < 0) return undefined; // a bare % is not a valid escape
      const v = h * 16 + l;
      if (v === 0) return undefined; // NUL never belongs in a path
      out += isUnreserved(v) ? String.fromCharCode(v) : '%' + HEX[h]! + HEX[l]!;
      i += 2;
    } else if (c > 0x7e || c < 0x21) {
      return undefined; // raw control, space or non-ASCII bytes: the client must encode them
    } else if (!isPathChar(c)) {
      out += '%' + HEX[c >> 4]! + HEX[c & 15]!;
    } else {
      out += String.fromCharCode(c);
    }
  }
  return out;
}

/** Dot segments that appear once encoded slashes (or backslashes) are read as separators. */
const hiddenDotSegment = /(?:^|\/|%2F|%5C)\.{1,2}(?:$|\/|%2F|%5C)/;

export function normalizePath(rawPath: string): string | undefined {
  if (rawPath.length === 0 || rawPath.charCodeAt(0) !== 0x2f) return undefined;
  const path = canonicalEscapes(rawPath);
  if (path === undefined) return undefined;
  // `/api/..%2Fadmin`: harmless to us, but an upstream that decodes %2F before resolving dots would serve /admin
  if ((path.includes('%2F') || path.includes('%5C') || path.includes('\\')) && hiddenDotSegment.test(path.replace(/\\/g, '%5C'))) {
    const plain = path.replace(/%2F|%5C|\\/g, '/');
    if (/\/\.{1,2}(?:\/|$)/.test(plain)) return undefined;
  }
  // fast path: no dot segments and no repeated slashes
  if (!path.includes('//') && !path.includes('/.')) return path;
  const segments = path.split('/');
  const out: string[] = [];
  for (let i = 1; i < segments.length; i++) {
    const s = segments[i]!;
    const last = i === segments.length - 1;
    if (s === '' && !last) continue; // repeated slash
    if (s === '.') {
      if (last) out.push('');
      continue;
    }
    if (s === '..') {
      out.pop();
      if (last) out.push('');
      continue;
    }
    out.push(s);
  }
  return '/' + out.join('/');
}

/** Splits a request target into path and query (query keeps its leading "?", or is ""). */
export function splitTarget(target: string): { path: string; query: string } {
  const q = target.indexOf('?');
  const h = target.indexOf('#');
  const end = h >= 0 ? h : target.length;
  if (q >= 0 && q < end) return { path: target.slice(0, q), query: target.slice(q, end) };
  return { path: target.slice(0, end), query: '' };
}
