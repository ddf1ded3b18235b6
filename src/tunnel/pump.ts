/**
 * The byte pump between a tunnel's client and its upstream: each direction moves chunk by chunk and pauses its
 * reader while the other side's write buffer is full (so at most about one socket buffer plus one chunk is held
 * per direction, however slow the reader); an end (FIN) on one side ends the other side's writing and the other
 * direction keeps flowing (half-close); the tunnel is done when both directions have ended and flushed, when
 * either side fails or closes, or when no byte moved for the idle timeout.
 */
import type { Duplex } from 'node:stream';

/** Why a pump stopped. */
export type PumpEnd = 'done' | 'idle' | 'client-closed' | 'upstream-closed' | 'closed-by-gatehouse';

export interface PumpOptions {
  /** no byte in either direction for this long ends the tunnel; 0 for never */
  readonly idleMs: number;
  /** bytes moved: `in` from the client to the upstream, `out` from the upstream to the client */
  readonly onBytes?: (direction: 'in' | 'out', bytes: number) => void;
  /** once, when both sockets are done with */
  readonly onEnd?: (why: PumpEnd) => void;
}

type Side = 'client' | 'upstream';

export class Pump {
  readonly #client: Duplex;
  readonly #upstream: Duplex;
  readonly #o: PumpOptions;
  #bytesIn = 0;
  #bytesOut = 0;
  /** a byte moved since the idle timer last looked */
  #active = false;
  #idleTimer: NodeJS.Timeout | undefined;
  /** each side whose readable ended and whose writable finished */
  readonly #ended = new Set<string>();
  #end: PumpEnd | undefined;

  constructor(client: Duplex, upstream: Duplex, options: PumpOptions) {
    this.#client = client;
    this.#upstream = upstream;
    this.#o = options;
  }

  get bytesIn(): number {
    return this.#bytesIn;
  }

  get bytesOut(): number {
    return this.#bytesOut;
  }

  /** Bytes Gatehouse holds in its own write buffers (both directions): bounded by backpressure. */
  get buffered(): number {
    return this.#client.writableLength + this.#upstream.writableLength;
  }

  /** Why it stopped; undefined while it runs. */
  get ended(): PumpEnd | undefined {
    return this.#end;
  }

  /** Starts moving bytes; `head` (sent by the client after its request) goes to the upstream first. */
  start(head?: Buffer): void {
    for (const s of [this.#client, this.#upstream]) {
      // a FIN from one side must not end that side's writing: the other direction keeps flowing
      (s as Duplex & { allowHalfOpen: boolean }).allowHalfOpen = true;
      s.on('error', () => undefined); // 'close' follows and ends the tunnel
    }
    if (head?.length) {
      this.#count('in', head.length);
      this.#upstream.write(head);
    }
    this.#flow(this.#client, this.#upstream, 'in', 'client');
    this.#flow(this.#upstream, this.#client, 'out', 'upstream');
    this.#client.once('close', () => this.#stop(this.#ended.size === 4 ? 'done' : 'client-closed'));
    this.#upstream.once('close', () => this.#stop(this.#ended.size === 4 ? 'done' : 'upstream-closed'));
    if (this.#o.idleMs > 0) this.#armIdle(this.#o.idleMs);
    // either may have been paused by whoever read its request or answer: now the pump decides
    this.#client.resume();
    this.#upstream.resume();
  }

  /** Ends the tunnel now (both sockets destroyed). */
  stop(why: PumpEnd = 'closed-by-gatehouse'): void {
    this.#stop(why);
  }

  #flow(from: Duplex, to: Duplex, direction: 'in' | 'out', name: Side): void {
    from.on('data', (chunk: Buffer) => {
      this.#count(direction, chunk.length);
      if (!to.write(chunk)) from.pause();
    });
    to.on('drain', () => {
      this.#active = true;
      from.resume();
    });
    from.once('end', () => {
      this.#mark(`${name}-read`);
      to.end();
    });
    to.once('finish', () => this.#mark(`${name === 'client' ? 'upstream' : 'client'}-write`));
  }

  #count(direction: 'in' | 'out', n: number): void {
    this.#active = true;
    if (direction === 'in') this.#bytesIn += n;
    else this.#bytesOut += n;
    this.#o.onBytes?.(direction, n);
  }

  #mark(what: string): void {
    this.#ended.add(what);
    if (this.#ended.size === 4) this.#stop('done');
  }

  /**
   * Looks every idle timeout / 4 whether a byte moved (a flag set per chunk, cheaper than reading the clock per
   * chunk): a tunnel ends after between the idle timeout and 1¼ of it without a byte.
   */
  #armIdle(ms: number): void {
    const step = Math.max(1, Math.ceil(ms / 4));
    let quietSince = Date.now();
    const look = () => {
      const now = Date.now();
      if (this.#active) {
        this.#active = false;
        quietSince = now;
      } else if (now - quietSince >= ms) return this.#stop('idle');
      this.#idleTimer = setTimeout(look, step);
      this.#idleTimer.unref();
    };
    this.#idleTimer = setTimeout(look, step);
    this.#idleTimer.unref();
  }

  #stop(why: PumpEnd): void {
    if (this.#end) return;
    this.#end = why;
    clearTimeout(this.#idleTimer);
    this.#client.destroy();
    this.#upstream.destroy();
    this.#o.onEnd?.(why);
  }
}
