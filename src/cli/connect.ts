/**
 * `gatehouse connect --via URL --name NAME --to TARGET (--cert C --key K | --enroll TOKEN) [--state DIR]`: runs a
 * connector beside a backend until SIGTERM or SIGINT (then its links close gracefully). Logs are JSON lines on
 * stdout, one per state change; a bad command line or a failed enrollment is one line on stderr and exit 1.
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { GatehouseError, Logger, messageOf } from '../core/index.ts';
import { ConnectorAgent, ConnectorCredentials, parseTarget } from '../connector/index.ts';
import { configDir, viaOrigin } from './credentials.ts';
import { loadTrust } from './login.ts';

export interface ConnectOptions {
  readonly via: string;
  readonly name: string;
  readonly to: string;
  readonly cert?: string | undefined;
  readonly key?: string | undefined;
  readonly enroll?: string | undefined;
  readonly state?: string | undefined;
  readonly ca?: string | undefined;
  readonly toCa?: string | undefined;
  readonly toInsecure?: boolean | undefined;
}

function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(resolve(import.meta.dirname, '../../package.json'), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/** Runs the connector; resolves with the exit code once stopped. */
export async function runConnect(o: ConnectOptions): Promise<number> {
  const via = viaOrigin(o.via);
  if (!/^[a-z0-9-]{1,64}$/.test(o.name)) throw new GatehouseError('ERR_USAGE', `--name ${JSON.stringify(o.name)} must be a connector name (lower-case letters, digits and "-")`);
  const target = parseTarget(o.to);
  if ((o.cert === undefined) !== (o.key === undefined)) throw new GatehouseError('ERR_USAGE', '--cert and --key go together');
  if (o.cert !== undefined && o.enroll !== undefined) throw new GatehouseError('ERR_USAGE', 'give --cert and --key, or --enroll TOKEN, not both');
  if ((o.toCa !== undefined || o.toInsecure) && !target.tls) throw new GatehouseError('ERR_USAGE', '--to-ca and --to-insecure are for an https:// --to');
  const trust = await loadTrust(o.ca);
  const call = { via, trust };
  const log = new Logger({ base: { connector: o.name } });
  let credentials: ConnectorCredentials;
  if (o.cert !== undefined) {
    credentials = await ConnectorCredentials.fromFiles(o.cert, o.key!);
  } else {
    const state = o.state ?? join(configDir(), 'connectors', o.name);
    const found = await ConnectorCredentials.fromState(state, o.name, o.enroll, call);
    credentials = found.credentials;
    log.info(found.enrolled ? 'connector_enrolled' : 'connector_credentials_loaded', {
      state,
      serial: credentials.current.serial,
      notAfter: new Date(credentials.current.notAfter).toISOString(),
    });
  }
  let toCa: string | undefined;
  if (o.toCa !== undefined) {
    try {
      toCa = await readFile(o.toCa, 'utf8');
    } catch (err) {
      throw new GatehouseError('ERR_USAGE', `cannot read --to-ca ${o.toCa}: ${messageOf(err)}`, { cause: err });
    }
  }
  const agent = new ConnectorAgent({
    via,
    name: o.name,
    target,
    targetTls: { ca: toCa, insecure: o.toInsecure },
    credentials,
    trust,
    log,
    version: version(),
  });
  agent.start();
  log.info('connector_started', { via, target: target.authority, tls: target.tls });
  await new Promise<void>((done) => {
    const stop = (signal: string) => {
      log.info('connector_stopping', { signal });
      void agent.close().then(done);
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  log.flush();
  return 0;
}
