import { loadConfig, formatProblems, locateProblems } from '../config/index.ts';
import { buildState, StateBuildError } from '../app/index.ts';

/**
 * `gatehouse check`: the same path as `serve` without listening: the file is loaded and validated, and
 * everything it refers to is read and checked (certificates, keys, CA files, CRLs).
 */
export async function runCheck(file: string): Promise<number> {
  const loaded = await loadConfig(file);
  if (!loaded.ok) {
    process.stdout.write(formatProblems(loaded.problems) + '\n');
    return 1;
  }
  try {
    const state = await buildState(loaded.config);
    state.revocation.close();
  } catch (err) {
    if (!(err instanceof StateBuildError)) throw err;
    process.stdout.write(formatProblems(await locateProblems(file, err.problems)) + '\n');
    return 1;
  }
  const routes = loaded.config.routes.length;
  process.stderr.write(`${file}: ok (${routes} route${routes === 1 ? '' : 's'})\n`);
  return 0;
}
