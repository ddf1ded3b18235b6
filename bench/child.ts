/**
 * A server under test run as a child process: output to files, stopped by its own pid (the signal it
 * drains on, then SIGKILL after a grace period). Every child still alive when the benchmark exits is killed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, rmSync } from 'node:fs';
import { connect, createServer } from 'node:net';

const alive = new Set<ChildProcess>();
const dirs = new Set<string>();
let hooked = false;

function cleanUp(): void {
  for (const c of alive) c.kill('SIGKILL');
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
}

function hookExit(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', cleanUp);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      cleanUp();
      process.exit(130);
    });
  }
}

/** Removes `dir` when the benchmark exits or is interrupted, unless `keep` is called first. */
export function removeOnExit(dir: string): { keep(): void } {
  hookExit();
  dirs.add(dir);
  return { keep: () => void dirs.delete(dir) };
}

export interface ChildOptions {
  readonly name: string;
  readonly command: string;
  readonly args: readonly string[];
  readonly stdout: string;
  readonly stderr: string;
  readonly cwd?: string;
  readonly env?: NodeJS.ProcessEnv;
  /** the signal that makes it stop gracefully */
  readonly stopSignal?: NodeJS.Signals;
}

export class Child {
  readonly #o: ChildOptions;
  readonly #p: ChildProcess;
  #exited: Promise<number | null>;

  private constructor(o: ChildOptions, p: ChildProcess) {
    this.#o = o;
    this.#p = p;
    this.#exited = new Promise((resolve) => p.once('exit', (code) => resolve(code)));
    void this.#exited.then(() => alive.delete(p));
  }

  static start(o: ChildOptions): Child {
    hookExit();
    const out = openSync(o.stdout, 'a');
    const err = openSync(o.stderr, 'a');
    const p = spawn(o.command, o.args, { cwd: o.cwd, env: o.env ?? process.env, stdio: ['ignore', out, err] });
    closeSync(out);
    closeSync(err);
    alive.add(p);
    return new Child(o, p);
  }

  get pid(): number {
    return this.#p.pid!;
  }

  get running(): boolean {
    return this.#p.exitCode === null && this.#p.signalCode === null;
  }

  /** The last lines of its stderr, for error messages. */
  tail(lines = 20): string {
    try {
      return readFileSync(this.#o.stderr, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '';
    }
  }

  /** Waits until `port` on 127.0.0.1 accepts connections; fails if the child exits first or time runs out. */
  async waitForPort(port: number, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (!this.running) throw new Error(`${this.#o.name} exited during start:\n${this.tail()}`);
      const ok = await new Promise<boolean>((resolve) => {
        const s = connect({ host: '127.0.0.1', port });
        s.once('connect', () => {
          s.destroy();
          resolve(true);
        });
        s.once('error', () => resolve(false));
      });
      if (ok) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`${this.#o.name} did not listen on port ${port} within ${timeoutMs} ms:\n${this.tail()}`);
  }

  /** Graceful stop, SIGKILL after `graceMs`. */
  async stop(graceMs = 10_000): Promise<number | null> {
    if (!this.running) return this.#exited;
    this.#p.kill(this.#o.stopSignal ?? 'SIGTERM');
    const timer = setTimeout(() => this.#p.kill('SIGKILL'), graceMs);
    const code = await this.#exited;
    clearTimeout(timer);
    return code;
  }
}

/** A free TCP port on 127.0.0.1 (bound, then released). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}
