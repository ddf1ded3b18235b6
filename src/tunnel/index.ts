export { TunnelRegistry, type TunnelRegistryOptions, type TunnelOpening, type RegisteredTunnel } from './tunnel-registry.ts';
export { Pump, type PumpEnd, type PumpOptions } from './pump.ts';
export { TUNNEL_KIND, TUNNEL_MIRROR_KINDS, type TunnelInfo, type TunnelRecord, type TunnelVia } from './records.ts';
