/**
 * Runs `gatehouse serve` as a real child process (the CLI, workers and signals included) and reads its JSON
 * log lines.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { stringify } from 'yaml';

const bin = resolve(import.meta.dirname, '../../bin/gatehouse.mjs');

export interface ServeProcess {
  readonly child: ChildProcess;
  readonly configFile: string;
  readonly lines: Record<string, unknown>[];
  readonly stderr: string[];
  /** resolves with the first log line that satisfies `test` (seen already or coming), within `ms` */
  waitFor(test: (line: Record<string, unknown>) => boolean, ms?: number): Promise<Record<string, unknown>>;
  writeConfig(config: unknown): void;
  exited: Promise<number | null>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** A child's JSON log lines on stdout (other text kept as `{event: 'stdout', text}`), its stderr lines, and its exit. */
export interface FollowedLogs {
  readonly lines: Record<string, unknown>[];
  readonly stderr: string[];
  readonly exited: Promise<number | null>;
  /** resolves with the first line that satisfies `test` (seen already or coming), within `ms` */
  waitFor(test: (line: Record<string, unknown>) => boolean, ms?: number): Promise<Record<string, unknown>>;
}

/** Follows `child`'s output; `what` names its lines in a timeout's message. */
export function followLogs(child: ChildProcess, what: string): FollowedLogs {
  const lines: Record<string, unknown>[] = [];
  const stderr: string[] = [];
  const waiters: Array<{ test: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }> = [];
  createInterface({ input: child.stdout! }).on('line', (text) => {
    let line: Record<string, unknown>;
    try {
      line = JSON.parse(text) as Record<string, unknown>;
    } catch {
      line = { event: 'stdout', text };
    }
    lines.push(line);
    for (let i = waiters.length - 1; i >= 0; i--) {
      if (waiters[i]!.test(line)) {
        waiters[i]!.resolve(line);
        waiters.splice(i, 1);
      }
    }
  });
  createInterface({ input: child.stderr! }).on('line', (text) => stderr.push(text));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  const waitFor = (test: (l: Record<string, unknown>) => boolean, ms = 15_000) =>
    new Promise<Record<string, unknown>>((res, rej) => {
      const seen = lines.find(test);
      if (seen) return res(seen);
      const timer = setTimeout(() => rej(new Error(`${what} not seen within ${ms} ms; stderr: ${stderr.join('\n')}; lines: ${JSON.stringify(lines.slice(-5))}`)), ms);
      waiters.push({
        test,
        resolve: (l) => {
          clearTimeout(timer);
          res(l);
        },
      });
    });
  return { lines, stderr, exited, waitFor };
}

export function runCli(args: readonly string[], options: { cwd?: string } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done) => {
    const child = spawn(process.execPath, [bin, ...args], { cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('exit', (code) => done({ code, stdout, stderr }));
  });
}

export async function startServe(dir: string, config: unknown): Promise<ServeProcess> {
  const configFile = join(dir, 'gatehouse.yaml');
  const writeConfig = (c: unknown) => writeFileSync(configFile, typeof c === 'string' ? c : stringify(c));
  writeConfig(config);
  const child = spawn(process.execPath, [bin, 'serve', '-c', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  const { lines, stderr, exited, waitFor } = followLogs(child, 'log line');
  const p: ServeProcess = {
    child,
    configFile,
    lines,
    stderr,
    waitFor,
    writeConfig,
    exited,
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null) child.kill(signal);
      return exited;
    },
  };
  await Promise.race([
    waitFor((l) => l.event === 'listening'),
    exited.then((code) => {
      throw new Error(`gatehouse serve exited with ${code}: ${stderr.join('\n')}`);
    }),
  ]);
  return p;
}

export function listeningPort(p: ServeProcess, key: 'https' | 'http' | 'forwardProxy' | 'metrics'): number {
  const line = p.lines.find((l) => l.event === (key === 'metrics' ? 'metrics_listening' : 'listening') && typeof l[key] === 'string');
  const a = line?.[key] as string;
  return Number(a.slice(a.lastIndexOf(':') + 1));
}
