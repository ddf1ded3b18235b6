/**
 * `GET /me`: who I am, what I hold, what I administer, and the routes I can reach — each decided the way the
 * front door would decide `GET /` on it, with this connection's client certificate.
 */
import { evaluate, type CompiledRoute } from '../policy/index.ts';
import { defineRoute, ok, type ApiCall, type ApiRoute } from './api-call.ts';
import { rootAdminsOf } from './api-facts.ts';

/** The permissions `roles` hold on a route through permission grants, in grant order. */
function permissionsHeld(route: CompiledRoute | undefined, roles: readonly string[]): string[] {
  const names = new Set<string>();
  if (!route) return [];
  for (const role of roles) for (const p of route.grants.get(role)?.permissions ?? []) names.add(p.permission);
  return [...names];
}

function routesOf(call: ApiCall) {
  const { o, principal, request } = call;
  const port = new URL(request.origin).port;
  const admins = rootAdminsOf(o);
  const out = [];
  for (const r of o.config.routes) {
    const compiled = o.policy.route(r.name);
    const decision = evaluate({
      route: compiled ?? r,
      method: 'GET',
      path: '/',
      certificate: request.certificate,
      loginAvailable: o.loginAvailable,
      admins,
      user: principal.user,
    });
    const base = { name: r.name, host: r.host, url: r.host.includes('*') ? null : `https://${r.host}${port ? `:${port}` : ''}/`, auth: r.auth };
    if (decision.allow) {
      out.push({ ...base, access: 'full' as const, rule: decision.rule });
      continue;
    }
    const permissions = permissionsHeld(compiled, principal.user.roles);
    if (permissions.length > 0) out.push({ ...base, access: 'partial' as const, permissions });
  }
  return out;
}

export const ME_ROUTES: readonly ApiRoute[] = [
  defineRoute({
    method: 'GET',
    path: '/me',
    who: 'signed-in',
    summary: 'who I am, my roles, what I administer and the routes I can reach',
    handle: async (call) => {
      const { user } = call.principal;
      return ok({
        email: call.me,
        groups: user.groups,
        roles: user.roles,
        admin: { root: call.root, roles: call.o.directory.managedRoles(call.me) },
        routes: routesOf(call),
      });
    },
  }),
];
