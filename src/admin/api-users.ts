/**
 * People (root admins only): the list, and disabling (which ends their sessions and tokens at once) or enabling.
 * Making someone a root admin is not an operation: root admins are `identity.admins` in the configuration.
 */
import { GatehouseError } from '../core/index.ts';
import { defineRoute, ok, param, requireRoot, type ApiRoute } from './api-call.ts';
import { rolesOf } from './api-facts.ts';
import { userJson } from './api-shapes.ts';

export const USER_ROUTES: readonly ApiRoute[] = [
  defineRoute({
    method: 'GET',
    path: '/users',
    who: 'root',
    summary: 'everyone who signed in (or was disabled in advance), with their roles',
    handle: async (call) => {
      requireRoot(call, 'list users');
      const users = await call.o.directory.users();
      return ok({ users: users.map((u) => userJson(u, rolesOf(call.o, u.email))) });
    },
  }),
  defineRoute({
    method: 'POST',
    path: '/users/{email}/disable',
    who: 'root',
    summary: 'refuse the user everywhere from the next request on, and revoke their sessions and tokens',
    handle: async (call) => {
      const { o, actor } = call;
      const email = param(call, 'email');
      const revoked = await o.directory.disable(email, actor);
      const user = await o.directory.user(email);
      if (!user) throw new Error(`${email} was disabled and has no record`);
      return ok({ user: userJson(user, rolesOf(o, user.email)), revoked });
    },
  }),
  defineRoute({
    method: 'POST',
    path: '/users/{email}/enable',
    who: 'root',
    summary: 'let a disabled user in again (their old sessions and tokens stay revoked)',
    handle: async (call) => {
      const { o, actor } = call;
      const email = param(call, 'email');
      const user = await o.directory.enable(email, actor);
      if (!user) throw new GatehouseError('ERR_NOT_FOUND', `there is no user ${email}`);
      return ok({ user: userJson(user, rolesOf(o, user.email)) });
    },
  }),
];
