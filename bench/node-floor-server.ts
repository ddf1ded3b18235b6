/**
 * The least a Node TLS front end can do, for comparison with Gatehouse (run by bench/node-floor.ts):
 * `ok` answers from the HTTPS server itself; `proxy` forwards with http.request and a keep-alive agent,
 * nothing else (no routing, no policy, no log); `undici` forwards with undici's Pool.request and
 * `undici-dispatch` with Pool.dispatch (undici is not a dependency: set UNDICI_PATH to an installed copy).
 * Two cluster workers, like Gatehouse.
 *
 *   node --import tsx bench/node-floor-server.ts MODE PORT BACKEND_PORT CERT KEY
 */
import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';
import { Agent, request, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer } from 'node:https';

const [mode, port, backendPort, certFile, keyFile] = process.argv.slice(2);
if (!mode || !port || !backendPort || !certFile || !keyFile) throw new Error('usage: node-floor-server.ts MODE PORT BACKEND_PORT CERT KEY');

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

async function handler(): Promise<Handler> {
  if (mode === 'ok') {
    return (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '2' });
      res.end('ok');
    };
  }
  if (mode === 'proxy') {
    const agent = new Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 512, scheduling: 'lifo' });
    return (req, res) => {
      const up = request(
        { host: '127.0.0.1', port: Number(backendPort), method: req.method, path: req.url, agent, headers: { host: `127.0.0.1:${backendPort}`, 'x-forwarded-for': req.socket.remoteAddress ?? '' } },
        (upRes) => {
          res.writeHead(upRes.statusCode ?? 502, upRes.headers);
          upRes.pipe(res);
        },
      );
      up.on('error', () => res.destroy());
      up.end();
    };
  }
  if (mode === 'undici-dispatch') {
    // undici's lowest-level API: no promise, no stream per request; raw headers in, raw headers out
    const undici = (await import(process.env.UNDICI_PATH ?? 'undici')) as {
      Pool: new (origin: string, o: object) => { dispatch(o: object, handler: object): boolean };
    };
    const pool = new undici.Pool(`http://127.0.0.1:${backendPort}`, { connections: 128, pipelining: 1 });
    return (req, res) => {
      pool.dispatch(
        { method: req.method, path: req.url, headers: ['host', `127.0.0.1:${backendPort}`, 'x-forwarded-for', req.socket.remoteAddress ?? ''] },
        {
          onConnect() {},
          onHeaders(status: number, raw: Buffer[]) {
            const headers: string[] = [];
            for (let i = 0; i < raw.length; i += 2) {
              const name = raw[i]!.toString('latin1');
              if (name.length === 10 && name.toLowerCase() === 'connection') continue;
              headers.push(name, raw[i + 1]!.toString('latin1'));
            }
            res.writeHead(status, headers);
            return true;
          },
          onData(chunk: Buffer) {
            return res.write(chunk);
          },
          onComplete() {
            res.end();
          },
          onError() {
            res.destroy();
          },
        },
      );
    };
  }
  if (mode === 'undici') {
    // optional: not a dependency of Gatehouse; resolvable only where someone installed it (UNDICI_PATH)
    const undici = (await import(process.env.UNDICI_PATH ?? 'undici')) as {
      Pool: new (origin: string, o: object) => {
        request(o: object): Promise<{ statusCode: number; headers: Record<string, string | string[]>; body: NodeJS.ReadableStream }>;
      };
    };
    const pool = new undici.Pool(`http://127.0.0.1:${backendPort}`, { connections: 128, pipelining: 1 });
    return (req, res) => {
      pool
        .request({ method: req.method, path: req.url, headers: { host: `127.0.0.1:${backendPort}`, 'x-forwarded-for': req.socket.remoteAddress ?? '' } })
        .then(
          (r) => {
            res.writeHead(r.statusCode, r.headers as Record<string, string>);
            r.body.pipe(res);
          },
          () => res.destroy(),
        );
    };
  }
  throw new Error(`unknown mode ${mode}`);
}

if (cluster.isPrimary) {
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  for (let i = 0; i < 2; i++) cluster.fork();
  process.on('SIGTERM', () => {
    const workers = Object.values(cluster.workers ?? {});
    let left = workers.length;
    for (const w of workers) {
      w?.once('exit', () => --left === 0 && process.exit(0));
      w?.process.kill('SIGTERM');
    }
  });
} else {
  // exit (not die) on SIGTERM, so that --cpu-prof writes the profile
  process.on('SIGTERM', () => process.exit(0));
  const h = await handler();
  createServer({ cert: readFileSync(certFile), key: readFileSync(keyFile), keepAliveTimeout: 65_000, requestTimeout: 0 }, h).listen(Number(port), '127.0.0.1');
}
