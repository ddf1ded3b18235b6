/**
 * etcd leases for records that expire, so that etcd deletes them itself even when no Gatehouse process
 * survives to sweep. A lease is granted per bucket of expiry time and shared by every record (and its
 * expiry-index key) expiring in that bucket; it is never kept alive, so it ends at about the end of its
 * bucket whatever happens to the process that granted it.
 *
 * A lease granted for the bucket ending at END has a TTL of ceil((END − now) / 1000) + `leaseMarginSeconds`
 * seconds, counted from before the grant was sent, so it outlives every record of that bucket. Buckets
 * are a second wide for expiries within 10 s, 10 s within an hour, a minute within a day, an hour beyond
 * (so one lease serves every record written with a similar expiry): a record outlives its
 * `expiresAt` in etcd by at most a bucket and the margin (it is treated as absent from `expiresAt` on all
 * the same, and swept). Expiries beyond etcd's longest lease get no lease (the sweep alone deletes them).
 * etcd gives every lease its full TTL again when a new leader takes over (or the member restarts), so
 * across a leader change a record may stay for up to one more TTL; reads hide it and sweeps delete it.
 */

/** Seconds a lease outlives the end of its bucket. */
export const leaseMarginSeconds = 1;
/** etcd's longest lease TTL, in seconds (`MaxLeaseTTL`). */
const maxLeaseTtl = 9_000_000_000;
/** A cached lease is not handed out this close to its end (ms): grant a new one instead. */
const minRemaining = 1000;

/** The end (ms) of the bucket of `expiresAt`, as seen at `now`. */
export function bucketEnd(expiresAt: number, now: number): number {
  const remaining = expiresAt - now;
  const width = remaining <= 10_000 ? 1000 : remaining <= 3_600_000 ? 10_000 : remaining <= 86_400_000 ? 60_000 : 3_600_000;
  return Math.ceil(expiresAt / width) * width;
}

export interface Lease {
  /** etcd's lease ID (a 64-bit integer, as text). */
  readonly id: string;
  /** The earliest time (ms, this clock) etcd may end it. */
  readonly end: number;
}

/** Grants a lease of `ttl` seconds within `timeout` ms: its ID and the TTL etcd gave it (etcd may raise a short one). */
export type GrantLease = (ttl: number, timeout: number) => Promise<{ id: string; ttl: number }>;

export class LeaseCache {
  readonly #grant: GrantLease;
  /** By bucket end; a pending grant is shared by every write that needs it. */
  readonly #leases = new Map<number, Promise<Lease>>();
  readonly #settled = new Map<number, Lease>();
  #prunedAt = 0;

  constructor(grant: GrantLease) {
    this.#grant = grant;
  }

  /** The lease for a record expiring at `expiresAt` (undefined: beyond etcd's longest lease), granted within `timeout` ms. */
  async lease(expiresAt: number, timeout: number): Promise<string | undefined> {
    const now = Date.now();
    this.#prune(now);
    const end = bucketEnd(expiresAt, now);
    if (Math.ceil((end - now) / 1000) + leaseMarginSeconds > maxLeaseTtl) return undefined;
    const settled = this.#settled.get(end);
    if (settled && settled.end - now < minRemaining) this.#forgetBucket(end);
    let pending = this.#leases.get(end);
    if (!pending) {
      pending = this.#grantFor(end, timeout);
      this.#leases.set(end, pending);
      pending.then(
        (lease) => {
          if (this.#leases.get(end) === pending) this.#settled.set(end, lease);
        },
        () => {
          if (this.#leases.get(end) === pending) this.#leases.delete(end);
        },
      );
    }
    return (await withTimeout(pending, timeout)).id;
  }

  /** Forgets a lease etcd no longer knows (revoked, or etcd was replaced): the next write grants another. */
  forget(id: string): void {
    for (const [end, lease] of this.#settled) if (lease.id === id) this.#forgetBucket(end);
  }

  clear(): void {
    this.#leases.clear();
    this.#settled.clear();
  }

  async #grantFor(end: number, timeout: number): Promise<Lease> {
    const sent = Date.now();
    const ttl = Math.max(1, Math.ceil((end - sent) / 1000) + leaseMarginSeconds);
    const granted = await this.#grant(ttl, timeout);
    return { id: granted.id, end: sent + Math.max(ttl, granted.ttl) * 1000 };
  }

  #forgetBucket(end: number): void {
    this.#leases.delete(end);
    this.#settled.delete(end);
  }

  /** Drops leases about to end, at most once a second. */
  #prune(now: number): void {
    if (now - this.#prunedAt < 1000) return;
    this.#prunedAt = now;
    for (const [end, lease] of this.#settled) if (lease.end - now < minRemaining) this.#forgetBucket(end);
  }
}

/** `promise`, or a rejection after `timeout` ms (a grant started by another write may outlast this one's deadline). */
async function withTimeout<T>(promise: Promise<T>, timeout: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no lease granted within ${timeout} ms`)), Math.max(1, timeout));
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
