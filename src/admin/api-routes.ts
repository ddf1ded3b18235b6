/**
 * The JSON API's routing table, as data: every operation's method and path (below `/api/v1`), who may call it
 * and its body. The dispatcher matches against it, and `docs/openapi.yaml` documents each entry.
 */
import { GatehouseError } from '../core/index.ts';
import { ACCESS_REQUEST_ROUTES } from './api-access-requests.ts';
import { AUDIT_ROUTES } from './api-audit.ts';
import type { ApiRoute } from './api-call.ts';
import { CERTIFICATE_ROUTES } from './api-certificates.ts';
import { CONNECTOR_ROUTES } from './api-connectors.ts';
import { EXPLAIN_ROUTES } from './api-explain.ts';
import { ME_ROUTES } from './api-me.ts';
import { ROLE_ROUTES } from './api-roles.ts';
import { SERVICE_ACCOUNT_ROUTES } from './api-service-accounts.ts';
import { SESSION_ROUTES } from './api-sessions.ts';
import { TOKEN_ROUTES } from './api-tokens.ts';
import { TUNNEL_ROUTES } from './api-tunnels.ts';
import { USER_ROUTES } from './api-users.ts';

export const API_PREFIX = '/api/v1';

export const API_ROUTES: readonly ApiRoute[] = Object.freeze([
  ...ME_ROUTES,
  ...ROLE_ROUTES,
  ...ACCESS_REQUEST_ROUTES,
  ...USER_ROUTES,
  ...SESSION_ROUTES,
  ...TOKEN_ROUTES,
  ...TUNNEL_ROUTES,
  ...CERTIFICATE_ROUTES,
  ...CONNECTOR_ROUTES,
  ...SERVICE_ACCOUNT_ROUTES,
  ...AUDIT_ROUTES,
  ...EXPLAIN_ROUTES,
]);

type Segment = { readonly literal: string } | { readonly param: string };

interface CompiledApiRoute {
  readonly route: ApiRoute;
  readonly segments: readonly Segment[];
}

function compile(route: ApiRoute): CompiledApiRoute {
  const segments = route.path
    .slice(1)
    .split('/')
    .map((s): Segment => (s.startsWith('{') && s.endsWith('}') ? { param: s.slice(1, -1) } : { literal: s }));
  return { route, segments };
}

const compiled: readonly CompiledApiRoute[] = API_ROUTES.map(compile);

/** The path parameters when `parts` fit the route's segments; raw (still percent-encoded). */
function fit(c: CompiledApiRoute, parts: readonly string[]): Record<string, string> | undefined {
  if (parts.length !== c.segments.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < parts.length; i++) {
    const seg = c.segments[i]!;
    const part = parts[i]!;
    if ('literal' in seg) {
      if (seg.literal !== part) return undefined;
    } else {
      if (part === '') return undefined;
      params[seg.param] = part;
    }
  }
  return params;
}

function decode(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new GatehouseError('ERR_BAD_REQUEST', `${JSON.stringify(raw)} is not a valid path segment`);
  }
}

export type RouteMatch =
  | { readonly kind: 'found'; readonly route: ApiRoute; readonly params: Readonly<Record<string, string>> }
  | { readonly kind: 'wrong-method'; readonly allow: readonly string[] }
  | { readonly kind: 'none' };

/** The operation at `path` (below `/api/v1`, normalised) for `method` (HEAD as GET); parameters decoded once. */
export function matchApiRoute(method: string, path: string): RouteMatch {
  if (!path.startsWith('/')) return { kind: 'none' };
  const parts = path.slice(1).split('/');
  const wanted = method === 'HEAD' ? 'GET' : method;
  const allow: string[] = [];
  for (const c of compiled) {
    const params = fit(c, parts);
    if (!params) continue;
    if (c.route.method === wanted) {
      const decoded: Record<string, string> = {};
      for (const [k, v] of Object.entries(params)) decoded[k] = decode(v);
      return { kind: 'found', route: c.route, params: Object.freeze(decoded) };
    }
    allow.push(c.route.method);
    if (c.route.method === 'GET') allow.push('HEAD');
  }
  return allow.length > 0 ? { kind: 'wrong-method', allow: [...new Set(allow)] } : { kind: 'none' };
}
