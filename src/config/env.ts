/**
 * `${NAME}` in configuration values: replaced by the environment variable NAME. `$${NAME}` is a literal `${NAME}`.
 * A `$` not followed by `{` is kept as it is.
 */

export type ExpandResult =
  | { ok: true; value: string; substituted: boolean }
  | { ok: false; errors: string[] };

const variableName = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Expands every `${NAME}` in `text`; every missing or malformed reference is reported. */
export function expandEnv(text: string, env: NodeJS.ProcessEnv): ExpandResult {
  if (!text.includes('${')) return { ok: true, value: text, substituted: false };
  let out = '';
  const errors: string[] = [];
  let substituted = false;
  let i = 0;
  while (i < text.length) {
    if (text.startsWith('$${', i)) {
      const end = text.indexOf('}', i + 3);
      const stop = end === -1 ? text.length : end + 1;
      out += text.slice(i + 1, stop);
      i = stop;
      continue;
    }
    if (text.startsWith('${', i)) {
      const end = text.indexOf('}', i + 2);
      if (end === -1) {
        errors.push('"${" without a closing "}" (write $${ for a literal ${)');
        break;
      }
      const name = text.slice(i + 2, end);
      if (!variableName.test(name)) {
        errors.push(`"\${${name}}" is not a variable reference (names are letters, digits and _)`);
      } else {
        const value = env[name];
        if (value === undefined) errors.push(`environment variable ${name} is not set`);
        else {
          out += value;
          substituted = true;
        }
      }
      i = end + 1;
      continue;
    }
    out += text[i];
    i++;
  }
  return errors.length > 0 ? { ok: false, errors } : { ok: true, value: out, substituted };
}
