/**
 * Connectors, for root admins: the configured connectors with their live sessions (from the presence records every
 * worker and instance writes to the store), and one-time enrollment tokens that let a new `gatehouse connect` get
 * its certificate. The hub writes the audit record of each token (`connector.enrollment.create`); the token itself is
 * shown once and stored only as its SHA-256.
 */
import { GatehouseError } from '../core/index.ts';
import { created, defineRoute, ok, param, requireRoot, type ApiCall, type ApiRoute } from './api-call.ts';
import { connectorSessionJson, isoTime } from './api-shapes.ts';
import type { ConnectorAdmin } from './options.ts';

function hub(call: ApiCall): ConnectorAdmin {
  const connectors = call.o.connectors;
  if (!connectors) throw new GatehouseError('ERR_NOT_READY', 'connectors are not available in this Gatehouse');
  return connectors;
}

/** The command that runs the enrolled connector, with the backend left for the operator to fill in. */
function commandLine(origin: string, name: string, token: string): string {
  return `gatehouse connect --via ${origin} --name ${name} --to http://BACKEND:PORT --enroll ${token} --state /var/lib/gatehouse-connector/${name}`;
}

export const CONNECTOR_ROUTES: readonly ApiRoute[] = [
  defineRoute({
    method: 'GET',
    path: '/connectors',
    who: 'root',
    summary: 'the connectors of the configuration and their live sessions (every worker and instance)',
    handle: async (call) => {
      requireRoot(call, 'list connectors');
      const listed = await hub(call).list();
      return ok({ connectors: listed.map((c) => ({ name: c.name, sessions: c.sessions.map(connectorSessionJson) })) });
    },
  }),
  defineRoute({
    method: 'POST',
    path: '/connectors/{name}/enrollment',
    who: 'root',
    summary: 'a one-time enrollment token for a connector (valid for an hour, shown once) and the command that uses it',
    handle: async (call) => {
      requireRoot(call, 'enroll connectors');
      const name = param(call, 'name');
      const connectors = hub(call);
      if (!call.o.config.connectors.some((c) => c.name === name)) {
        throw new GatehouseError('ERR_NOT_FOUND', `no connector named ${name} is configured (connectors: in the configuration file)`);
      }
      const info = call.o.ca?.info();
      if (info?.state !== 'active') {
        throw new GatehouseError('ERR_CA_NOT_INITIALISED', 'connectors get their certificates from the internal CA: an operator creates it with `gatehouse ca init -c FILE`');
      }
      const e = await connectors.createEnrollment(name, call.me);
      return created({ name: e.name, token: e.token, expires: isoTime(e.expires), command: commandLine(call.request.origin, e.name, e.token) });
    },
  }),
];
