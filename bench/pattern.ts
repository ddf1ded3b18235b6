/**
 * The bytes of the tunnel case (`bench/tunnel-case.ts`) and how both ends check them: a fixed 1 MiB block of
 * AES-CTR keystream (incompressible, the same in every process) sent over and over. The receiver compares every
 * byte with the block at its offset (memcmp speed, so checking costs far less than hashing) and counts them; a
 * transfer is `U <bytes>\n` (client → sink, answered `OK <bytes> <first bad offset or -1>\n`) or `D <bytes>\n`
 * (sink → client, then the sink's FIN).
 */
import { createCipheriv } from 'node:crypto';
import { connect, type Socket } from 'node:net';

export const BLOCK_SIZE = 1 << 20;

/** The block: the same bytes in every process. */
export const block: Buffer = createCipheriv('aes-128-ctr', Buffer.alloc(16, 7), Buffer.alloc(16, 9)).update(Buffer.alloc(BLOCK_SIZE));

/** Counts received bytes and checks each against the pattern. */
export class PatternCheck {
  bytes = 0;
  /** offset of the first byte that differs from the pattern, -1 while all match */
  firstBad = -1;

  update(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length) {
      const off = this.bytes % BLOCK_SIZE;
      const n = Math.min(BLOCK_SIZE - off, chunk.length - at);
      if (this.firstBad < 0 && !chunk.subarray(at, at + n).equals(block.subarray(off, off + n))) this.firstBad = this.bytes;
      this.bytes += n;
      at += n;
    }
  }
}

/** Writes `total` bytes of the pattern to `socket`, waiting for `drain` when its buffer is full. */
export function writePattern(socket: Socket, total: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let sent = 0;
    const onError = (err: Error) => reject(err);
    socket.once('error', onError);
    const more = () => {
      while (sent < total) {
        const n = Math.min(BLOCK_SIZE, total - sent);
        sent += n;
        if (!socket.write(n === BLOCK_SIZE ? block : block.subarray(0, n))) return void socket.once('drain', more);
      }
      socket.off('error', onError);
      resolve();
    };
    more();
  });
}

export interface Transfer {
  readonly direction: 'up' | 'down';
  readonly bytes: number;
  readonly seconds: number;
  readonly mibPerS: number;
  /** every byte arrived and matched the pattern */
  readonly ok: boolean;
  readonly problem?: string | undefined;
}

/**
 * One transfer of `total` bytes over a new TCP connection to 127.0.0.1:`port` (the sink itself, or a local
 * `gatehouse tunnel --listen` port in front of it). Timed from the connect call to the sink's `OK` (up) or
 * to the last byte and the sink's FIN (down).
 */
export function transfer(port: number, direction: 'up' | 'down', total: number, timeoutMs = 300_000): Promise<Transfer> {
  return new Promise((resolve) => {
    const started = performance.now();
    const socket = connect({ host: '127.0.0.1', port, noDelay: true });
    let done = false;
    const finish = (ok: boolean, bytes: number, problem?: string) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      const seconds = (performance.now() - started) / 1000;
      socket.destroy();
      resolve({ direction, bytes, seconds, mibPerS: bytes / (1 << 20) / seconds, ok, problem });
    };
    const timer = setTimeout(() => finish(false, 0, `not done within ${timeoutMs} ms`), timeoutMs);
    socket.on('error', (err) => finish(false, 0, err.message));
    socket.once('connect', () => {
      socket.write(`${direction === 'up' ? 'U' : 'D'} ${total}\n`);
      if (direction === 'up') {
        let answer = '';
        socket.on('data', (c: Buffer) => {
          answer += c.toString('latin1');
          const m = /^OK (\d+) (-?\d+)\n/.exec(answer);
          if (!m) return;
          const bytes = Number(m[1]);
          const bad = Number(m[2]);
          finish(bytes === total && bad < 0, bytes, bad >= 0 ? `byte ${bad} differs` : bytes !== total ? `the sink counted ${bytes}` : undefined);
        });
        socket.once('end', () => finish(false, 0, `the sink ended without OK: ${JSON.stringify(answer.slice(0, 200))}`));
        writePattern(socket, total).catch((err: Error) => finish(false, 0, err.message));
      } else {
        const check = new PatternCheck();
        socket.on('data', (c: Buffer) => check.update(c));
        socket.once('end', () =>
          finish(
            check.bytes === total && check.firstBad < 0,
            check.bytes,
            check.firstBad >= 0 ? `byte ${check.firstBad} differs` : check.bytes !== total ? `received ${check.bytes}` : undefined,
          ),
        );
      }
    });
  });
}
