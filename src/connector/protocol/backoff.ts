/**
 * Reconnection delays: exponential from `baseMs`, capped at `capMs`, with jitter so that many connectors cut off
 * at once (a Gatehouse restart) do not come back in step. The delay is drawn from the upper half of the current
 * step: never less than half of it, so a reconnect storm still spreads out.
 */
export interface BackoffOptions {
  readonly baseMs: number;
  readonly capMs: number;
  /** a number in [0, 1); Math.random by default */
  readonly random?: () => number;
}

/** The delay before attempt `failures` + 1, after `failures` failures in a row (0: the base). */
export function backoffDelay(failures: number, options: BackoffOptions): number {
  const step = Math.min(options.capMs, options.baseMs * 2 ** Math.min(Math.max(failures, 0), 30));
  const r = (options.random ?? Math.random)();
  return Math.round(step / 2 + (step / 2) * r);
}
