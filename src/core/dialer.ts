/**
 * How a service reaches a backend it cannot dial itself: through a connector that dialled out to Gatehouse.
 * The proxy (HTTP routes with `to: connector:NAME`) and the tunnels (`tcp: connector:NAME`) take a `Dialer`;
 * the app wires in the connector hub, so services never import each other.
 */
import type { Duplex } from 'node:stream';

export interface Dialer {
  /**
   * A byte stream to the backend of connector `name` (the target that connector was started with). Rejects with
   * a `GatehouseError` `ERR_UPSTREAM_UNREACHABLE` when no connector of that name is connected, or when the
   * connector cannot reach its backend.
   */
  dial(name: string, options?: { readonly signal?: AbortSignal }): Promise<Duplex>;
}
