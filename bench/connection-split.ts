/**
 * How the client connections to a port are spread over the server's worker processes (from `ss`), e.g.
 * "40/24": with a shared listening socket the kernel hands a burst of new connections to whichever worker
 * accepts first, and a lopsided split leaves one worker saturated while the other idles.
 */
import { execFile } from 'node:child_process';

export function connectionSplit(port: number): Promise<string> {
  return new Promise((resolve) => {
    execFile('ss', ['-tnpH', 'state', 'established', `( sport = :${port} )`], { timeout: 5000 }, (err, stdout) => {
      if (err) return resolve('?');
      const perPid = new Map<string, number>();
      for (const m of stdout.matchAll(/pid=(\d+)/g)) perPid.set(m[1]!, (perPid.get(m[1]!) ?? 0) + 1);
      resolve([...perPid.values()].sort((a, b) => b - a).join('/') || '?');
    });
  });
}
