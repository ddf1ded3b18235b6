/**
 * One call of the JSON API as an operation sees it (the caller already authenticated and checked for CSRF), what
 * an operation answers, and the small checks operations share.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { z } from 'zod';
import { GatehouseError, parseDuration } from '../core/index.ts';
import type { Actor } from '../directory/index.ts';
import type { AuthHostRequest, Principal } from '../proxy/index.ts';
import type { AdminOptions } from './options.ts';

export interface ApiCall {
  readonly o: AdminOptions;
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly request: AuthHostRequest;
  readonly principal: Principal;
  /** the caller's email, lower-case */
  readonly me: string;
  /** the caller as the directory records them: email and client address */
  readonly actor: Actor;
  /** whether the caller is a root admin (`identity.admins`) */
  readonly root: boolean;
  /** the path parameters, percent-decoded once */
  readonly params: Readonly<Record<string, string>>;
}

/** The operation wrote its answer itself (a stream). */
export const STREAMED: unique symbol = Symbol('streamed');

/** A JSON answer (`body` undefined with 204), or `STREAMED`. */
export type Reply = { readonly status: number; readonly body?: unknown } | typeof STREAMED;

export function ok(body: unknown): Reply {
  return { status: 200, body };
}

export function created(body: unknown): Reply {
  return { status: 201, body };
}

export const NO_CONTENT: Reply = Object.freeze({ status: 204 });

/** `ERR_FORBIDDEN` unless the caller is a root admin. */
export function requireRoot(call: ApiCall, what: string): void {
  if (!call.root) throw new GatehouseError('ERR_FORBIDDEN', `only root admins may ${what}`);
}

/** `?all=true` (root only) for everyone's, else the caller's own. */
export function wantsAll(call: ApiCall, what: string): boolean {
  const all = call.request.query.get('all');
  if (all === null || all === 'false') return false;
  if (all !== 'true') throw new GatehouseError('ERR_BAD_REQUEST', '"all" must be true or false');
  requireRoot(call, `list everyone's ${what}`);
  return true;
}

/** A path parameter (the router only matches when it is there). */
export function param(call: ApiCall, name: string): string {
  const v = call.params[name];
  if (v === undefined) throw new Error(`no path parameter ${name}`);
  return v;
}

const MAX_DURATION_MS = 10 * 365 * 86_400_000;

/** A positive duration given as text (`90m`, `8h`, `30d`) in ms; `ERR_BAD_REQUEST` naming the field. */
export function durationField(text: string, field: string, maxMs = MAX_DURATION_MS): number {
  let ms: number;
  try {
    ms = parseDuration(text);
  } catch {
    throw new GatehouseError('ERR_BAD_REQUEST', `field "${field}": ${JSON.stringify(text)} is not a duration (use e.g. 90m, 8h, 30d)`);
  }
  if (ms <= 0) throw new GatehouseError('ERR_BAD_REQUEST', `field "${field}": a duration must be longer than 0`);
  if (ms > maxMs) throw new GatehouseError('ERR_BAD_REQUEST', `field "${field}": at most ${Math.round(maxMs / 86_400_000)}d`);
  return ms;
}

/** A duration as text, for bodies. */
export const durationInput = z.string().min(1).max(64);
/** An ISO 8601 time with `Z` or an offset. */
export const timeInput = z.iso.datetime({ offset: true });
/** An email address as the directory checks it (lower-cased there). */
export const emailInput = z.string().regex(/^[^@\s/]+@[^@\s/]+$/, 'not an email address').max(320);

export type ApiMethod = 'GET' | 'POST' | 'PUT' | 'DELETE';

/** Who may call an operation: documentation for people and the OpenAPI file; the operation and the directory enforce it. */
export type ApiAudience = 'signed-in' | 'own-or-root' | 'role-admin-or-root' | 'root';

/** One operation: where it lives, who may call it, its body, and what it does. */
export interface ApiRoute {
  readonly method: ApiMethod;
  /** below `/api/v1`, with `{name}` for a path parameter: `/roles/{role}/members/{email}` */
  readonly path: string;
  readonly who: ApiAudience;
  readonly summary: string;
  /** the JSON body (a strict object); operations without one take an empty body or `{}` */
  readonly body: z.ZodType;
  readonly handle: (call: ApiCall, body: unknown) => Promise<Reply>;
}

const EMPTY_BODY = z.strictObject({});

/** An operation with a typed body (or none). */
export function defineRoute<S extends z.ZodType = typeof EMPTY_BODY>(route: {
  readonly method: ApiMethod;
  readonly path: string;
  readonly who: ApiAudience;
  readonly summary: string;
  readonly body?: S;
  readonly handle: (call: ApiCall, body: z.output<S>) => Promise<Reply>;
}): ApiRoute {
  return Object.freeze({ ...route, body: route.body ?? EMPTY_BODY, handle: route.handle as ApiRoute['handle'] });
}
