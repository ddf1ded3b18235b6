import { compareProblems, type Problem } from './problem.ts';

/** One `FILE:LINE:COL: message` line per problem, in file order (what `gatehouse check` prints). */
export function formatProblems(problems: readonly Problem[]): string {
  return [...problems]
    .sort(compareProblems)
    .map((p) => `${p.file}:${p.line}:${p.col}: ${p.message}`)
    .join('\n');
}
