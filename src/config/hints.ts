/**
 * Hints for keys that were renamed or moved, and the did-you-mean for misspelt ones. Every renamed key lives in
 * this file and nowhere else: add a line here when a key changes name.
 */
import { fillPathPattern, formatPathPattern, type ConfigPath } from './path.ts';

/**
 * Old or commonly guessed keys → where the setting lives now. Both sides are patterns where `[]` stands for any
 * list index (`routes[].target` → `routes[].to`).
 */
export const renamedKeys: Readonly<Record<string, string>> = {
  'server.listen': 'server.https',
  'server.address': 'server.https',
  'server.httpRedirect': 'server.http',
  'server.cert': 'server.tls.cert',
  'server.key': 'server.tls.key',
  'server.authDomain': 'server.authHost',
  'server.authenticateHost': 'server.authHost',
  'store.path': 'store.sqlite.path',
  'identity.oidc.issuerUrl': 'identity.oidc.issuer',
  'identity.oidc.issuerURL': 'identity.oidc.issuer',
  'identity.oidc.secret': 'identity.oidc.clientSecret',
  'identity.cookieSecret': 'identity.secretsKey',
  'identity.sessionTtl': 'identity.session.ttl',
  'routes[].target': 'routes[].to',
  'routes[].url': 'routes[].to',
  'routes[].from': 'routes[].host',
  'routes[].hostname': 'routes[].host',
  'routes[].upstream.url': 'routes[].to',
  'routes[].policy': 'routes[].allow',
  'routes[].preserveHostHeader': 'routes[].upstream.hostHeader: preserve',
  'routes[].tlsSkipVerify': 'routes[].upstream.tls.insecureSkipVerify',
  'routes[].timeout': 'routes[].upstream.timeouts',
  'routes[].upstream.timeout': 'routes[].upstream.timeouts',
  'roles[].users': 'roles[].members',
};

/** Values of an old shape: a key that used to take a string and now takes a mapping. */
const reshapedValues: Readonly<Record<string, { was: 'string'; hint: string }>> = {
  'routes[].upstream': { was: 'string', hint: 'the upstream URL moved to routes[].to; upstream holds its options' },
};

/** `routes[0].target` → `use routes[0].to`, when the key was renamed. */
export function renamedKeyHint(path: ConfigPath): string | undefined {
  const to = renamedKeys[formatPathPattern(path)];
  return to === undefined ? undefined : `renamed: use ${fillPathPattern(to, path)}`;
}

/** A hint for a value of the old shape (`upstream: http://…`), if there is one. */
export function reshapedValueHint(path: ConfigPath, value: unknown): string | undefined {
  const entry = reshapedValues[formatPathPattern(path)];
  if (entry === undefined || typeof value !== entry.was) return undefined;
  return fillPathPattern(entry.hint, path);
}

/** Optimal string alignment distance (Levenshtein with adjacent transpositions). */
export function editDistance(a: string, b: string): number {
  const rows = a.length + 1;
  const cols = b.length + 1;
  const d: number[][] = Array.from({ length: rows }, (_, i) => Array.from({ length: cols }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) best = Math.min(best, d[i - 2]![j - 2]! + 1);
      d[i]![j] = best;
    }
  }
  return d[a.length]![b.length]!;
}

const normalise = (s: string) => s.toLowerCase().replace(/[-_]/g, '');

/**
 * The candidate closest to `word`, if it is close enough to be a likely typo. Case, `-` and `_` are ignored first,
 * so `max_body_size` finds `maxBodySize`.
 */
export function didYouMean(word: string, candidates: Iterable<string>): string | undefined {
  const w = normalise(word);
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    if (c === word) continue;
    const d = editDistance(w, normalise(c));
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  const allowed = Math.max(1, Math.floor(w.length / 3));
  return bestDistance <= allowed ? best : undefined;
}
