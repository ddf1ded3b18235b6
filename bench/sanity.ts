/**
 * Before anything is measured: every target answers `200 ok`, both proxies send the backend the same
 * headers, and both refuse the mTLS route without a certificate and with a certificate whose subject does
 * not match, so the two proxies really do the same work. For Gatehouse's login route (case 3): the session
 * cookie lets wrk through, the backend receives X-Gatehouse-User/-Roles and an assertion that verifies
 * against Gatehouse's JWKS, and without the cookie (or with a tampered one) the route answers 401/302.
 */
import { Agent, request } from 'node:https';
import { request as httpRequest, type OutgoingHttpHeaders } from 'node:http';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet } from 'jose';
import { LOGIN_HOST, LOGIN_ROLE, LOGIN_USER, MTLS_HOST, OPEN_HOST, type Targets } from './targets.ts';
import { runWrk } from './wrk.ts';
import type { CertFiles } from '../test/harness/certs.ts';

/** The auth host in the Gatehouse configuration (targets.ts), where the JWKS is served. */
const AUTH_HOST = 'gate.bench.test';

interface Answer {
  readonly status: number;
  readonly body: string;
  readonly location?: string | undefined;
}

function get(port: number, host: string, path: string, ca: string, client?: CertFiles, extra: OutgoingHttpHeaders = {}, agent: Agent | false = false): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        // Node sends no SNI for an IP (and warns when asked to); Gatehouse then skips its SNI = Host check
        ...(isIP(host) ? {} : { servername: host }),
        path,
        headers: { host: `${host}:${port}`, 'x-forwarded-for': '203.0.113.9', ...extra },
        ca,
        ...(client ? { cert: client.certPem, key: client.keyPem } : {}),
        agent,
        timeout: 5000,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, location: res.headers.location }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

function getPlain(port: number, path: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    httpRequest({ host: '127.0.0.1', port, path, agent: false, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    })
      .on('error', reject)
      .end();
  });
}

/** A refusal is a 4xx answer or a failed handshake. */
async function refused(p: Promise<Answer>): Promise<string> {
  try {
    const a = await p;
    return a.status >= 400 && a.status < 500 ? String(a.status) : '';
  } catch (err) {
    return `handshake refused (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`;
  }
}

/** Throws with every mismatch; returns a short description of what was checked. */
export async function checkTargets(t: Targets): Promise<string[]> {
  const ca = readFileSync(t.caCert, 'utf8');
  const problems: string[] = [];
  const notes: string[] = [];
  const direct = await getPlain(t.backendPort, '/');
  if (direct.status !== 200 || direct.body !== 'ok') problems.push(`backend: ${direct.status} ${direct.body}`);
  const proxies = [
    ['nginx', t.nginxPort],
    ['gatehouse', t.gatehousePort],
  ] as const;
  for (const [name, port] of proxies) {
    if (port === undefined) continue;
    const open = await get(port, OPEN_HOST, '/', ca);
    if (open.status !== 200 || open.body !== 'ok') problems.push(`${name} ${OPEN_HOST}: ${open.status} ${open.body}`);
    const mtls = await get(port, MTLS_HOST, '/', ca, t.client);
    if (mtls.status !== 200 || mtls.body !== 'ok') problems.push(`${name} ${MTLS_HOST} with certificate: ${mtls.status} ${mtls.body}`);
    const none = await refused(get(port, MTLS_HOST, '/', ca));
    if (!none) problems.push(`${name} ${MTLS_HOST} without a certificate was not refused`);
    const wrong = await refused(get(port, MTLS_HOST, '/', ca, t.stranger));
    if (!wrong) problems.push(`${name} ${MTLS_HOST} with a non-matching subject was not refused`);
    const headers = await get(port, OPEN_HOST, '/headers', ca);
    const normalised = headers.body.replace(/rid=\S+/, 'rid=<id>').replace(new RegExp(`:${port}\\b`, 'g'), ':<port>');
    const mtlsHeaders = await get(port, MTLS_HOST, '/headers', ca, t.client);
    const device = /device=(\S*)/.exec(mtlsHeaders.body)?.[1] ?? '';
    notes.push(`${name}: no cert → ${none}; wrong subject → ${wrong}; upstream saw: ${normalised}; with a certificate also device=${device ? '<serial>' : '(none)'}`);
    if (!device) problems.push(`${name} did not send X-Gatehouse-Device for a valid client certificate: ${mtlsHeaders.body}`);
    if (!/rid=\S/.test(headers.body) || !/xff=127\.0\.0\.1 /.test(headers.body) || !/proto=https /.test(headers.body)) {
      problems.push(`${name} did not send the expected X-Forwarded-* / X-Request-Id headers: ${headers.body}`);
    }
  }
  notes.push(await checkLogin(t, ca, problems));
  if (problems.length > 0) throw new Error(`the targets are not equivalent:\n  ${problems.join('\n  ')}`);
  return notes;
}

/** Case 3: Gatehouse's `auth: login` route with the session cookie made in targets.ts. */
async function checkLogin(t: Targets, ca: string, problems: string[]): Promise<string> {
  const port = t.gatehousePort;
  const cookie = { cookie: t.loginCookie };
  // one connection, so one worker: the assertion cache is per worker process
  const agent = new Agent({ keepAlive: true, maxSockets: 1, ca });
  const first = await get(port, LOGIN_HOST, '/identity', ca, undefined, cookie, agent);
  const second = await get(port, LOGIN_HOST, '/identity', ca, undefined, cookie, agent);
  agent.destroy();
  const field = (body: string, name: string) => new RegExp(`(?:^| )${name}=(\\S*)`).exec(body)?.[1] ?? '';
  const jwt = field(first.body, 'jwt');
  if (first.status !== 200) problems.push(`gatehouse ${LOGIN_HOST} with the session cookie: ${first.status} ${first.body}`);
  if (field(first.body, 'cookie') !== '') problems.push(`gatehouse forwarded its own session cookie upstream: ${first.body}`);
  if (!t.identityHeaders) {
    // BENCH_IDENTITY_HEADERS=off: the session is still required, but nothing about it goes upstream
    if (field(first.body, 'user') || field(first.body, 'roles') || jwt) problems.push(`identity headers are off but the upstream saw some: ${first.body}`);
  } else {
    if (field(first.body, 'user') !== LOGIN_USER) problems.push(`gatehouse did not send X-Gatehouse-User: ${LOGIN_USER}: ${first.body}`);
    if (field(first.body, 'roles') !== LOGIN_ROLE) problems.push(`gatehouse did not send X-Gatehouse-Roles: ${LOGIN_ROLE}: ${first.body}`);
  }
  let claims = '';
  if (!t.identityHeaders) {
    claims = 'identity headers off';
  } else if (!jwt) {
    problems.push(`gatehouse did not send X-Gatehouse-Jwt-Assertion: ${first.body}`);
  } else {
    try {
      const jwks = JSON.parse((await get(port, AUTH_HOST, '/.well-known/jwks.json', ca)).body) as JSONWebKeySet;
      const { payload, protectedHeader } = await jwtVerify(jwt, createLocalJWKSet(jwks), { audience: LOGIN_HOST, subject: LOGIN_USER, algorithms: ['ES256'] });
      if (!Array.isArray(payload.roles) || !payload.roles.includes(LOGIN_ROLE)) problems.push(`the assertion has no role ${LOGIN_ROLE}: ${JSON.stringify(payload)}`);
      claims = `${protectedHeader.alg}, iss ${payload.iss}, aud ${String(payload.aud)}, sub ${payload.sub}, roles ${JSON.stringify(payload.roles)}, ${jwt.length} bytes`;
    } catch (err) {
      problems.push(`the assertion does not verify against ${AUTH_HOST}'s JWKS: ${(err as Error).message}`);
    }
  }
  const cached = jwt !== '' && field(second.body, 'jwt') === jwt;
  const api = await get(port, LOGIN_HOST, '/', ca);
  const browser = await get(port, LOGIN_HOST, '/', ca, undefined, { accept: 'text/html' });
  const tampered = await get(port, LOGIN_HOST, '/', ca, undefined, { cookie: `${t.loginCookie.slice(0, -2)}${t.loginCookie.endsWith('AA') ? 'BB' : 'AA'}` });
  if (api.status !== 401) problems.push(`gatehouse ${LOGIN_HOST} without a cookie (API client) answered ${api.status}, not 401`);
  if (browser.status !== 302 || !browser.location?.includes(`${AUTH_HOST}:${port}/.gatehouse/login`)) {
    problems.push(`gatehouse ${LOGIN_HOST} without a cookie (browser) answered ${browser.status} ${browser.location ?? ''}, not a 302 to sign in`);
  }
  if (tampered.status !== 401) problems.push(`gatehouse ${LOGIN_HOST} with a tampered cookie answered ${tampered.status}, not 401`);
  // the path wrk measures (SNI = LOGIN_HOST, keep-alive), briefly: all 2xx with the cookie, none without
  const url = `https://${LOGIN_HOST}:${port}/`;
  const withCookie = await runWrk({ url, threads: 1, connections: 2, durationS: 1, headers: [`Cookie: ${t.loginCookie}`] });
  const without = await runWrk({ url, threads: 1, connections: 2, durationS: 1 });
  if (withCookie.errors > 0 || withCookie.requests === 0) problems.push(`wrk with the session cookie: ${withCookie.errors} errors in ${withCookie.requests} requests`);
  if (without.errors !== without.requests) problems.push(`wrk without the cookie: only ${without.errors} of ${without.requests} requests refused`);
  return (
    `gatehouse login route (${LOGIN_HOST}): with the session cookie 200, upstream saw user=${field(first.body, 'user')} ` +
    `roles=${field(first.body, 'roles')}, no cookie, and ${t.identityHeaders ? `an assertion (${claims || 'none'}) that verifies against the JWKS; ` +
    `same assertion on the next request over the connection (cached): ${cached ? 'yes' : 'no'}` : 'no assertion (BENCH_IDENTITY_HEADERS=off)'}; without a cookie → ${api.status} (API) / ${browser.status} (browser); ` +
    `tampered cookie → ${tampered.status}; wrk 1 s with the cookie ${withCookie.requests} requests, ${withCookie.errors} refused; without ${without.requests}, ${without.errors} refused`
  );
}
