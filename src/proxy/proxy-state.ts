/**
 * What the proxy reads from the current configuration. It is immutable: a reload builds a new one beside
 * the old and swaps it; a request reads it once and keeps it.
 */
import type { BlockList } from 'node:net';
import type { AssertionSigner, ClientCertificates } from '../authn/index.ts';
import type { CompiledPolicy } from '../policy/index.ts';
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
}
