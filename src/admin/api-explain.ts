/**
 * `POST /explain`: the decision the front door would make for a request, with the rules considered on the way —
 * as `gatehouse explain` gives it. Anyone may ask about themselves (with their groups and this connection's
 * certificate); root admins about anyone (without IdP groups, which only a sign-in carries, and without a
 * certificate).
 */
import { z } from 'zod';
import { GatehouseError, type ErrorCode } from '../core/index.ts';
import { explain, type CertificateFacts, type UserFacts } from '../policy/index.ts';
import { defineRoute, emailInput, ok, type ApiCall, type ApiRoute } from './api-call.ts';
import { rootAdminsOf, userFactsOf } from './api-facts.ts';

const NO_CERTIFICATE: CertificateFacts = Object.freeze({ status: 'missing' });

const explainBody = z.strictObject({
  user: emailInput.optional(),
  method: z
    .string()
    .regex(/^[A-Za-z]{1,20}$/, 'not an HTTP method')
    .optional(),
  url: z.string().min(1).max(8192),
});

function subject(call: ApiCall, user: string | undefined): { user: UserFacts; certificate: CertificateFacts } {
  const email = user?.trim().toLowerCase();
  if (email === undefined || email === call.me) return { user: call.principal.user, certificate: call.request.certificate };
  if (!call.root) throw new GatehouseError('ERR_FORBIDDEN', 'only root admins may explain decisions for someone else');
  return { user: userFactsOf(call.o, email), certificate: NO_CERTIFICATE };
}

export const EXPLAIN_ROUTES: readonly ApiRoute[] = [
  defineRoute({
    method: 'POST',
    path: '/explain',
    who: 'own-or-root',
    summary: 'the decision for a request to a URL, its reason and the rules considered',
    body: explainBody,
    handle: async (call, body) => {
      const { o } = call;
      const who = subject(call, body.user);
      let url: URL;
      try {
        url = new URL(body.url);
      } catch {
        throw new GatehouseError('ERR_BAD_REQUEST', `field "url": ${JSON.stringify(body.url)} is not an absolute URL`);
      }
      const method = (body.method ?? 'GET').toUpperCase();
      const host = url.hostname.toLowerCase();
      const found = o.findRoute(host);
      const refused = (code: ErrorCode, reason: string, route: string | null) => ok({ allow: false, code, reason, route, method, path: url.pathname, considered: [] });
      if (!found) return refused('ERR_ROUTE_NOT_FOUND', `no route is published at ${host}`, null);
      const path = o.normalizePath(url.pathname);
      if (path === undefined) return refused('ERR_BAD_REQUEST', 'the path cannot be normalised safely', found.name);
      const { decision, considered } = explain({
        route: o.policy.route(found.name) ?? found.config,
        method,
        path,
        certificate: who.certificate,
        loginAvailable: o.loginAvailable,
        admins: rootAdminsOf(o),
        user: who.user,
      });
      const outcome = decision.allow ? { allow: true, rule: decision.rule } : { allow: false, code: decision.code, reason: decision.reason };
      return ok({ ...outcome, route: found.name, method, path, considered: considered.map((c) => ({ rule: c.rule, matched: c.matched })) });
    },
  }),
];
