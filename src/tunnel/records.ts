/**
 * What the tunnel registry keeps in the store: one record per open tunnel (kind `tunnel`, id = the tunnel id),
 * written by the process that owns the tunnel with an expiry it keeps pushing forward while the tunnel is open,
 * and deleted when it closes. Deleting it from anywhere asks the owner to close the tunnel.
 */

export const TUNNEL_KIND = 'tunnel';

/** The kinds the registry follows: its own records, and the credentials and people whose changes close tunnels. */
export const TUNNEL_MIRROR_KINDS: readonly string[] = Object.freeze([TUNNEL_KIND]);

/** How the tunnel's user was known when it opened. */
export type TunnelVia = 'token' | 'session' | 'certificate' | 'public';

/** Kind `tunnel`. Byte counts are as of the owner's last refresh. */
export interface TunnelRecord {
  /** lower-case email; absent on a public route opened without any identity */
  readonly user?: string;
  readonly route: string;
  /** the destination the client asked for (a route host, alias or route name) */
  readonly host: string;
  /** the client's address */
  readonly client: string;
  /** ms since the epoch */
  readonly since: number;
  readonly via: TunnelVia;
  /** `token:ID` or `session:ID` (store ids, never secrets): their revocation closes the tunnel */
  readonly credential?: string;
  /** the serial of the client certificate presented */
  readonly device?: string;
  /** the process that holds the sockets */
  readonly owner: string;
  /** from the client to the upstream */
  readonly bytesIn: number;
  /** from the upstream to the client */
  readonly bytesOut: number;
}

/** A tunnel as listed: its record with its id, live counts for the tunnels this process owns. */
export interface TunnelInfo extends TunnelRecord {
  readonly id: string;
}
