/**
 * The two plain-HTTP listeners: `server.http` answers everything with 308 to https; `server.forwardProxy`
 * takes `CONNECT route-host:443` into the TLS front door and redirects `http://route-or-alias/…` to the route's
 * https URL. Nothing else passes either of them.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { isoNow, nextRequestId, type ErrorCode, type Logger } from '../core/index.ts';
import type { ProxyState } from './proxy-state.ts';
import { clientAddress, parseConnectTarget, parseHost, type FrontDoor } from './front-door.ts';
import { rawErrorResponse, sendError } from './error-page.ts';

function httpsOrigin(host: string, port: number): string {
  return `https://${host}${port === 443 ? '' : `:${port}`}`;
}

export function redirectToHttps(state: () => ProxyState) {
  return function httpsRedirect(req: IncomingMessage, res: ServerResponse): void {
    const s = state();
    const host = parseHost(req.headers.host);
    const url = req.url ?? '';
    if (!host || url.charCodeAt(0) !== 0x2f) {
      sendError(res, { code: 'ERR_BAD_REQUEST', message: 'a Host header and a path are needed', requestId: nextRequestId() }, req.headers.accept);
      return;
    }
    res.writeHead(308, ['location', httpsOrigin(host.host, s.publicPort) + url, 'content-length', '0', 'connection', 'close']);
    res.end();
  };
}

export interface ForwardProxyHandlers {
  request(req: IncomingMessage, res: ServerResponse): void;
  connect(req: IncomingMessage, socket: Duplex, head: Buffer): void;
}

export function forwardProxy(state: () => ProxyState, frontDoor: FrontDoor, log: Logger): ForwardProxyHandlers {
  function logLine(fields: Record<string, unknown>): void {
    if (state().accessLog) log.line(JSON.stringify({ time: isoNow(), event: 'forward_proxy', ...fields }));
  }
  return {
    request(req, res) {
      const s = state();
      const id = nextRequestId();
      const refuse = (code: ErrorCode, message: string): void => {
        sendError(res, { code, message, requestId: id }, req.headers.accept);
        logLine({ id, method: req.method, target: req.url, code, status: res.statusCode });
      };
      let u: URL;
      try {
        u = new URL(req.url ?? '');
      } catch {
        return refuse('ERR_PROXY_DESTINATION_FORBIDDEN', 'this is a proxy: send absolute-form http:// requests for published routes only');
      }
      const host = parseHost(u.host);
      const found = host && u.protocol === 'http:' ? s.routes.matchDestination(host.host) : undefined;
      if (!host || !found || found.match.route.config.tcp) {
        return refuse('ERR_PROXY_DESTINATION_FORBIDDEN', `${u.host || req.url} is not a published route; Gatehouse is not an open proxy`);
      }
      const route = found.match.route;
      const publicHost = found.byAlias ? route.config.host : host.host;
      if (publicHost.includes('*')) {
        return refuse('ERR_PROXY_DESTINATION_FORBIDDEN', `${host.host} is an alias of a pattern route, which has no single https address`);
      }
      const location = httpsOrigin(publicHost, s.publicPort) + u.pathname + u.search;
      res.writeHead(308, ['location', location, 'content-length', '0', 'x-request-id', id]);
      res.end();
      logLine({ id, method: req.method, target: req.url, route: route.name, status: 308 });
    },

    connect(req, socket, head) {
      const s = state();
      const id = nextRequestId();
      socket.on('error', () => socket.destroy());
      const dest = parseConnectTarget(req.url);
      const found = dest ? s.routes.match(dest.host) : undefined;
      if (!dest || !found || found.route.config.tcp || (dest.port !== 443 && dest.port !== s.publicPort)) {
        const message = `${req.url ?? ''} is not a published route host on port 443; Gatehouse is not an open proxy`;
        socket.end(rawErrorResponse({ code: 'ERR_PROXY_DESTINATION_FORBIDDEN', message, requestId: id }));
        logLine({ id, method: 'CONNECT', target: req.url, code: 'ERR_PROXY_DESTINATION_FORBIDDEN', status: 403 });
        return;
      }
      logLine({ id, method: 'CONNECT', target: req.url, route: found.route.name, status: 200 });
      frontDoor.tunnelIntoFrontDoor(socket, head, clientAddress(req.socket));
    },
  };
}
