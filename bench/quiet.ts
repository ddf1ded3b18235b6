/**
 * The machine is shared: before a measurement, wait until processes outside the benchmark are (nearly)
 * idle, so that they do not take the cores the measurement is about.
 */
import { cpuBetween, cpuSnapshot } from './process-cpu.ts';

/** "other load" above this many cores marks a run as disturbed by work outside the benchmark */
export const NOISY_CORES = 0.15;

/**
 * Waits until processes outside the benchmark use less than NOISY_CORES over one second, at most
 * `maxWaitS` seconds. Returns the last reading.
 */
export async function waitForQuiet(maxWaitS: number, log: (s: string) => void = () => undefined): Promise<number> {
  const deadline = Date.now() + maxWaitS * 1000;
  for (;;) {
    const a = cpuSnapshot([]);
    await new Promise((r) => setTimeout(r, 1000));
    const foreign = cpuBetween(a, cpuSnapshot([]), 1).foreign;
    if (foreign < NOISY_CORES || Date.now() >= deadline) return foreign;
    log(`  waiting: other processes use ${foreign.toFixed(2)} cores`);
  }
}
