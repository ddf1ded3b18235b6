import { randomBytes } from 'node:crypto';

/** Request ids: a random per-process prefix and a counter, unique across workers and restarts, cheap to make. */
const prefix = randomBytes(6).toString('base64url');
let counter = 0;

export function nextRequestId(): string {
  counter = (counter + 1) % 0x7fffffff;
  return prefix + counter.toString(36).padStart(6, '0');
}
