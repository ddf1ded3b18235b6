/** The connector protocol's pure parts: names, headers, numbers, worker slots, backoff and targets. */
export * from './wire.ts';
export { backoffDelay, type BackoffOptions } from './backoff.ts';
export { parseTarget, type ConnectorTarget } from './target.ts';
