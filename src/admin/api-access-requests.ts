/**
 * Access requests: anyone asks for a role; that role's admins (and root admins) approve or decline. The directory
 * keeps one pending request per user and role and refuses to decide one twice.
 */
import { z } from 'zod';
import { created, defineRoute, durationField, durationInput, ok, param, type ApiRoute } from './api-call.ts';
import { accessRequestJson } from './api-shapes.ts';

export const ACCESS_REQUEST_ROUTES: readonly ApiRoute[] = [
  defineRoute({
    method: 'POST',
    path: '/access-requests',
    who: 'signed-in',
    summary: 'ask for a role, with a reason and optionally for a while (asking again returns the pending request)',
    body: z.strictObject({ role: z.string().min(1).max(64), reason: z.string().max(1000), duration: durationInput.optional() }),
    handle: async ({ o, actor }, body) => {
      const duration = body.duration === undefined ? undefined : durationField(body.duration, 'duration');
      const request = await o.directory.requestAccess(actor, body.role, body.reason, duration);
      return created({ request: accessRequestJson(request) });
    },
  }),
  defineRoute({
    method: 'GET',
    path: '/access-requests',
    who: 'signed-in',
    summary: 'my requests, and the pending requests I may decide',
    handle: async ({ o, me, actor }) => {
      const [mine, toDecide] = await Promise.all([o.directory.requestsOf(me), o.directory.pendingFor(actor)]);
      return ok({ mine: mine.map(accessRequestJson), toDecide: toDecide.map(accessRequestJson) });
    },
  }),
  defineRoute({
    method: 'POST',
    path: '/access-requests/{id}/approve',
    who: 'role-admin-or-root',
    summary: 'grant the role, for the given duration, else the requested one, else without end (409 when decided)',
    body: z.strictObject({ duration: durationInput.optional() }),
    handle: async (call, body) => {
      const duration = body.duration === undefined ? undefined : durationField(body.duration, 'duration');
      const request = await call.o.directory.approve(param(call, 'id'), call.actor, duration);
      return ok({ request: accessRequestJson(request) });
    },
  }),
  defineRoute({
    method: 'POST',
    path: '/access-requests/{id}/decline',
    who: 'role-admin-or-root',
    summary: 'refuse the request (409 when decided)',
    handle: async (call) => {
      const request = await call.o.directory.decline(param(call, 'id'), call.actor);
      return ok({ request: accessRequestJson(request) });
    },
  }),
];
