import { GatehouseError } from './errors.ts';

export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

/** Parses `0.0.0.0:443`, `127.0.0.1:0`, `[::1]:8443` or `:443` (all interfaces). */
export function parseListen(text: string): ListenAddress {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(text.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) {
    throw new GatehouseError('ERR_USAGE', `"${text}" is not a listen address (use HOST:PORT, e.g. 0.0.0.0:443)`);
  }
  const host = m[1] ?? m[2] ?? '';
  return { host: host === '' ? '0.0.0.0' : host, port };
}

export function formatListen(a: ListenAddress): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}
