/** Runs the real `curl` and parses what it printed: status, headers (last response), body. */
import { execFile } from 'node:child_process';

export interface CurlResult {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: string;
  readonly exitCode: number;
  readonly stderr: string;
}

export function curl(args: readonly string[], options: { input?: string; timeoutMs?: number } = {}): Promise<CurlResult> {
  return new Promise((resolve) => {
    const child = execFile(
      'curl',
      ['-s', '-S', '-i', '--max-time', String((options.timeoutMs ?? 15_000) / 1000), ...args],
      { maxBuffer: 64 * 1024 * 1024, encoding: 'latin1' },
      (err, stdout, stderr) => {
        const exitCode = err ? ((err as { code?: number }).code ?? 1) : 0;
        // with --proxy, curl prints the CONNECT response first: keep the last response
        const blocks = stdout.split(/\r\n\r\n/);
        let status = 0;
        let headers: Record<string, string> = {};
        let i = 0;
        while (i < blocks.length && /^HTTP\/[\d.]+ \d{3}/.test(blocks[i]!)) {
          const lines = blocks[i]!.split('\r\n');
          status = Number(lines[0]!.split(' ')[1]);
          headers = {};
          for (const l of lines.slice(1)) {
            const c = l.indexOf(':');
            if (c > 0) headers[l.slice(0, c).toLowerCase()] = l.slice(c + 1).trim();
          }
          i++;
        }
        resolve({ status, headers, body: blocks.slice(i).join('\r\n\r\n'), exitCode, stderr });
      },
    );
    if (options.input !== undefined) child.stdin?.end(options.input);
  });
}
