/**
 * The other process of the contract suite's cross-process tests (run with `node --import tsx`).
 * argv[2] is a JSON `ChildTask`; the last line on stdout is a JSON `ChildResult`.
 */
import { createInterface } from 'node:readline';
import { GatehouseError } from '../core/index.ts';
import { openStore, type StoreConfig } from './open.ts';
import type { StoreOp } from './store.ts';

export type ChildTask = { config: StoreConfig; baseDir: string } & (
  | { run: 'steps'; steps: StoreOp[][] }
  /** Prints `ready`, waits for a line on stdin, then adds 1 to the number at kind/id `times` times. */
  | { run: 'increment'; kind: string; id: string; times: number }
);

export interface ChildResult {
  revision: number;
  conflicts: number;
}

const task = JSON.parse(process.argv[2] ?? '{}') as ChildTask;
const store = await openStore(task.config, task.baseDir);
let conflicts = 0;
if (task.run === 'steps') {
  for (const step of task.steps) await store.transact(step);
} else {
  const lines = createInterface({ input: process.stdin });
  process.stdout.write('ready\n');
  await new Promise((resolve) => lines.once('line', resolve));
  lines.close();
  for (let done = 0; done < task.times; ) {
    const current = await store.get<number>(task.kind, task.id);
    try {
      await store.put(task.kind, task.id, (current?.value ?? 0) + 1, { ifRevision: current?.revision ?? 0 });
      done++;
    } catch (err) {
      if (!(err instanceof GatehouseError && err.code === 'ERR_STORE_CONFLICT')) throw err;
      conflicts++;
    }
  }
}
const result: ChildResult = { revision: await store.revision(), conflicts };
process.stdout.write(`${JSON.stringify(result)}\n`);
await store.close();
