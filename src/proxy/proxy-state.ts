/**
 * What the proxy reads from the current configuration. It is immutable: a reload builds a new one beside
 * the old and swaps it; a request reads it once and keeps it.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { BlockList } from 'node:net';
import type { Duplex } from 'node:stream';
import type { AssertionSigner, ClientCertificates } from '../authn/index.ts';
import type { CertificateFacts, CompiledPolicy, UserFacts } from '../policy/index.ts';
import type { Directory } from '../directory/index.ts';
import type { SignInState } from './sign-in.ts';
import type { RouteTable } from './route-table.ts';
import type { UpstreamTls } from './upstream-pool.ts';

export interface ProxyState {
  readonly generation: number;
  readonly authHost: string;
  /** the port clients use for the TLS front door (443 in production) */
  readonly publicPort: number;
  readonly routes: RouteTable;
  /** per route name: upstream TLS settings with the CA already read */
  readonly upstreamTls: ReadonlyMap<string, UpstreamTls>;
  readonly trustedProxies: BlockList;
  readonly certificates: ClientCertificates;
  readonly loginAvailable: boolean;
  readonly policy: CompiledPolicy;
  /** root administrators (lower-case emails) */
  readonly admins: ReadonlySet<string>;
  /** sign-in, sessions and tokens; absent when no store is open (`gatehouse check`) */
  readonly signIn: SignInState | undefined;
  /** signs X-Gatehouse-Jwt-Assertion; absent when no store is open */
  readonly signer: AssertionSigner | undefined;
  /** store memberships and disabled users (memory reads); absent when no store is open */
  readonly directory?: Directory | undefined;
  /** `https://AUTHHOST[:port]`, the `iss` of assertions */
  readonly issuer: string;
  readonly pac: string;
  readonly accessLog: boolean;
  /** the internal CA's public parts for `/ca/ca.crt` and `/ca/crl`; absent when there is no active CA */
  readonly caPublisher?: CaPublisher | undefined;
  /** the dashboard and its JSON API on the auth host (`/`, `/assets/…`, `/api/v1/…`); wired in by the app */
  readonly authHostApp?: AuthHostApp | undefined;
}

/** What the auth host publishes of the internal CA. */
export interface CaPublisher {
  /** the CA certificate and any above it (PEM) */
  caBundlePem(): string;
  /** the current CRL (PEM), rebuilt after each revocation */
  crlPem(): Promise<string>;
}

/** Who is calling the auth host, as the front door found out from the session cookie or a bearer token. */
export interface Principal {
  readonly user: UserFacts;
  readonly via: 'session' | 'token';
  /** the session id (cookie) or the token id (bearer) */
  readonly id: string;
}

/** What the front door hands the auth-host application with each request. */
export interface AuthHostRequest {
  readonly requestId: string;
  /** `https://AUTHHOST[:port]`: the origin the dashboard is served from (CSRF checks compare against it) */
  readonly origin: string;
  /** the normalised path */
  readonly path: string;
  readonly query: URLSearchParams;
  readonly clientIp: string;
  readonly certificate: CertificateFacts;
  /** the caller: undefined when not signed in; `invalidToken` when a bearer token was sent but is unknown, revoked or expired */
  readonly principal: () => Promise<Principal | { readonly invalidToken: true } | undefined>;
  /** where to send a browser to sign in and come back to `returnTo` */
  readonly loginUrl: (returnTo: string) => string;
}

/**
 * The connector hub's endpoints on the auth host (`/.gatehouse/connector…`), wired in by the app: connectors
 * upgrade their connection there, enroll and renew their certificates. It checks who calls itself.
 */
export interface ConnectorEndpoints {
  /** whether `path` (normalised) is one of the hub's */
  owns(path: string): boolean;
  /** `GET /.gatehouse/connector` with `Upgrade: gatehouse-connector/1`: the hub takes the socket, answering 101 or a refusal */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, requestId: string): void;
  /** `POST /.gatehouse/connector/enroll` and `…/renew`: resolves false for a path that is not the hub's */
  request(req: IncomingMessage, res: ServerResponse, path: string, requestId: string): Promise<boolean>;
}

/** The dashboard and API: answers the request and resolves true when it owns the path, else resolves false. */
export interface AuthHostApp {
  handle(req: IncomingMessage, res: ServerResponse, request: AuthHostRequest): Promise<boolean>;
}
