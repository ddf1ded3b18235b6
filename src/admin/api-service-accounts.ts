/**
 * Service accounts (root admins only): identities `NAME@service.gatehouse` that hold roles like people and call
 * routes with API tokens (`POST /tokens` with `account`).
 */
import { z } from 'zod';
import { GatehouseError } from '../core/index.ts';
import { NO_CONTENT, created, defineRoute, ok, param, requireRoot, type ApiRoute } from './api-call.ts';
import { rolesOf } from './api-facts.ts';
import { serviceAccountJson } from './api-shapes.ts';

export const SERVICE_ACCOUNT_ROUTES: readonly ApiRoute[] = [
  defineRoute({
    method: 'GET',
    path: '/service-accounts',
    who: 'root',
    summary: 'every service account with the roles it holds',
    handle: async (call) => {
      requireRoot(call, 'list service accounts');
      const accounts = await call.o.directory.serviceAccounts();
      return ok({ serviceAccounts: accounts.map((a) => serviceAccountJson(a, rolesOf(call.o, a.identity))) });
    },
  }),
  defineRoute({
    method: 'POST',
    path: '/service-accounts',
    who: 'root',
    summary: 'create a service account NAME@service.gatehouse (409 when it exists)',
    body: z.strictObject({ name: z.string().min(1).max(64), description: z.string().max(1000).optional() }),
    handle: async ({ o, actor }, body) => {
      const account = await o.directory.createServiceAccount(body.name, actor, body.description !== undefined ? { description: body.description } : {});
      return created({ serviceAccount: serviceAccountJson(account, rolesOf(o, account.identity)) });
    },
  }),
  defineRoute({
    method: 'DELETE',
    path: '/service-accounts/{name}',
    who: 'root',
    summary: 'delete a service account with its memberships and tokens',
    handle: async (call) => {
      const name = param(call, 'name');
      if (!(await call.o.directory.deleteServiceAccount(name, call.actor))) {
        throw new GatehouseError('ERR_NOT_FOUND', `there is no service account ${name}`);
      }
      return NO_CONTENT;
    },
  }),
];
