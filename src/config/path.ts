/** A location inside the configuration: keys and list indexes, as zod reports them. */
export type ConfigPath = readonly (string | number)[];

const identifier = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** `['routes', 2, 'upstream', 'timeouts']` → `routes[2].upstream.timeouts`; the root is `(top level)`. */
export function formatPath(path: ConfigPath): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (identifier.test(seg)) out += out === '' ? seg : `.${seg}`;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out === '' ? '(top level)' : out;
}

/** The path with list indexes left out, `routes[].upstream`, for looking up hints that hold for every item. */
export function formatPathPattern(path: ConfigPath): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += '[]';
    else out += out === '' ? seg : `.${seg}`;
  }
  return out;
}

/** Fills the `[]` of a pattern such as `routes[].to` with the indexes of `path`, in order. */
export function fillPathPattern(pattern: string, path: ConfigPath): string {
  const indexes = path.filter((seg): seg is number => typeof seg === 'number');
  let i = 0;
  return pattern.replace(/\[\]/g, () => {
    const n = indexes[i++];
    return n === undefined ? '[]' : `[${n}]`;
  });
}
