/**
 * The only description of Gatehouse's configuration file. Everything else (the loader, `gatehouse check`,
 * the committed JSON Schema) is derived from it. Unknown keys are errors everywhere.
 */
import { z } from 'zod';
import { parseDuration, parseSize, parseListen, Secret, messageOf } from '../core/index.ts';

const duration = (example: string) =>
  z
    .string()
    .meta({ description: `a duration such as ${example}`, pattern: '^(\\d+(\\.\\d+)?(ms|s|m|h|d))+$' })
    .transform((text, ctx) => {
      try {
        return parseDuration(text);
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: messageOf(err) });
        return z.NEVER;
      }
    });

const size = z
  .union([z.string(), z.number().int().nonnegative()])
  .meta({ description: 'a size such as 512k, 10m, 1g, or a number of bytes' })
  .transform((text, ctx) => {
    try {
      return parseSize(text);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: messageOf(err) });
      return z.NEVER;
    }
  });

const listen = z
  .string()
  .meta({ description: 'HOST:PORT to listen on, e.g. 0.0.0.0:443' })
  .transform((text, ctx) => {
    try {
      return parseListen(text);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: messageOf(err) });
      return z.NEVER;
    }
  });

const hostName = z
  .string()
  .transform((s) => s.toLowerCase())
  .pipe(
    z
      .string()
      .regex(
        /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/,
        'must be a host name (letters, digits, hyphens and dots)',
      ),
  );

/** A route host: an exact name, or a pattern where each `*` stands for [a-z0-9-]+ inside one label. */
const hostPattern = z
  .string()
  .transform((s) => s.toLowerCase())
  .pipe(
    z
      .string()
      .regex(
        /^(?=.{1,253}$)[a-z0-9*]([a-z0-9*-]{0,61}[a-z0-9*])?(\.[a-z0-9*]([a-z0-9*-]{0,61}[a-z0-9*])?)*$/,
        'must be a host name or a pattern such as *.corp.example.com',
      ),
  );

const name = z.string().regex(/^[a-z0-9-]+$/, 'must be lower-case letters, digits and hyphens');
const email = z
  .string()
  .transform((s) => s.toLowerCase())
  .pipe(z.string().regex(/^[^@\s]+@[^@\s]+$/, 'must be an email address'));
const filePath = z.string().min(1, 'must be a file path');
const secret = z
  .string()
  .min(16, 'must be at least 16 characters')
  .transform((s) => new Secret(s));
const method = z
  .string()
  .transform((s) => s.toUpperCase())
  .pipe(z.string().regex(/^[A-Z]+$/, 'must be an HTTP method'));

const tlsVersion = z.enum(['TLSv1.2', 'TLSv1.3']);

const serverSchema = z.strictObject({
  https: listen.prefault('0.0.0.0:443').describe('TLS front door: routes, auth host, HTTPS-proxy requests'),
  http: listen.optional().describe('answers every request with 308 to https'),
  forwardProxy: listen.optional().describe('plain forward proxy for CONNECT to route hosts'),
  authHost: hostName.describe('host of the sign-in pages, dashboard, JWKS and PAC file'),
  metrics: listen.optional().describe('/metrics (Prometheus), /healthz, /readyz'),
  workers: z
    .union([z.literal('auto'), z.number().int().min(1).max(64)])
    .default('auto')
    .describe('processes sharing the listeners; auto = CPU count'),
  tls: z
    .strictObject({
      cert: filePath.describe('PEM certificate chain for the auth host and every route host'),
      key: filePath.describe('PEM private key'),
      minVersion: tlsVersion.default('TLSv1.2'),
    })
    .optional(),
  trustedProxies: z.array(z.string()).default([]).describe("CIDRs whose X-Forwarded-* headers are believed"),
  accessLog: z.boolean().default(true).describe('one JSON line per request on standard output'),
  shutdownTimeout: duration('30s').prefault('30s').describe('how long SIGTERM waits for requests to drain'),
  peer: z
    .strictObject({
      listen: listen.describe('HOST:PORT of the listener for the other Gatehouse instances (mutual TLS, internal CA certificates)'),
      advertise: z
        .string()
        .regex(/^https:\/\/[^/?#@\s]+:\d{1,5}\/?$/i, 'must be https://HOST:PORT (how the other instances reach this listener)')
        .optional()
        .describe('https://HOST:PORT the other instances dial; default: the listen address, which must then name one'),
    })
    .refine((p) => p.advertise !== undefined || !['0.0.0.0', '::'].includes(p.listen.host), {
      message: 'listen is every interface, so the other instances need to be told where to reach this one: set advertise (https://HOST:PORT)',
    })
    .optional()
    .describe('several instances on one etcd store: relays streams to connectors held by another instance'),
});

const storeSchema = z
  .strictObject({
    sqlite: z.strictObject({ path: filePath.default('./data/gatehouse.db') }).optional(),
    etcd: z
      .strictObject({
        endpoints: z
          .array(
            z
              .string()
              .regex(/^https?:\/\/[^/?#@\s]+\/?$/i, 'must be an etcd client URL: http(s)://host:port, with no path')
              .describe("an etcd member's client URL"),
          )
          .min(1)
          .describe('etcd members; calls move on to the next when one fails'),
        prefix: z.string().min(1).default('/gatehouse/').describe('every key starts with this'),
        tls: z
          .strictObject({
            ca: filePath.optional().describe("PEM CA bundle that signed the members' certificates"),
            cert: filePath.optional().describe('PEM client certificate (for --client-cert-auth)'),
            key: filePath.optional().describe('its PEM private key'),
          })
          .refine((t) => (t.cert === undefined) === (t.key === undefined), { message: 'cert and key go together' })
          .optional(),
      })
      .optional(),
  })
  .refine((s) => !s.sqlite !== !s.etcd, { message: 'choose exactly one store: sqlite or etcd' })
  .default({ sqlite: { path: './data/gatehouse.db' } });

const identitySchema = z
  .strictObject({
    oidc: z
      .strictObject({
        issuer: z.string().url(),
        clientId: z.string().min(1),
        clientSecret: z.string().transform((s) => new Secret(s)).optional(),
        scopes: z.array(z.string()).default(['openid', 'email', 'profile']),
        groupsClaim: z.string().optional(),
      })
      .optional(),
    allowedDomains: z.array(hostName).default([]),
    session: z
      .strictObject({ ttl: duration('12h').prefault('12h'), idle: duration('2h').prefault('2h') })
      .prefault({}),
    secretsKey: secret.optional(),
    admins: z.array(email).default([]),
    certificates: z
      .strictObject({
        trust: z
          .array(z.string().min(1))
          .default([])
          .describe('"internal" and/or PEM files of CAs whose client certificates are trusted'),
        crl: z.array(z.string().min(1)).default([]).describe('CRL files (PEM or DER) or http(s) URLs'),
        crlRefresh: duration('5m').prefault('5m').describe('how often CRL URLs and files are read again'),
        userField: z
          .string()
          .regex(/^[A-Za-z][A-Za-z0-9.]*$/, 'must be a subject field name such as emailAddress or CN')
          .optional()
          .describe('subject field of certificates from external CAs that names their user (e.g. emailAddress); internal-CA certificates name theirs'),
      })
      .prefault({}),
  })
  .prefault({});

const locationSchema = z.strictObject({
  methods: z.array(method).optional().describe('any method when absent'),
  path: z.string().startsWith('/', 'must start with /'),
});

const upstreamSchema = z
  .strictObject({
    hostHeader: z.string().min(1).optional().describe('Host sent upstream; default the upstream host; "preserve" keeps the client\'s'),
    tls: z
      .strictObject({
        ca: filePath.optional().describe('PEM CA bundle that signed the upstream certificate'),
        serverName: z.string().optional().describe('SNI and name to verify'),
        insecureSkipVerify: z.boolean().default(false),
      })
      .prefault({}),
    timeouts: z
      .strictObject({
        connect: duration('2s').prefault('2s'),
        send: duration('60s').prefault('60s'),
        read: duration('180s').prefault('180s'),
      })
      .prefault({}),
    maxBodySize: size.prefault('10m'),
    rewriteRedirects: z.boolean().default(true),
    allowLoopback: z.boolean().default(false).describe('a templated upstream may resolve to loopback/link-local'),
  })
  .prefault({});

const routeSchema = z.strictObject({
  name,
  host: hostPattern,
  aliases: z.array(hostName).default([]),
  to: z.string().min(1).optional().describe('http(s) upstream URL, may use {1}, {2}…; or connector:NAME'),
  tcp: z.string().min(1).optional().describe('HOST:PORT of a TCP service, or connector:NAME'),
  auth: z.enum(['login', 'certificate', 'login+certificate', 'public']).default('login'),
  allow: z
    .strictObject({
      roles: z.array(name).default([]),
      users: z.array(email).default([]),
      domains: z.array(hostName).default([]),
      certificateSubject: z.record(z.string(), z.union([z.string(), z.array(z.string())])).optional(),
    })
    .optional(),
  permissions: z
    .array(z.strictObject({ name, locations: z.array(locationSchema).min(1) }))
    .default([]),
  upstream: upstreamSchema,
  identityHeaders: z.boolean().default(true),
});

const roleSchema = z.strictObject({
  name,
  description: z.string().default(''),
  grants: z.array(z.string().regex(/^[a-z0-9-]+(:[a-z0-9-]+)?$/, 'must be ROUTE or ROUTE:PERMISSION')).default([]),
  groups: z.array(z.string()).default([]),
  members: z.array(email).default([]),
  admins: z.array(email).default([]),
});

export const configSchema = z.strictObject({
  server: serverSchema,
  store: storeSchema,
  identity: identitySchema,
  routes: z.array(routeSchema).default([]),
  roles: z.array(roleSchema).default([]),
  connectors: z.array(z.strictObject({ name })).default([]),
});

export type Config = z.output<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;
export type RouteConfig = Config['routes'][number];
export type RoleConfig = Config['roles'][number];
export type UpstreamConfig = RouteConfig['upstream'];
