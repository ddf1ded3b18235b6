/**
 * API tokens: personal ones (kind `api`, carrying the caller's groups) for anyone, service-account ones for root
 * admins. The secret is in the answer that issues it and nowhere else; issuing and revoking are audited.
 */
import { z } from 'zod';
import { GatehouseError } from '../core/index.ts';
import { SERVICE_DOMAIN } from '../directory/index.ts';
import type { Token } from '../authn/index.ts';
import { NO_CONTENT, created, defineRoute, durationField, durationInput, ok, param, wantsAll, type ApiCall, type ApiRoute } from './api-call.ts';
import { tokenJson } from './api-shapes.ts';

/** The longest a token issued through the API lives. */
export const MAX_TOKEN_TTL_MS = 365 * 86_400_000;

/** What an audit record keeps of a token: everything but the secret (which is never stored anyway). */
function tokenFacts(t: Token) {
  return { id: t.id, user: t.user, name: t.name, kind: t.kind, created: t.created, expires: t.expires };
}

async function issuePersonal(call: ApiCall, name: string, ttlMs: number) {
  const { o, me, principal } = call;
  if (me.endsWith(`@${SERVICE_DOMAIN}`)) {
    throw new GatehouseError('ERR_FORBIDDEN', 'a service account’s tokens are issued by root admins (POST /tokens with "account")');
  }
  const issued = await o.sessions.issueToken(me, name, ttlMs, 'api', principal.user.groups);
  try {
    await o.directory.appendAudit(call.actor, { action: 'token.issue', kind: 'token', id: issued.record.id, after: tokenFacts(issued.record) });
  } catch (err) {
    // a token nobody can find in the audit log must not live on
    await o.sessions.revokeToken(issued.record.id).catch(() => undefined);
    throw err;
  }
  return issued;
}

export const TOKEN_ROUTES: readonly ApiRoute[] = [
  defineRoute({
    method: 'GET',
    path: '/tokens',
    who: 'own-or-root',
    summary: 'my live tokens (?all=true: everyone’s, root only), never their secrets',
    handle: async (call) => {
      const all = wantsAll(call, 'tokens');
      const tokens = await call.o.directory.tokensOf(all ? undefined : call.me);
      return ok({ tokens: tokens.sort((a, b) => b.created - a.created).map(tokenJson) });
    },
  }),
  defineRoute({
    method: 'POST',
    path: '/tokens',
    who: 'own-or-root',
    summary: 'issue a personal token, or (root) a token of a service account; the secret is shown once',
    body: z.strictObject({ name: z.string().trim().min(1).max(100), ttl: durationInput, account: z.string().min(1).max(64).optional() }),
    handle: async (call, body) => {
      const ttlMs = durationField(body.ttl, 'ttl', MAX_TOKEN_TTL_MS);
      const issued =
        body.account === undefined
          ? await issuePersonal(call, body.name, ttlMs)
          : await call.o.directory.issueServiceToken(body.account, call.actor, { tokenName: body.name, ttlMs });
      return created({ token: issued.token, record: tokenJson(issued.record) });
    },
  }),
  defineRoute({
    method: 'DELETE',
    path: '/tokens/{id}',
    who: 'own-or-root',
    summary: 'revoke a token: it is refused from the next request on',
    handle: async (call) => {
      const id = param(call, 'id');
      const token = (await call.o.directory.tokensOf(call.root ? undefined : call.me)).find((t) => t.id === id);
      if (!token) throw new GatehouseError('ERR_NOT_FOUND', `there is no token ${id}`);
      await call.o.directory.appendAudit(call.actor, { action: 'token.revoke', kind: 'token', id, before: tokenFacts(token) });
      await call.o.sessions.revokeToken(id);
      return NO_CONTENT;
    },
  }),
];
