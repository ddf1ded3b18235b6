/**
 * What the dashboard and its API are built from: one per configuration state (a reload builds a new one).
 */
import type { Config, RouteConfig } from '../config/index.ts';
import type { Logger } from '../core/index.ts';
import type { SessionBook } from '../authn/index.ts';
import type { CompiledPolicy } from '../policy/index.ts';
import type { Directory } from '../directory/index.ts';
import type { InternalCa } from '../ca/index.ts';

export interface AdminOptions {
  readonly config: Readonly<Config>;
  readonly policy: CompiledPolicy;
  readonly directory: Directory;
  readonly sessions: SessionBook;
  /** the internal CA (device certificates); undefined where there is none to ask (it may also have no CA yet) */
  readonly ca: InternalCa | undefined;
  readonly loginAvailable: boolean;
  /** the route published at a host or alias (lower-case, without port), as the front door would find it */
  readonly findRoute: (host: string) => { readonly name: string; readonly config: RouteConfig } | undefined;
  /** the front door's path normalisation: undefined when the path cannot be normalised safely */
  readonly normalizePath: (path: string) => string | undefined;
  readonly log?: Logger | undefined;
}
