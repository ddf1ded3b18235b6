/**
 * Sessions: everyone sees and revokes their own; root admins anyone's. Someone else's session is "not found" for
 * everyone else, so its existence is not disclosed. A revocation is audited (never with a secret).
 */
import { GatehouseError } from '../core/index.ts';
import type { Session } from '../authn/index.ts';
import { NO_CONTENT, defineRoute, ok, param, wantsAll, type ApiCall, type ApiRoute } from './api-call.ts';
import { sessionFacts, sessionJson } from './api-shapes.ts';

function ownedBy(s: { readonly user: string }, email: string): boolean {
  return s.user.toLowerCase() === email;
}

/** The live session `id` when the caller may see it (their own, or anyone's for root), else undefined. */
async function visibleSession(call: ApiCall, id: string): Promise<Session | undefined> {
  const found = (await call.o.sessions.list()).find((s) => s.id === id);
  return found && (call.root || ownedBy(found, call.me)) ? found : undefined;
}

export const SESSION_ROUTES: readonly ApiRoute[] = [
  defineRoute({
    method: 'GET',
    path: '/sessions',
    who: 'own-or-root',
    summary: 'my live sessions (?all=true: everyone’s, root only); current marks the one making this call',
    handle: async (call) => {
      const all = wantsAll(call, 'sessions');
      const list = (await call.o.sessions.list()).filter((s) => all || ownedBy(s, call.me)).sort((a, b) => b.created - a.created);
      const currentId = call.principal.via === 'session' ? call.principal.id : undefined;
      return ok({ sessions: list.map((s) => sessionJson(s, s.id === currentId)) });
    },
  }),
  defineRoute({
    method: 'DELETE',
    path: '/sessions/{id}',
    who: 'own-or-root',
    summary: 'revoke a session: it is refused from the next request on',
    handle: async (call) => {
      const id = param(call, 'id');
      const session = await visibleSession(call, id);
      if (!session) throw new GatehouseError('ERR_NOT_FOUND', `there is no session ${id}`);
      await call.o.directory.appendAudit(call.actor, { action: 'session.revoke', kind: 'session', id, before: sessionFacts(session) });
      await call.o.sessions.revoke(id);
      return NO_CONTENT;
    },
  }),
];
