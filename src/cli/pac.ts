import { loadConfig, formatProblems } from '../config/index.ts';
import { renderPac } from '../proxy/index.ts';

/** `gatehouse pac`: the proxy auto-config file for this configuration. */
export async function runPac(file: string): Promise<number> {
  const loaded = await loadConfig(file);
  if (!loaded.ok) {
    process.stderr.write(formatProblems(loaded.problems) + '\n');
    return 1;
  }
  const { server, routes } = loaded.config;
  process.stdout.write(renderPac(routes, server.authHost, server.https.port));
  return 0;
}
