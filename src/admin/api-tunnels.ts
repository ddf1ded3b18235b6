/**
 * Open TCP tunnels (`gatehouse tunnel`): everyone sees and closes their own; root admins anyone's (`?all=true` to
 * list them). The list comes from the records every worker and instance keeps in the store; closing one deletes its
 * record, and the process that holds its sockets closes it on seeing that. Someone else's tunnel is "not found" for
 * everyone else, so its existence is not disclosed. A close is audited.
 */
import { GatehouseError } from '../core/index.ts';
import { NO_CONTENT, defineRoute, ok, param, wantsAll, type ApiCall, type ApiRoute } from './api-call.ts';
import { tunnelJson } from './api-shapes.ts';
import type { TunnelAdmin, TunnelFacts } from './options.ts';

function registry(call: ApiCall): TunnelAdmin {
  const tunnels = call.o.tunnels;
  if (!tunnels) throw new GatehouseError('ERR_NOT_READY', 'tunnels are not available in this Gatehouse');
  return tunnels;
}

function ownedBy(t: TunnelFacts, email: string): boolean {
  return t.user?.toLowerCase() === email;
}

export const TUNNEL_ROUTES: readonly ApiRoute[] = [
  defineRoute({
    method: 'GET',
    path: '/tunnels',
    who: 'own-or-root',
    summary: 'my open TCP tunnels (?all=true: everyone’s, root only), newest first, across every worker and instance',
    handle: async (call) => {
      const all = wantsAll(call, 'tunnels');
      const list = registry(call)
        .list()
        .filter((t) => all || ownedBy(t, call.me));
      return ok({ tunnels: list.map(tunnelJson) });
    },
  }),
  defineRoute({
    method: 'DELETE',
    path: '/tunnels/{id}',
    who: 'own-or-root',
    summary: 'close an open tunnel: the process that holds it ends it within a second',
    handle: async (call) => {
      const id = param(call, 'id');
      const tunnels = registry(call);
      const found = tunnels.list().find((t) => t.id === id);
      if (!found || !(call.root || ownedBy(found, call.me))) throw new GatehouseError('ERR_NOT_FOUND', `there is no open tunnel ${id}`);
      await call.o.directory.appendAudit(call.actor, {
        action: 'tunnel.close',
        kind: 'tunnel',
        id,
        before: { user: found.user ?? null, route: found.route, host: found.host, client: found.client, since: found.since },
      });
      await tunnels.closeTunnel(id);
      return NO_CONTENT;
    },
  }),
];
