/**
 * What the dashboard and its API are built from: one per configuration state (a reload builds a new one).
 */
import type { Config, RouteConfig } from '../config/index.ts';
import type { Logger } from '../core/index.ts';
import type { SessionBook } from '../authn/index.ts';
import type { CompiledPolicy } from '../policy/index.ts';
import type { Directory } from '../directory/index.ts';
import type { InternalCa } from '../ca/index.ts';

/** One live session of a connector, as its presence record in the store says (times in ms since the epoch). */
export interface ConnectorSessionFacts {
  readonly name: string;
  readonly session: string;
  readonly address: string;
  readonly version: string;
  readonly target: string;
  readonly serial: string;
  readonly since: number;
  readonly streams: number;
  readonly worker: string;
  /** the instance holding the session, when instances share a store */
  readonly instance?: string;
}

/** The connector hub as the API needs it (the app wires it in: services do not import each other). */
export interface ConnectorAdmin {
  /** the configured connectors, each with its live sessions */
  list(): Promise<ReadonlyArray<{ readonly name: string; readonly sessions: readonly ConnectorSessionFacts[] }>>;
  /** a one-time enrollment token for `name` (audited as created by `by`) */
  createEnrollment(name: string, by: string): Promise<{ readonly name: string; readonly token: string; readonly expires: number }>;
}

/** One open TCP tunnel, as its store record says (times in ms since the epoch; bytes as of its owner's last refresh). */
export interface TunnelFacts {
  readonly id: string;
  readonly user?: string | undefined;
  readonly route: string;
  readonly host: string;
  readonly client: string;
  readonly since: number;
  readonly via: 'token' | 'session' | 'certificate' | 'public';
  readonly device?: string | undefined;
  readonly owner: string;
  readonly bytesIn: number;
  readonly bytesOut: number;
}

/** The tunnel registry as the API needs it (the app wires it in: services do not import each other). */
export interface TunnelAdmin {
  /** the open tunnels of every worker and instance */
  list(): readonly TunnelFacts[];
  /** closes a tunnel wherever it runs; false when there is no such open tunnel */
  closeTunnel(id: string): Promise<boolean>;
}

export interface AdminOptions {
  readonly config: Readonly<Config>;
  readonly policy: CompiledPolicy;
  readonly directory: Directory;
  readonly sessions: SessionBook;
  /** the internal CA (device certificates); undefined where there is none to ask (it may also have no CA yet) */
  readonly ca: InternalCa | undefined;
  /** the connector hub (sessions, enrollment); undefined where there is none to ask */
  readonly connectors?: ConnectorAdmin | undefined;
  /** the open TCP tunnels (list, close); undefined where there is none to ask */
  readonly tunnels?: TunnelAdmin | undefined;
  readonly loginAvailable: boolean;
  /** the route published at a host or alias (lower-case, without port), as the front door would find it */
  readonly findRoute: (host: string) => { readonly name: string; readonly config: RouteConfig } | undefined;
  /** the front door's path normalisation: undefined when the path cannot be normalised safely */
  readonly normalizePath: (path: string) => string | undefined;
  readonly log?: Logger | undefined;
}
