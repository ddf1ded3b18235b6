/**
 * The upstream of the tunnel case, run as its own process: `node --import tsx bench/tcp-sink.ts PORT`. A plain
 * TCP server on 127.0.0.1 that sinks (`U <bytes>\n`: checks and counts what arrives, then answers
 * `OK <bytes> <first bad offset or -1>\n`) or sources (`D <bytes>\n`: sends that many pattern bytes, then its FIN)
 * the bytes of `bench/pattern.ts`, one transfer per connection.
 */
import { createServer } from 'node:net';
import { PatternCheck, writePattern } from './pattern.ts';

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0) throw new Error('usage: tcp-sink.ts PORT');

const server = createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
  socket.on('error', () => undefined);
  let head = Buffer.alloc(0);
  const onHead = (c: Buffer) => {
    head = Buffer.concat([head, c]);
    const nl = head.indexOf(0x0a);
    if (nl < 0) {
      if (head.length > 64) socket.destroy();
      return;
    }
    socket.off('data', onHead);
    const m = /^([UD]) (\d+)$/.exec(head.subarray(0, nl).toString('latin1'));
    if (!m) return void socket.destroy();
    const total = Number(m[2]);
    const rest = head.subarray(nl + 1);
    if (m[1] === 'D') {
      void writePattern(socket, total).then(
        () => socket.end(),
        () => socket.destroy(),
      );
      socket.resume();
      return;
    }
    const check = new PatternCheck();
    let answered = false;
    const take = (chunk: Buffer) => {
      check.update(chunk);
      if (!answered && check.bytes >= total) {
        answered = true;
        socket.end(`OK ${check.bytes} ${check.firstBad}\n`);
      }
    };
    if (rest.length > 0) take(rest);
    socket.on('data', take);
    socket.once('end', () => {
      if (!answered) socket.end(`OK ${check.bytes} ${check.firstBad}\n`);
    });
  };
  socket.on('data', onHead);
});
server.listen(port, '127.0.0.1');
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => process.exit(0));
