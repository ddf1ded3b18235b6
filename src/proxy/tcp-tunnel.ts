/**
 * `CONNECT` to a `tcp` route, once the front door's decision allowed it: dial the route's TCP target (a fixed
 * `HOST:PORT`, one filled in from the host pattern, or a connector through the `Dialer`), register the tunnel
 * with the tunnel service (its store record), answer `200 Connection Established` and hand both sockets over.
 * Failures before the answer become the usual refusals: 403 for a templated target that resolves to a loopback
 * or link-local address (unless the route sets `allowLoopback`; a fixed target is the operator's choice), 502
 * when the target cannot be reached, 504 when it does not answer within the route's connect timeout.
 */
import { connect as netConnect, isIP, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { GatehouseError, messageOf, publicMessage, type Dialer, type ErrorCode } from '../core/index.ts';
import type { TcpTarget } from './route-table.ts';
import { guardedLookup, isForbiddenAddress } from './upstream-pool.ts';

/** A tunnel about to open, as the front door describes it to the tunnel service. */
export interface TcpTunnelOpening {
  readonly route: string;
  readonly host: string;
  readonly user: string | undefined;
  readonly client: string;
  readonly via: 'token' | 'session' | 'certificate' | 'public';
  /** `token:ID` or `session:ID`: revoking it closes the tunnel */
  readonly credential?: string | undefined;
  /** the serial of the client certificate presented */
  readonly device?: string | undefined;
  /** the decision again on the current state: undefined while allowed, else why not */
  readonly recheck?: (() => string | undefined) | undefined;
}

/** What the front door needs of the tunnel service (the app wires in `src/tunnel`'s registry). */
export interface TunnelService {
  /** Records the tunnel (rejects with a GatehouseError when it cannot); `run` then moves its bytes. */
  open(opening: TcpTunnelOpening): Promise<{
    readonly id: string;
    run(client: Duplex, upstream: Duplex, head: Buffer, options: { readonly idleMs: number; readonly onEnd?: (why: string, bytesIn: number, bytesOut: number) => void }): void;
    abandon(): void;
  }>;
}

export interface TcpTunnelRequest {
  readonly socket: Duplex;
  readonly head: Buffer;
  readonly target: TcpTarget;
  /** refuse loopback and link-local addresses (a templated target without `allowLoopback`) */
  readonly guard: boolean;
  readonly connectTimeoutMs: number;
  readonly idleMs: number;
  readonly dialer: Dialer | undefined;
  readonly tunnels: TunnelService;
  readonly opening: TcpTunnelOpening;
  readonly requestId: string;
  readonly onRefuse: (code: ErrorCode, message: string) => void;
  readonly onOpen: (tunnelId: string) => void;
  readonly onDone: (why: string, bytesIn: number, bytesOut: number) => void;
}

/** Dials the target; rejects with a GatehouseError (ERR_UPSTREAM_FORBIDDEN, _UNREACHABLE, _TIMEOUT). */
export function dialTcp(target: TcpTarget, o: { guard: boolean; connectTimeoutMs: number; dialer: Dialer | undefined; signal: AbortSignal }): Promise<Duplex> {
  if ('connector' in target) {
    if (!o.dialer) return Promise.reject(new GatehouseError('ERR_UPSTREAM_UNREACHABLE', `connector ${target.connector} cannot be reached: this Gatehouse has no connector service`));
    return o.dialer.dial(target.connector, { signal: o.signal }).catch((err: unknown) => {
      throw err instanceof GatehouseError ? err : new GatehouseError('ERR_UPSTREAM_UNREACHABLE', `connector ${target.connector}: ${messageOf(err)}`, { cause: err });
    });
  }
  const where = `${target.host.includes(':') ? `[${target.host}]` : target.host}:${target.port}`;
  if (o.guard && isIP(target.host) && isForbiddenAddress(target.host)) {
    return Promise.reject(new GatehouseError('ERR_UPSTREAM_FORBIDDEN', `${target.host} is a loopback or link-local address this route may not reach`));
  }
  return new Promise((resolve, reject) => {
    const socket: Socket = netConnect({ host: target.host, port: target.port, allowHalfOpen: true, ...(o.guard ? { lookup: guardedLookup } : {}) });
    const fail = (err: GatehouseError) => {
      clearTimeout(timer);
      o.signal.removeEventListener('abort', onAbort);
      socket.destroy();
      reject(err);
    };
    const timer = setTimeout(
      () => fail(new GatehouseError('ERR_UPSTREAM_TIMEOUT', `${where} did not accept the connection within ${o.connectTimeoutMs} ms`)),
      o.connectTimeoutMs,
    );
    const onAbort = () => fail(new GatehouseError('ERR_CLIENT_CLOSED', 'the client left'));
    o.signal.addEventListener('abort', onAbort, { once: true });
    socket.once('connect', () => {
      clearTimeout(timer);
      o.signal.removeEventListener('abort', onAbort);
      socket.on('error', () => undefined); // until the pump takes over: a reset then shows as 'close'
      resolve(socket);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EGATEHOUSE_FORBIDDEN_ADDRESS') fail(new GatehouseError('ERR_UPSTREAM_FORBIDDEN', err.message, { cause: err }));
      else fail(new GatehouseError('ERR_UPSTREAM_UNREACHABLE', `${where}: ${err.code === 'ECONNREFUSED' ? 'connection refused' : messageOf(err)}`, { cause: err }));
    });
  });
}

/** Dials, registers and opens the tunnel; every outcome is reported through the callbacks exactly once. */
export function openTcpTunnel(t: TcpTunnelRequest): void {
  const abort = new AbortController();
  const left = () => abort.abort();
  t.socket.once('close', left);
  void (async () => {
    let upstream: Duplex;
    try {
      upstream = await dialTcp(t.target, { guard: t.guard, connectTimeoutMs: t.connectTimeoutMs, dialer: t.dialer, signal: abort.signal });
    } catch (err) {
      const e = err instanceof GatehouseError ? err : new GatehouseError('ERR_UPSTREAM_UNREACHABLE', messageOf(err), { cause: err });
      return t.onRefuse(e.code, e.message);
    }
    if (abort.signal.aborted) {
      upstream.destroy();
      return t.onRefuse('ERR_CLIENT_CLOSED', 'the client left');
    }
    let tunnel: Awaited<ReturnType<TunnelService['open']>>;
    try {
      tunnel = await t.tunnels.open(t.opening);
    } catch (err) {
      upstream.destroy();
      const e = err instanceof GatehouseError ? err : new GatehouseError('ERR_STORE_UNAVAILABLE', messageOf(err), { cause: err });
      return t.onRefuse(e.code, publicMessage(e));
    }
    t.socket.off('close', left);
    if (abort.signal.aborted || t.socket.destroyed) {
      upstream.destroy();
      tunnel.abandon();
      return t.onRefuse('ERR_CLIENT_CLOSED', 'the client left');
    }
    t.socket.write(`HTTP/1.1 200 Connection Established\r\nx-request-id: ${t.requestId}\r\nx-gatehouse-tunnel: ${tunnel.id}\r\n\r\n`);
    t.onOpen(tunnel.id);
    tunnel.run(t.socket, upstream, t.head, { idleMs: t.idleMs, onEnd: t.onDone });
  })();
}
