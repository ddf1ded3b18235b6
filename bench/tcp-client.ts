/**
 * The client of the tunnel case in a process of its own (so that the benchmark's own heap and timers do not
 * weigh on it, and its CPU is counted apart): forked with an IPC channel, it runs one `transfer` (bench/pattern.ts)
 * per message `{ port, direction, total }` and answers with the result.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { transfer, type Transfer } from './pattern.ts';

interface Job {
  readonly port: number;
  readonly direction: 'up' | 'down';
  readonly total: number;
}

export class TcpClient {
  readonly #p: ChildProcess;
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(p: ChildProcess) {
    this.#p = p;
  }

  static async start(): Promise<TcpClient> {
    const p = fork(fileURLToPath(import.meta.url), ['--serve'], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    await new Promise<void>((resolve, reject) => {
      p.once('message', () => resolve());
      p.once('exit', (code) => reject(new Error(`the TCP client exited at start (${code})`)));
    });
    return new TcpClient(p);
  }

  get pid(): number {
    return this.#p.pid!;
  }

  /** One transfer, run in the client process (one at a time). */
  transfer(port: number, direction: 'up' | 'down', total: number): Promise<Transfer> {
    const run = this.#queue.then(
      () =>
        new Promise<Transfer>((resolve, reject) => {
          const onExit = () => reject(new Error('the TCP client exited'));
          this.#p.once('exit', onExit);
          this.#p.once('message', (m) => {
            this.#p.off('exit', onExit);
            resolve(m as Transfer);
          });
          this.#p.send({ port, direction, total } satisfies Job);
        }),
    );
    this.#queue = run.catch(() => undefined);
    return run;
  }

  close(): void {
    this.#p.kill();
  }
}

if (process.argv[2] === '--serve' && process.send) {
  process.on('message', (job: Job) => {
    void transfer(job.port, job.direction, job.total).then((r) => process.send!(r));
  });
  process.on('disconnect', () => process.exit(0));
  process.send('ready');
}
