/**
 * Roles, their members and their admins. The directory decides who may change what (root admins anything, a
 * role's admins that role's members); these operations only translate between HTTP and the directory.
 */
import { z } from 'zod';
import { GatehouseError } from '../core/index.ts';
import { NO_CONTENT, defineRoute, durationField, durationInput, ok, param, timeInput, type ApiRoute } from './api-call.ts';
import { membershipJson, roleAdminJson } from './api-shapes.ts';

const memberBody = z.strictObject({ expires: timeInput.optional(), duration: durationInput.optional() });

/** Until when a new membership lasts: `expires` or now + `duration`, not both; undefined = without end. */
function membershipEnd(body: z.output<typeof memberBody>): number | undefined {
  if (body.expires !== undefined && body.duration !== undefined) {
    throw new GatehouseError('ERR_BAD_REQUEST', 'give either "expires" or "duration", not both');
  }
  if (body.duration !== undefined) return Date.now() + durationField(body.duration, 'duration');
  if (body.expires === undefined) return undefined;
  const at = Date.parse(body.expires);
  if (at <= Date.now()) throw new GatehouseError('ERR_BAD_REQUEST', 'field "expires": must be a time in the future');
  return at;
}

export const ROLE_ROUTES: readonly ApiRoute[] = [
  defineRoute({
    method: 'GET',
    path: '/roles',
    who: 'signed-in',
    summary: 'every configured role: description, grants, groups, admins, whether I hold it and whether I manage it',
    handle: async ({ o, me, principal }) => {
      const roles = [];
      for (const r of o.config.roles) {
        const admins = (await o.directory.roleAdmins(r.name)).map((a) => roleAdminJson(r.name, a));
        roles.push({
          name: r.name,
          description: r.description,
          grants: r.grants,
          groups: r.groups,
          admins,
          held: principal.user.roles.includes(r.name),
          manage: o.directory.mayManage(r.name, me),
        });
      }
      return ok({ roles });
    },
  }),
  defineRoute({
    method: 'GET',
    path: '/roles/{role}/members',
    who: 'signed-in',
    summary: 'the members of a role, with expiry and who added them',
    handle: async (call) => {
      const role = param(call, 'role');
      const members = await call.o.directory.members(role);
      return ok({ role, members: members.map(membershipJson) });
    },
  }),
  defineRoute({
    method: 'PUT',
    path: '/roles/{role}/members/{email}',
    who: 'role-admin-or-root',
    summary: 'add a member, optionally until a time (expires) or for a while (duration)',
    body: memberBody,
    handle: async (call, body) => {
      const expires = membershipEnd(body);
      const m = await call.o.directory.addMember(param(call, 'role'), param(call, 'email'), { expires, actor: call.actor });
      return ok({ membership: membershipJson(m) });
    },
  }),
  defineRoute({
    method: 'DELETE',
    path: '/roles/{role}/members/{email}',
    who: 'role-admin-or-root',
    summary: 'remove a member (404 when not a member, 409 when the configuration declares it)',
    handle: async (call) => {
      const role = param(call, 'role');
      const email = param(call, 'email');
      if (!(await call.o.directory.removeMember(role, email, call.actor))) {
        throw new GatehouseError('ERR_NOT_FOUND', `${email} is not a member of ${role}`);
      }
      return NO_CONTENT;
    },
  }),
  defineRoute({
    method: 'PUT',
    path: '/roles/{role}/admins/{email}',
    who: 'root',
    summary: 'make someone an admin of a role',
    handle: async (call) => {
      const role = param(call, 'role');
      const admin = await call.o.directory.addRoleAdmin(role, param(call, 'email'), call.actor);
      return ok({ admin: roleAdminJson(role, admin) });
    },
  }),
  defineRoute({
    method: 'DELETE',
    path: '/roles/{role}/admins/{email}',
    who: 'root',
    summary: 'remove a role admin (404 when not one, 409 when the configuration declares it)',
    handle: async (call) => {
      const role = param(call, 'role');
      const email = param(call, 'email');
      if (!(await call.o.directory.removeRoleAdmin(role, email, call.actor))) {
        throw new GatehouseError('ERR_NOT_FOUND', `${email} is not an admin of ${role}`);
      }
      return NO_CONTENT;
    },
  }),
];
