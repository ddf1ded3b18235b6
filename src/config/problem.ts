/** One thing wrong with a configuration file, at a 1-based line and column. */
export interface Problem {
  readonly file: string;
  readonly line: number;
  readonly col: number;
  readonly message: string;
}

/** A problem found on the parsed configuration, before it has a position: `path` names the offending node. */
export interface PathProblem {
  readonly path: readonly (string | number)[];
  readonly message: string;
  /** Point at the key of the last path segment instead of its value (unknown keys). */
  readonly at?: 'key' | 'value';
}

export function compareProblems(a: Problem, b: Problem): number {
  if (a.file !== b.file) return a.file < b.file ? -1 : 1;
  return a.line - b.line || a.col - b.col;
}
