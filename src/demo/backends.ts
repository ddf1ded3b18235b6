/**
 * The demo's sample backends: small plain-HTTP apps on 127.0.0.1 port 0 that know nothing about Gatehouse.
 * - echo: shows the request it received, who Gatehouse says is calling first (X-Gatehouse-User, -Roles, -Device,
 *   and the claims of -Jwt-Assertion), then every header (HTML for browsers, JSON otherwise or with `?json`);
 * - redirect: `/` redirects to its own internal name (`http://127.0.0.1:PORT/welcome`), as apps behind a proxy do;
 * - ws: a WebSocket echo with a page that connects to it.
 */
import { createServer, type IncomingMessage, type RequestListener, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { WebSocketServer } from 'ws';

export interface SampleBackend {
  /** `http://127.0.0.1:PORT` */
  readonly origin: string;
  close(): Promise<void>;
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(title: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${escapeHtml(title)} · Gatehouse demo</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:56rem;margin:5vh auto;padding:0 1rem;color:#1f2328}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #d0d7de;padding:.25rem .5rem;text-align:left;vertical-align:top}
td{font-family:ui-monospace,monospace;font-size:.85rem;word-break:break-all}.id td{background:#ddf4ff}
code,pre{background:#f3f4f6;padding:.1rem .3rem;border-radius:4px}.meta{color:#57606a;font-size:.875rem}
.who{background:#ddf4ff;border:1px solid #54aeff;border-radius:6px;padding:.25rem 1rem;margin:1rem 0}.who h2{font-size:1.1rem}
.who dt{font-weight:600}.who dd{margin:0 0 .5rem;font-family:ui-monospace,monospace}.who pre{white-space:pre-wrap;font-size:.8rem}</style>
</head><body>
${body}
</body></html>
`;
}

function send(res: ServerResponse, status: number, type: string, body: string, req: IncomingMessage): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
  res.end(req.method === 'HEAD' ? undefined : body);
}

/** HTML only for clients that ask for it (browsers); JSON for `?json`, `Accept: application/json`, curl and scripts. */
function wantsHtml(req: IncomingMessage, url: URL): boolean {
  const accept = req.headers.accept ?? '';
  return !url.searchParams.has('json') && accept.includes('text/html');
}

async function startHttp(handler: (origin: string) => RequestListener, attach?: (server: Server) => () => void): Promise<SampleBackend> {
  let origin = '';
  const server = createServer((req, res) => handler(origin)(req, res));
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  const detach = attach?.(server);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    origin,
    close: () =>
      new Promise<void>((resolve) => {
        detach?.();
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

const identityHeaders = ['x-gatehouse-user', 'x-gatehouse-roles', 'x-gatehouse-device', 'x-gatehouse-jwt-assertion'];

/** A JWT's claims, pretty-printed, not verified: a real backend checks the signature against Gatehouse's JWKS. */
function jwtClaims(jwt: string): string {
  try {
    return JSON.stringify(JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString('utf8')), null, 2);
  } catch {
    return '(not a readable JWT)';
  }
}

/** The highlighted box at the top of the echo page: what the X-Gatehouse-* headers say about the caller. */
function whoYouAre(req: IncomingMessage): string {
  const header = (name: string) => [req.headers[name] ?? []].flat().join(', ');
  const [user, roles, device, jwt] = identityHeaders.map(header);
  if (!user && !device && !jwt) {
    return `<section id="who" class="who"><h2>Who you are</h2><p>Nobody: Gatehouse sent no <code>X-Gatehouse-*</code> headers:
on a public route it vouches for no one. Try the route that needs sign-in.</p></section>`;
  }
  const item = (name: string, value: string) => (value ? `<dt>${name}</dt><dd>${escapeHtml(value)}</dd>` : '');
  return `<section id="who" class="who"><h2>Who you are, as Gatehouse told this app</h2><dl>
${item('X-Gatehouse-User', user!)}${user ? item('X-Gatehouse-Roles', roles || '(none)') : ''}${item('X-Gatehouse-Device', device!)}
${jwt ? `<dt>X-Gatehouse-Jwt-Assertion (its claims; apps verify it with the keys at <code>/.well-known/jwks.json</code> on the auth host)</dt><dd><pre>${escapeHtml(jwtClaims(jwt))}</pre></dd>` : ''}
</dl>${user ? '<p><a href="/.gatehouse/logout">Sign out</a></p>' : ''}</section>`;
}

export function startEchoApp(): Promise<SampleBackend> {
  return startHttp(() => (req, res) => {
    req.resume();
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://echo');
      const headers = Object.entries(req.headers).sort(([a], [b]) => {
        const ia = identityHeaders.includes(a) ? 0 : 1;
        const ib = identityHeaders.includes(b) ? 0 : 1;
        return ia - ib || a.localeCompare(b);
      });
      if (!wantsHtml(req, url)) {
        const body = { app: 'echo', method: req.method, url: req.url, headers: Object.fromEntries(headers) };
        send(res, 200, 'application/json', JSON.stringify(body, null, 2) + '\n', req);
        return;
      }
      const rows = headers
        .map(([name, value]) => {
          const text = Array.isArray(value) ? value.join(', ') : (value ?? '');
          return `<tr${identityHeaders.includes(name) ? ' class="id"' : ''}><th>${escapeHtml(name)}</th><td>${escapeHtml(text)}</td></tr>`;
        })
        .join('\n');
      send(
        res,
        200,
        'text/html; charset=utf-8',
        page(
          'Echo',
          `<h1>Echo</h1>
${whoYouAre(req)}
<p>This app received <code>${escapeHtml(`${req.method} ${req.url}`)}</code> with these headers.
Gatehouse added the <code>X-Forwarded-*</code> ones and, highlighted, what it knows about you (<code>X-Gatehouse-*</code>).</p>
<table>${rows}</table>
<p class="meta">The same as JSON: <a href="?json">?json</a></p>`,
        ),
        req,
      );
    });
  });
}

export function startRedirectApp(): Promise<SampleBackend> {
  return startHttp((origin) => (req, res) => {
    req.resume();
    const path = new URL(req.url ?? '/', 'http://redirect').pathname;
    if (path === '/') {
      // an app that only knows its internal name: Gatehouse maps this back to the public host
      res.writeHead(302, { location: `${origin}/welcome`, 'content-length': 0 });
      res.end();
    } else if (path === '/welcome') {
      const body = page(
        'Welcome',
        `<h1>Welcome</h1>
<p>The app answered <code>/</code> with <code>302 Location: ${escapeHtml(origin)}/welcome</code>, its internal address.
Gatehouse rewrote that to the public name, so you landed here on <code>${escapeHtml(String(req.headers['x-forwarded-host'] ?? ''))}</code>.</p>
<p><a href="/">Again</a></p>`,
      );
      send(res, 200, 'text/html; charset=utf-8', body, req);
    } else {
      send(res, 404, 'text/plain; charset=utf-8', 'not found\n', req);
    }
  });
}

const webSocketPage = page(
  'WebSocket echo',
  `<h1>WebSocket echo</h1>
<form><input id="text" value="hello" autofocus> <button>Send</button></form>
<pre id="log"></pre>
<script>
const log = (line) => { document.getElementById('log').textContent += line + '\\n'; };
const ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/echo');
ws.onopen = () => log('connected to ' + ws.url);
ws.onmessage = (e) => log('received: ' + e.data);
ws.onclose = () => log('closed');
document.querySelector('form').onsubmit = (e) => {
  e.preventDefault();
  const text = document.getElementById('text').value;
  ws.send(text);
  log('sent: ' + text);
};
</script>`,
);

export function startWebSocketEcho(): Promise<SampleBackend> {
  return startHttp(
    () => (req, res) => {
      req.resume();
      send(res, 200, 'text/html; charset=utf-8', webSocketPage, req);
    },
    (server) => {
      const wss = new WebSocketServer({ server });
      wss.on('connection', (socket) => {
        socket.on('message', (data, isBinary) => socket.send(data, { binary: isBinary }));
        socket.on('error', () => undefined);
      });
      return () => {
        for (const client of wss.clients) client.terminate();
        wss.close();
      };
    },
  );
}

const starters = { echo: startEchoApp, redirect: startRedirectApp, ws: startWebSocketEcho } as const;

export type SampleBackendName = keyof typeof starters;
/** Every sample backend by name; demo routes refer to them by these names. */
export type SampleBackends = Readonly<Record<SampleBackendName, SampleBackend>>;

/** Starts every sample backend; if one fails, the others are closed again. */
export async function startSampleBackends(): Promise<{ readonly backends: SampleBackends; close(): Promise<void> }> {
  const names = Object.keys(starters) as SampleBackendName[];
  const started = await Promise.allSettled(names.map((name) => starters[name]()));
  const ok = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const close = async () => void (await Promise.all(ok.map((b) => b.close())));
  const failed = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) {
    await close();
    throw failed.reason;
  }
  return { backends: Object.fromEntries(names.map((name, i) => [name, ok[i]!])) as SampleBackends, close };
}
