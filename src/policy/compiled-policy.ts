/**
 * The policy compiled once per configuration: per route its allow lists as sets and, per role, the grants
 * that cover it; per role its grants; and who holds which role. Everything the hot path needs is
 * precomputed here, including the allow decisions themselves, so `evaluate` allocates (almost) nothing.
 */
import { GatehouseError } from '../core/index.ts';
import type { RoleConfig, RouteConfig } from '../config/index.ts';
import type { Allow, AuthMode, RouteRules } from './decision.ts';

/** What `compilePolicy` reads of a route (a `RouteConfig` is one). */
export type PolicyRoute = Pick<RouteConfig, 'name' | 'auth' | 'permissions'> & { readonly allow?: RouteRules['allow'] };
/** What `compilePolicy` reads of a role (a `RoleConfig` is one). */
export type PolicyRole = Pick<RoleConfig, 'name' | 'grants' | 'groups' | 'members'>;

/** One location of a permission: methods (absent = any) and a path prefix. */
export interface CompiledLocation {
  /** upper-case; undefined = any method */
  readonly methods: ReadonlySet<string> | undefined;
  /** as configured: `/api/` covers `/api/` and `/api/x`; `/api` covers `/api` and `/api/x`, not `/apix` */
  readonly path: string;
  /** what a longer path must start with: `path` when it ends in "/", else `path + "/"` */
  readonly prefix: string;
  /** e.g. `GET|HEAD /api/`, `any method /api/` */
  readonly text: string;
}

/** A role's grant of a whole route. */
export interface RouteGrant {
  readonly kind: 'route';
  readonly role: string;
  readonly route: string;
  /** `role sre grants grafana` */
  readonly decision: Allow;
}

/** A role's grant of one permission of a route. */
export interface PermissionGrant {
  readonly kind: 'permission';
  readonly role: string;
  readonly route: string;
  readonly permission: string;
  readonly locations: readonly CompiledLocation[];
  /** per location, same order: `role sre grants wiki:read (GET /api/)` */
  readonly decisions: readonly Allow[];
}

export type CompiledGrant = RouteGrant | PermissionGrant;

export interface CompiledRole {
  readonly name: string;
  readonly grants: readonly CompiledGrant[];
}

/** One role's grants on one route. */
export interface RoleGrants {
  readonly whole: RouteGrant | undefined;
  readonly permissions: readonly PermissionGrant[];
}

export interface CompiledRoute {
  /** tells a compiled route from a configured one */
  readonly compiled: true;
  readonly name: string;
  readonly auth: AuthMode;
  /** `allow.users` (lower-case) → its allow decision */
  readonly allowUsers: ReadonlyMap<string, Allow>;
  /** `allow.domains` (lower-case) → its allow decision */
  readonly allowDomains: ReadonlyMap<string, Allow>;
  /** `allow.roles` → its allow decision */
  readonly allowRoles: ReadonlyMap<string, Allow>;
  readonly certificateSubject: Readonly<Record<string, string | readonly string[]>> | undefined;
  /** `allow.certificateSubject OU=engineering`; undefined when there is no subject rule */
  readonly certificateSubjectDecision: Allow | undefined;
  /** role name → that role's grants on this route (roles without any are absent) */
  readonly grants: ReadonlyMap<string, RoleGrants>;
}

export interface CompiledPolicy {
  readonly routes: ReadonlyMap<string, CompiledRoute>;
  readonly roles: ReadonlyMap<string, CompiledRole>;
  /** the compiled route of that name */
  route(name: string): CompiledRoute | undefined;
  /**
   * The configured roles a user holds through `members` (email, case-insensitive) or IdP `groups`, plus
   * `extraRoles` (e.g. memberships from the store) that name a configured role; in configuration order.
   */
  rolesFor(email: string, groups: readonly string[], extraRoles?: Iterable<string>): readonly string[];
}

const NO_ROLES: readonly string[] = Object.freeze([]);

function allow(rule: string): Allow {
  return Object.freeze({ allow: true as const, rule });
}

export function formatSubjectRule(rule: Readonly<Record<string, string | readonly string[]>>): string {
  return Object.entries(rule)
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : v.join('|')}`)
    .join(', ');
}

function compileLocation(location: { readonly methods?: readonly string[] | undefined; readonly path: string }): CompiledLocation {
  const methods = location.methods ? [...new Set(location.methods.map((m) => m.toUpperCase()))] : undefined;
  const path = location.path;
  return Object.freeze({
    methods: methods ? new Set(methods) : undefined,
    path,
    prefix: path.endsWith('/') ? path : `${path}/`,
    text: `${methods ? methods.join('|') : 'any method'} ${path}`,
  });
}

/** Whether a location covers an upper-case method and a normalised path. */
export function locationCovers(location: CompiledLocation, method: string, path: string): boolean {
  if (location.methods !== undefined && !location.methods.has(method)) return false;
  return path === location.path || path.startsWith(location.prefix);
}

function compileRouteRules(route: RouteRules, grants: ReadonlyMap<string, RoleGrants>): CompiledRoute {
  const a = route.allow;
  const users = new Map<string, Allow>();
  const domains = new Map<string, Allow>();
  const roles = new Map<string, Allow>();
  for (const u of a?.users ?? []) users.set(u.toLowerCase(), allow(`allow.users ${u.toLowerCase()}`));
  for (const d of a?.domains ?? []) domains.set(d.toLowerCase(), allow(`allow.domains ${d.toLowerCase()}`));
  for (const r of a?.roles ?? []) roles.set(r, allow(`allow.roles ${r}`));
  const subject = a?.certificateSubject;
  return Object.freeze({
    compiled: true as const,
    name: route.name,
    auth: route.auth,
    allowUsers: users,
    allowDomains: domains,
    allowRoles: roles,
    certificateSubject: subject,
    certificateSubjectDecision: subject ? allow(`allow.certificateSubject ${formatSubjectRule(subject)}`) : undefined,
    grants,
  });
}

const NO_GRANTS: ReadonlyMap<string, RoleGrants> = new Map();
const compiledConfigs = new WeakMap<RouteRules, CompiledRoute>();

/** A route given as configuration, compiled once per object (allow lists only: no role grants). */
export function compiledRouteOf(route: CompiledRoute | RouteRules): CompiledRoute {
  if ('compiled' in route && route.compiled === true) return route;
  let c = compiledConfigs.get(route);
  if (!c) {
    c = compileRouteRules(route, NO_GRANTS);
    compiledConfigs.set(route, c);
  }
  return c;
}

/**
 * Compile routes and roles once per configuration. The configuration is expected to be validated; a grant
 * of an unknown route or permission, or a repeated name, is an `ERR_CONFIG_INVALID` error.
 */
export function compilePolicy(routes: readonly PolicyRoute[], roles: readonly PolicyRole[]): CompiledPolicy {
  const routeByName = new Map<string, PolicyRoute>();
  for (const r of routes) {
    if (routeByName.has(r.name)) throw new GatehouseError('ERR_CONFIG_INVALID', `duplicate route name ${JSON.stringify(r.name)}`);
    routeByName.set(r.name, r);
  }

  const compiledRoles = new Map<string, CompiledRole>();
  /** route → role → grants */
  const byRoute = new Map<string, Map<string, { whole: RouteGrant | undefined; permissions: PermissionGrant[] }>>();
  const order = new Map<string, number>();
  const byMember = new Map<string, string[]>();
  const byGroup = new Map<string, string[]>();

  roles.forEach((role, index) => {
    if (order.has(role.name)) throw new GatehouseError('ERR_CONFIG_INVALID', `duplicate role name ${JSON.stringify(role.name)}`);
    order.set(role.name, index);
    const grants: CompiledGrant[] = [];
    for (const text of new Set(role.grants)) {
      const colon = text.indexOf(':');
      const routeName = colon < 0 ? text : text.slice(0, colon);
      const route = routeByName.get(routeName);
      if (!route) {
        throw new GatehouseError('ERR_CONFIG_INVALID', `role ${role.name} grants unknown route ${JSON.stringify(routeName)}`);
      }
      let perRole = byRoute.get(routeName);
      if (!perRole) byRoute.set(routeName, (perRole = new Map()));
      let entry = perRole.get(role.name);
      if (!entry) perRole.set(role.name, (entry = { whole: undefined, permissions: [] }));
      if (colon < 0) {
        const g: RouteGrant = Object.freeze({
          kind: 'route' as const,
          role: role.name,
          route: routeName,
          decision: allow(`role ${role.name} grants ${routeName}`),
        });
        entry.whole = g;
        grants.push(g);
        continue;
      }
      const permissionName = text.slice(colon + 1);
      const permission = route.permissions.find((p) => p.name === permissionName);
      if (!permission) {
        throw new GatehouseError('ERR_CONFIG_INVALID', `role ${role.name} grants ${text}, and route ${routeName} has no permission ${JSON.stringify(permissionName)}`);
      }
      const locations = Object.freeze(permission.locations.map(compileLocation));
      const g: PermissionGrant = Object.freeze({
        kind: 'permission' as const,
        role: role.name,
        route: routeName,
        permission: permissionName,
        locations,
        decisions: Object.freeze(locations.map((l) => allow(`role ${role.name} grants ${text} (${l.text})`))),
      });
      entry.permissions.push(g);
      grants.push(g);
    }
    compiledRoles.set(role.name, Object.freeze({ name: role.name, grants: Object.freeze(grants) }));
    for (const m of role.members) push(byMember, m.toLowerCase(), role.name);
    for (const group of role.groups) push(byGroup, group, role.name);
  });

  const compiledRoutes = new Map<string, CompiledRoute>();
  for (const r of routes) {
    const grants = new Map<string, RoleGrants>();
    for (const [role, e] of byRoute.get(r.name) ?? []) {
      grants.set(role, Object.freeze({ whole: e.whole, permissions: Object.freeze(e.permissions) }));
    }
    compiledRoutes.set(r.name, compileRouteRules(r, grants));
  }
  for (const list of byMember.values()) Object.freeze(list);

  function rolesFor(email: string, groups: readonly string[], extraRoles?: Iterable<string>): readonly string[] {
    const direct = byMember.get(email.toLowerCase());
    if (groups.length === 0 && extraRoles === undefined) return direct ?? NO_ROLES;
    const held = new Set<string>(direct);
    for (const g of groups) for (const r of byGroup.get(g) ?? NO_ROLES) held.add(r);
    if (extraRoles) for (const r of extraRoles) if (order.has(r)) held.add(r);
    if (held.size === 0) return NO_ROLES;
    return [...held].sort((a, b) => order.get(a)! - order.get(b)!);
  }

  return Object.freeze({
    routes: compiledRoutes,
    roles: compiledRoles,
    route: (name: string) => compiledRoutes.get(name),
    rolesFor,
  });
}

function push(map: Map<string, string[]>, key: string, value: string): void {
  const list = map.get(key);
  if (!list) map.set(key, [value]);
  else if (!list.includes(value)) list.push(value);
}
