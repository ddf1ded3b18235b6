/**
 * One connector's HTTP/2 session as the hub holds it: Gatehouse is the HTTP/2 client over the connector's TLS
 * connection, and each dial is one `CONNECT` stream, a byte stream with its own flow control. The session PINGs
 * on the hub's beat and is dropped after `MISSED_PINGS` unanswered; a GOAWAY from the connector (it is rolling
 * over to a new certificate, or stopping) keeps the open streams and takes no new ones.
 */
import { connect as http2Connect, constants, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import type { Duplex } from 'node:stream';
import { GatehouseError, messageOf } from '../core/index.ts';
import { MISSED_PINGS, REASON_HEADER, WINDOW_BYTES, type WorkerSlot } from './protocol/index.ts';

export interface SessionFacts {
  readonly id: string;
  readonly name: string;
  /** the connector's address as the front door saw it */
  readonly address: string;
  readonly version: string;
  /** `HOST:PORT` the connector dials for every stream */
  readonly target: string;
  readonly serial: string;
  readonly notAfter: number;
  readonly since: number;
  readonly worker: WorkerSlot;
}

/** A dial that failed because the session went away before the connector answered: another session may take it. */
export class StreamLost extends GatehouseError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_UPSTREAM_UNREACHABLE', message, options);
  }
}

export class HubSession {
  readonly facts: SessionFacts;
  readonly #h2: ClientHttp2Session;
  #streams = 0;
  #draining = false;
  #closed = false;
  #unanswered = 0;
  readonly #onClosed: (session: HubSession, reason: string) => void;

  constructor(socket: Duplex, facts: SessionFacts, onClosed: (session: HubSession, reason: string) => void) {
    this.facts = facts;
    this.#onClosed = onClosed;
    this.#h2 = http2Connect(`http://${facts.name}.connector.invalid`, {
      createConnection: () => socket,
      settings: { initialWindowSize: WINDOW_BYTES, enablePush: false },
      maxSessionMemory: 64,
    });
    let reason = 'closed';
    this.#h2.once('connect', () => this.#h2.setLocalWindowSize(WINDOW_BYTES));
    this.#h2.on('error', (err) => (reason = messageOf(err)));
    this.#h2.on('goaway', () => {
      this.#draining = true;
      reason = 'the connector went away';
    });
    this.#h2.once('close', () => {
      this.#closed = true;
      this.#onClosed(this, reason);
    });
    socket.once('close', () => this.#h2.destroy());
  }

  /** Takes new streams: open and not draining. */
  get available(): boolean {
    return !this.#closed && !this.#draining && !this.#h2.destroyed && !this.#h2.closed;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Streams open now. */
  get streams(): number {
    return this.#streams;
  }

  /** A `CONNECT` stream to the connector's backend, once the connector has reached it. */
  open(signal?: AbortSignal): Promise<ClientHttp2Stream> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason as Error);
      let stream: ClientHttp2Stream;
      try {
        stream = this.#h2.request({ ':method': 'CONNECT', ':authority': this.facts.target });
      } catch (err) {
        return reject(new StreamLost(`connector ${this.facts.name} cannot take a stream now: ${messageOf(err)}`, { cause: err }));
      }
      this.#streams++;
      let settled = false;
      const settle = (): boolean => {
        if (settled) return false;
        settled = true;
        signal?.removeEventListener('abort', onAbort);
        return true;
      };
      const onAbort = (): void => {
        if (!settle()) return;
        stream.close(constants.NGHTTP2_CANCEL);
        reject(signal!.reason as Error);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      // whoever takes the stream adds its own listeners; an error nobody listens to must not end the process
      stream.on('error', (err) => {
        if (settle()) reject(new StreamLost(`the stream to connector ${this.facts.name} failed: ${messageOf(err)}`, { cause: err }));
      });
      stream.once('close', () => {
        this.#streams--;
        if (settle()) reject(new StreamLost(`connector ${this.facts.name} closed the stream before its backend answered`));
      });
      stream.once('response', (headers) => {
        if (!settle()) return;
        const status = Number(headers[':status']);
        if (status === 200) return resolve(stream);
        const why = headers[REASON_HEADER];
        stream.close(constants.NGHTTP2_CANCEL);
        reject(
          new GatehouseError(
            'ERR_UPSTREAM_UNREACHABLE',
            `connector ${this.facts.name} could not reach its backend ${this.facts.target}${typeof why === 'string' && why ? `: ${why}` : ` (status ${status})`}`,
          ),
        );
      });
    });
  }

  /** One heartbeat: a PING, and the end of the session when `MISSED_PINGS` in a row went unanswered. */
  beat(): void {
    if (this.#closed) return;
    if (this.#unanswered >= MISSED_PINGS) {
      this.destroy(`no answer to ${MISSED_PINGS} pings`);
      return;
    }
    this.#unanswered++;
    try {
      this.#h2.ping((err) => {
        if (!err) this.#unanswered = 0;
      });
    } catch {
      // too many pings outstanding: counted as unanswered
    }
  }

  /** Stops taking streams; the session ends when the open ones are done. */
  close(): void {
    this.#draining = true;
    if (!this.#h2.closed) this.#h2.close();
  }

  /** Ends the session now: open streams fail. */
  destroy(reason: string): void {
    this.#draining = true;
    if (this.#h2.destroyed) return;
    this.#h2.destroy(new GatehouseError('ERR_UPSTREAM_UNREACHABLE', reason));
  }
}
