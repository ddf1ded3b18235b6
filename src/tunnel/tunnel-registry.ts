/**
 * The open tunnels of every process: each process owns the sockets of the tunnels it accepted and keeps one
 * store record per tunnel (kind `tunnel`, refreshed while open, deleted on close), so any worker or instance can
 * list them and close one by deleting its record. The owner follows the store through a `StoreMirror` and closes
 * a tunnel when its record is deleted elsewhere, when the token or session it was opened with is revoked, when
 * its user is disabled, or when a re-check of the decision (after a change to people or roles, and on every
 * refresh) no longer allows it.
 */
import { hostname } from 'node:os';
import type { Duplex } from 'node:stream';
import { GatehouseError, messageOf, type Logger, type Registry } from '../core/index.ts';
import { newId, type Store, type StoreChange, type StoreMirror } from '../store/index.ts';
import { MEMBERSHIP_KIND, ROLE_ADMIN_KIND, SERVICE_ACCOUNT_KIND, USER_KIND, type UserRecord } from '../directory/index.ts';
import { Pump, type PumpEnd } from './pump.ts';
import { TUNNEL_KIND, type TunnelInfo, type TunnelRecord, type TunnelVia } from './records.ts';

export interface TunnelRegistryOptions {
  readonly store: Store;
  /** must hold kind `tunnel` (TUNNEL_MIRROR_KINDS) and `token`, `session` and the directory's kinds */
  readonly mirror: StoreMirror;
  readonly metrics: Registry;
  readonly log: Logger;
  /** how long a record lives unless refreshed; refreshed every third of it. Default 60s. */
  readonly recordTtlMs?: number;
}

/** A tunnel about to open: who, where, and how to re-decide it later. */
export interface TunnelOpening {
  readonly route: string;
  readonly host: string;
  readonly user: string | undefined;
  readonly client: string;
  readonly via: TunnelVia;
  /** `token:ID` or `session:ID` */
  readonly credential?: string | undefined;
  readonly device?: string | undefined;
  /** the decision again, on the current configuration and people: undefined while allowed, else why not */
  readonly recheck?: (() => string | undefined) | undefined;
}

/** A registered tunnel: `run` moves its bytes; `abandon` when it never got that far. */
export interface RegisteredTunnel {
  readonly id: string;
  run(client: Duplex, upstream: Duplex, head: Buffer, options: { readonly idleMs: number; readonly onEnd?: (why: string, bytesIn: number, bytesOut: number) => void }): void;
  abandon(): void;
}

interface Local {
  readonly id: string;
  readonly opening: TunnelOpening;
  readonly since: number;
  /** the revision of our last write of its record (refreshes are conditional on it) */
  revision: number;
  pump: Pump | undefined;
  /** why Gatehouse closed it (for the log), when it did */
  reason: string | undefined;
  closed: boolean;
}

const DEFAULT_RECORD_TTL_MS = 60_000;

export class TunnelRegistry {
  readonly #o: TunnelRegistryOptions;
  readonly #ttl: number;
  readonly #owner = `${hostname()}/${process.pid}/${newId().slice(-6)}`;
  readonly #local = new Map<string, Local>();
  readonly #open;
  readonly #bytes;
  readonly #openByRoute = new Map<string, number>();
  #refreshTimer: NodeJS.Timeout | undefined;
  #recheckSoon: NodeJS.Timeout | undefined;
  #refreshing = false;
  #closed = false;

  constructor(options: TunnelRegistryOptions) {
    this.#o = options;
    this.#ttl = options.recordTtlMs ?? DEFAULT_RECORD_TTL_MS;
    this.#open = options.metrics.gauge('gatehouse_tunnels_open', 'Open TCP tunnels, by route');
    this.#bytes = options.metrics.counter('gatehouse_tunnel_bytes_total', 'Bytes through TCP tunnels, by route and direction (in: from the client)');
  }

  /** Follows the store and starts refreshing the records of open tunnels. */
  start(): void {
    if (this.#refreshTimer) return;
    this.#o.mirror.onChange((change) => this.#changed(change));
    this.#refreshTimer = setInterval(() => void this.#refresh(), Math.max(1000, Math.floor(this.#ttl / 3)));
    this.#refreshTimer.unref();
  }

  /** Writes the record of a new tunnel; rejects with ERR_STORE_UNAVAILABLE (or ERR_NOT_READY when closing). */
  async open(opening: TunnelOpening): Promise<RegisteredTunnel> {
    if (this.#closed) throw new GatehouseError('ERR_NOT_READY', 'Gatehouse is shutting down');
    const id = newId();
    const local: Local = { id, opening, since: Date.now(), revision: 0, pump: undefined, reason: undefined, closed: false };
    this.#local.set(id, local);
    try {
      await this.#write(local, 0);
    } catch (err) {
      this.#local.delete(id);
      throw err instanceof GatehouseError ? err : new GatehouseError('ERR_STORE_UNAVAILABLE', `cannot record the tunnel: ${messageOf(err)}`, { cause: err });
    }
    this.#gauge(opening.route, +1);
    return {
      id,
      run: (client, upstream, head, options) => {
        if (local.closed) {
          client.destroy();
          upstream.destroy();
          options.onEnd?.(local.reason ?? 'closed', 0, 0);
          return;
        }
        const route = opening.route;
        const count = { in: this.#bytes.adder({ route, direction: 'in' }), out: this.#bytes.adder({ route, direction: 'out' }) };
        local.pump = new Pump(client, upstream, {
          idleMs: options.idleMs,
          onBytes: (direction, n) => count[direction](n),
          onEnd: (why) => {
            const p = local.pump!;
            this.#finish(local, why);
            options.onEnd?.(local.reason ?? why, p.bytesIn, p.bytesOut);
          },
        });
        local.pump.start(head);
      },
      abandon: () => this.#finish(local, 'closed-by-gatehouse'),
    };
  }

  /** Every open tunnel of every process (live counts for this process's own). */
  list(): TunnelInfo[] {
    const out: TunnelInfo[] = [];
    for (const { id, value } of this.#o.mirror.values<TunnelRecord>(TUNNEL_KIND)) {
      const local = this.#local.get(id);
      out.push({ ...value, id, ...(local?.pump ? { bytesIn: local.pump.bytesIn, bytesOut: local.pump.bytesOut } : {}) });
    }
    return out.sort((a, b) => b.since - a.since);
  }

  /** One open tunnel, or undefined. */
  get(id: string): TunnelInfo | undefined {
    return this.list().find((t) => t.id === id);
  }

  /** This process's own open tunnels: their ids and how much Gatehouse holds in buffers for each (for tests). */
  local(): Array<{ readonly id: string; readonly buffered: number; readonly bytesIn: number; readonly bytesOut: number }> {
    return [...this.#local.values()].map((l) => ({ id: l.id, buffered: l.pump?.buffered ?? 0, bytesIn: l.pump?.bytesIn ?? 0, bytesOut: l.pump?.bytesOut ?? 0 }));
  }

  /**
   * Closes a tunnel wherever it runs: its record is deleted, and its owner (this process or another) closes it
   * on seeing that. Resolves false when there is no such open tunnel.
   */
  async closeTunnel(id: string): Promise<boolean> {
    const deleted = await this.#o.store.delete(TUNNEL_KIND, id);
    this.#o.mirror.apply({ kind: TUNNEL_KIND, id, revision: Number.MAX_SAFE_INTEGER });
    const local = this.#local.get(id);
    if (local) this.#stop(local, 'closed on request');
    return deleted || local !== undefined;
  }

  /** Shutdown (tunnels do not drain): ends every tunnel of this process now and deletes their records; later `open` calls fail. */
  async destroy(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#refreshTimer);
    clearTimeout(this.#recheckSoon);
    const all = [...this.#local.values()];
    for (const l of all) this.#stop(l, 'Gatehouse is shutting down', false);
    await Promise.all(all.map((l) => this.#o.store.delete(TUNNEL_KIND, l.id).catch(() => false)));
  }

  // ---------------------------------------------------------------- inside

  async #write(local: Local, ifRevision: number): Promise<void> {
    const o = local.opening;
    const value: TunnelRecord = {
      ...(o.user !== undefined ? { user: o.user.toLowerCase() } : {}),
      route: o.route,
      host: o.host,
      client: o.client,
      since: local.since,
      via: o.via,
      ...(o.credential !== undefined ? { credential: o.credential } : {}),
      ...(o.device !== undefined ? { device: o.device } : {}),
      owner: this.#owner,
      bytesIn: local.pump?.bytesIn ?? 0,
      bytesOut: local.pump?.bytesOut ?? 0,
    };
    const expiresAt = Date.now() + this.#ttl;
    const rec = await this.#o.store.put(TUNNEL_KIND, local.id, value, { expiresAt, ifRevision });
    local.revision = rec.revision;
    this.#o.mirror.apply({ kind: TUNNEL_KIND, id: local.id, revision: rec.revision, value, expiresAt });
  }

  /** Pushes every open tunnel's expiry forward (with its byte counts), and re-decides each. */
  async #refresh(): Promise<void> {
    if (this.#refreshing || this.#closed) return;
    this.#refreshing = true;
    try {
      this.recheck();
      for (const local of [...this.#local.values()]) {
        if (local.closed) continue;
        try {
          await this.#write(local, local.revision);
        } catch (err) {
          if (err instanceof GatehouseError && err.code === 'ERR_STORE_CONFLICT') this.#stop(local, 'its record was deleted');
          else this.#o.log.warn('tunnel_refresh_failed', { id: local.id, error: messageOf(err) });
        }
      }
    } finally {
      this.#refreshing = false;
    }
  }

  #changed(c: StoreChange): void {
    if (this.#local.size === 0) return;
    if (c.kind === TUNNEL_KIND) {
      const local = this.#local.get(c.id);
      if (local && c.value === undefined) this.#stop(local, 'closed on request');
      return;
    }
    if ((c.kind === 'token' || c.kind === 'session') && c.value === undefined) {
      const credential = `${c.kind}:${c.id}`;
      for (const l of this.#local.values()) if (l.opening.credential === credential) this.#stop(l, `its ${c.kind} was revoked or expired`);
      return;
    }
    if (c.kind === USER_KIND && (c.value as UserRecord | undefined)?.disabled) {
      for (const l of this.#local.values()) if (l.opening.user?.toLowerCase() === c.id) this.#stop(l, 'its user was disabled');
    }
    if (c.kind === USER_KIND || c.kind === MEMBERSHIP_KIND || c.kind === ROLE_ADMIN_KIND || c.kind === SERVICE_ACCOUNT_KIND) {
      // people changed: re-decide soon (one pass for a burst of changes)
      this.#recheckSoon ??= setTimeout(() => {
        this.#recheckSoon = undefined;
        this.recheck();
      }, 50);
    }
  }

  /** Re-decides every open tunnel of this process (after a reload, and on each refresh); closes those no longer allowed. */
  recheck(): void {
    for (const l of [...this.#local.values()]) {
      if (l.closed || !l.opening.recheck) continue;
      let why: string | undefined;
      try {
        why = l.opening.recheck();
      } catch (err) {
        why = `the decision could not be checked again: ${messageOf(err)}`;
      }
      if (why !== undefined) this.#stop(l, `no longer allowed: ${why}`);
    }
  }

  /** Gatehouse ends a tunnel: sockets destroyed, record deleted (unless `deleteRecord` is false). */
  #stop(local: Local, reason: string, deleteRecord = true): void {
    if (local.closed) return;
    local.reason = reason;
    if (local.pump) local.pump.stop('closed-by-gatehouse');
    else this.#finish(local, 'closed-by-gatehouse', deleteRecord);
  }

  #finish(local: Local, why: PumpEnd, deleteRecord = !this.#closed): void {
    if (local.closed) return;
    local.closed = true;
    this.#local.delete(local.id);
    this.#gauge(local.opening.route, -1);
    this.#o.log.info('tunnel_closed', {
      id: local.id,
      route: local.opening.route,
      user: local.opening.user,
      why: local.reason ?? why,
      bytesIn: local.pump?.bytesIn ?? 0,
      bytesOut: local.pump?.bytesOut ?? 0,
      seconds: Math.round((Date.now() - local.since) / 100) / 10,
    });
    if (!deleteRecord) return;
    this.#o.mirror.apply({ kind: TUNNEL_KIND, id: local.id, revision: Number.MAX_SAFE_INTEGER });
    this.#o.store.delete(TUNNEL_KIND, local.id).catch((err: unknown) => {
      this.#o.log.warn('tunnel_record_not_deleted', { id: local.id, error: messageOf(err) });
    });
  }

  #gauge(route: string, by: number): void {
    const n = (this.#openByRoute.get(route) ?? 0) + by;
    this.#openByRoute.set(route, n);
    this.#open.set({ route }, n);
  }
}
