/**
 * The policy facts of people other than the caller, gathered the way the front door gathers them (configured
 * roles, IdP groups, store memberships, the disabled flag), and the root admins as a set.
 */
import type { UserFacts } from '../policy/index.ts';
import type { AdminOptions } from './options.ts';

const rootAdmins = new WeakMap<AdminOptions, ReadonlySet<string>>();

/** `identity.admins`, lower-case, built once per configuration. */
export function rootAdminsOf(o: AdminOptions): ReadonlySet<string> {
  let set = rootAdmins.get(o);
  if (!set) {
    set = new Set(o.config.identity.admins.map((a) => a.toLowerCase()));
    rootAdmins.set(o, set);
  }
  return set;
}

/** The roles `email` holds with `groups`: configured members and groups plus store memberships. Memory only. */
export function rolesOf(o: AdminOptions, email: string, groups: readonly string[] = []): readonly string[] {
  const held = o.directory.rolesFromStore(email);
  return o.policy.rolesFor(email, groups, held.length ? held : undefined);
}

/** What a decision knows of `email` when they are not the caller: no IdP groups (only a sign-in carries them). */
export function userFactsOf(o: AdminOptions, email: string): UserFacts {
  const e = email.toLowerCase();
  return { email: e, groups: [], roles: rolesOf(o, e), disabled: o.directory.isDisabled(e) };
}
