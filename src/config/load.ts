/**
 * Reads a configuration file: YAML with positions → `${NAME}` expansion → the schema → the semantic checks →
 * a deep-frozen config, or every problem found, each at a line and column.
 */
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { messageOf } from '../core/index.ts';
import { configSchema, type Config } from './schema.ts';
import { describeIssues, type IssueContext } from './issues.ts';
import { formatPath, type ConfigPath } from './path.ts';
import { compareProblems, type PathProblem, type Problem } from './problem.ts';
import { validateConfig } from './validate.ts';
import { YamlSource, type Position } from './yaml-source.ts';

export interface LoadOptions {
  /** Where `${NAME}` is looked up; default `process.env`. */
  readonly env?: NodeJS.ProcessEnv;
  /** Directory relative paths are resolved against; default the directory of `file`. */
  readonly baseDir?: string;
}

export type LoadResult =
  | { readonly ok: true; readonly config: Readonly<Config>; readonly file: string; readonly baseDir: string }
  | { readonly ok: false; readonly file: string; readonly problems: Problem[] };

/** Reads and checks the configuration file `file`. Never throws for a bad file: problems come back in the result. */
export async function loadConfig(file: string, options: LoadOptions = {}): Promise<LoadResult> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory' : messageOf(err);
    return { ok: false, file, problems: [{ file, line: 1, col: 1, message: `cannot read the configuration file: ${why}` }] };
  }
  return loadConfigText(text, file, options);
}

/** Checks configuration `text` as if it were read from `file` (used for messages and relative paths). */
export async function loadConfigText(text: string, file: string, options: LoadOptions = {}): Promise<LoadResult> {
  const env = options.env ?? process.env;
  const baseDir = options.baseDir ?? dirname(resolve(file));
  const at = (pos: Position, message: string): Problem => ({ file, line: pos.line, col: pos.col, message });
  const fail = (problems: Problem[]): LoadResult => ({ ok: false, file, problems: dedupe(problems).sort(compareProblems) });

  const { source, errors } = YamlSource.parse(text);
  if (errors.length > 0) return fail(errors.map((e) => at(e, e.message)));
  const start = { line: 1, col: 1 };
  if (source.rootKind === 'empty') return fail([at(start, 'the configuration is empty (expected server:, routes: and so on)')]);
  if (source.rootKind === 'other') return fail([at(start, 'the configuration must be a mapping (server:, routes: and so on)')]);

  const problems: Problem[] = source.expandEnv(env).map((e) => at(e, e.message));
  let data: unknown;
  try {
    data = dropEmptyValues(source.toJS());
  } catch (err) {
    return fail([...problems, at(start, messageOf(err))]);
  }

  const place = (p: PathProblem) => {
    if (source.hasEnvError(p.path)) return; // already reported as a bad ${…}
    problems.push(at(source.positionOf(p.path, p.at), `${formatPath(p.path)}: ${p.message}`));
  };
  const parsed = configSchema.safeParse(data);
  if (!parsed.success) {
    const ctx: IssueContext = {
      valueAt: (path) => valueAt(data, path),
      hasKey: (path) => source.hasKey(path),
      isFromEnv: (path) => source.isFromEnv(path),
    };
    describeIssues(parsed.error.issues, ctx).forEach(place);
    return fail(problems);
  }
  // zod hands out its default values by reference: copy them so resolving paths and freezing touch only ours.
  const config = copyPlain(parsed.data);
  (await validateConfig(config, { baseDir })).forEach(place);
  if (problems.length > 0) return fail(problems);
  return { ok: true, config: deepFreeze(config), file, baseDir };
}

/**
 * A key with an empty value (`identity:` with everything under it commented out) counts as absent, so defaults
 * apply; a required key left empty is reported as such.
 */
function dropEmptyValues(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(dropEmptyValues);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) if (v !== null) out[k] = dropEmptyValues(v);
    return out;
  }
  return value;
}

/** A copy of the plain objects and arrays in `value`; class instances (Secret) are immutable and shared. */
function copyPlain<T>(value: T): T {
  if (Array.isArray(value)) return value.map(copyPlain) as T;
  if (value !== null && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, copyPlain(v)])) as T;
  }
  return value;
}

function valueAt(data: unknown, path: ConfigPath): unknown {
  let v = data;
  for (const seg of path) {
    if (v === null || typeof v !== 'object' || !Object.hasOwn(v, seg)) return undefined;
    v = (v as Record<string | number, unknown>)[seg];
  }
  return v;
}

function dedupe(problems: Problem[]): Problem[] {
  const seen = new Set<string>();
  return problems.filter((p) => {
    const key = `${p.line}:${p.col}:${p.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/** Freezes `value` and everything it holds, so a loaded config can be shared without copies. */
export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

/**
 * Gives positions to problems found after loading (a certificate that does not parse, a CRL that is not
 * signed by a trusted CA…), so `check` reports them as `FILE:LINE:COL: message` like every other problem.
 */
export async function locateProblems(file: string, found: readonly PathProblem[]): Promise<Problem[]> {
  let text = '';
  try {
    text = await readFile(file, 'utf8');
  } catch {
    // the file is gone since it was loaded: report at its start
  }
  const { source } = YamlSource.parse(text);
  return found
    .map((p) => {
      const pos = source.positionOf(p.path, p.at);
      return { file, line: pos.line, col: pos.col, message: `${formatPath(p.path)}: ${p.message}` };
    })
    .sort(compareProblems);
}
