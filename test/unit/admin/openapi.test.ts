/**
 * docs/openapi.yaml is well-formed: OpenAPI 3.1, every operation named, answered and exemplified, every `$ref`
 * resolvable, and every example consistent with its schema (a small recursive check, not a full JSON Schema
 * validator: types, enums, required keys, `additionalProperties: false`, patterns, date-times). And it describes
 * the implementation: the operations are exactly `API_ROUTES`, and what each operation answers over a real
 * directory fits the documented schema with no undocumented field.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { parseDocument } from 'yaml';
import { API_ROUTES } from '../../../src/admin/api.ts';
import type { ApiCall } from '../../../src/admin/api-call.ts';
import type { AdminOptions } from '../../../src/admin/options.ts';
import { Keyring, SessionBook } from '../../../src/authn/index.ts';
import { CA_MIRROR_KINDS, InternalCa } from '../../../src/ca/index.ts';
import { Logger, Registry, isErrorCode, statusOf } from '../../../src/core/index.ts';
import { ConnectorHub, PRESENCE_KIND, type ConnectorPresence } from '../../../src/connector/index.ts';
import { DIRECTORY_MIRROR_KINDS, Directory } from '../../../src/directory/index.ts';
import { compilePolicy, type UserFacts } from '../../../src/policy/index.ts';
import { normalizePath, type AuthHostRequest, type Principal } from '../../../src/proxy/index.ts';
import { StoreMirror, openSqliteStore } from '../../../src/store/index.ts';
import { TUNNEL_MIRROR_KINDS, TunnelRegistry } from '../../../src/tunnel/index.ts';
import { tempDir } from '../../harness/tmp.ts';

const FILE = new URL('../../../docs/openapi.yaml', import.meta.url);
/** The operations of the table in docs/api.md. */
const DOCUMENTED = [
  'GET /me',
  'GET /roles',
  'GET /roles/{role}/members',
  'PUT /roles/{role}/members/{email}',
  'DELETE /roles/{role}/members/{email}',
  'PUT /roles/{role}/admins/{email}',
  'DELETE /roles/{role}/admins/{email}',
  'POST /access-requests',
  'GET /access-requests',
  'POST /access-requests/{id}/approve',
  'POST /access-requests/{id}/decline',
  'GET /users',
  'POST /users/{email}/disable',
  'POST /users/{email}/enable',
  'GET /sessions',
  'DELETE /sessions/{id}',
  'GET /tokens',
  'POST /tokens',
  'DELETE /tokens/{id}',
  'GET /tunnels',
  'DELETE /tunnels/{id}',
  'GET /certificates',
  'POST /certificates',
  'POST /certificates/{serial}/revoke',
  'GET /connectors',
  'POST /connectors/{name}/enrollment',
  'GET /service-accounts',
  'POST /service-accounts',
  'DELETE /service-accounts/{name}',
  'GET /audit',
  'POST /explain',
];

const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'] as const;

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Obj = { [key: string]: Json };

function isObj(v: unknown): v is Obj {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function load(): Obj {
  const doc = parseDocument(readFileSync(FILE, 'utf8'), { uniqueKeys: true });
  assert.deepEqual(doc.errors.map(String), [], 'YAML errors');
  assert.deepEqual(doc.warnings.map(String), [], 'YAML warnings');
  const spec = doc.toJS({ maxAliasCount: -1 }) as unknown;
  assert.ok(isObj(spec), 'the document is a mapping');
  return spec;
}

const spec = load();

/** The value a local `$ref` (`#/a/b~1c`) points at, or undefined. */
function pointer(ref: string): Json | undefined {
  if (!ref.startsWith('#/')) return undefined;
  let v: Json | undefined = spec;
  for (const raw of ref.slice(2).split('/')) {
    const key = decodeURIComponent(raw).replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(v)) v = v[Number(key)];
    else if (isObj(v) && Object.hasOwn(v, key)) v = v[key];
    else return undefined;
  }
  return v;
}

/** Follows `$ref`s until an object without one. */
function deref(v: Json | undefined): Json | undefined {
  const seen = new Set<string>();
  while (isObj(v) && typeof v.$ref === 'string') {
    assert.ok(!seen.has(v.$ref), `circular $ref ${v.$ref}`);
    seen.add(v.$ref);
    v = pointer(v.$ref);
  }
  return v;
}

/** Every `$ref` in the document with where it is. */
function refs(v: Json, at = '#'): Array<{ at: string; ref: Json }> {
  const out: Array<{ at: string; ref: Json }> = [];
  if (Array.isArray(v)) v.forEach((x, i) => out.push(...refs(x, `${at}/${i}`)));
  else if (isObj(v)) {
    for (const [k, x] of Object.entries(v)) {
      if (k === '$ref') out.push({ at, ref: x });
      else out.push(...refs(x, `${at}/${k.replace(/~/g, '~0').replace(/\//g, '~1')}`));
    }
  }
  return out;
}

interface Operation {
  readonly method: string;
  readonly path: string;
  readonly op: Obj;
}

function operations(): Operation[] {
  const out: Operation[] = [];
  const paths = spec.paths;
  assert.ok(isObj(paths), 'paths');
  for (const [path, item] of Object.entries(paths)) {
    assert.ok(isObj(item), `path item ${path}`);
    for (const method of METHODS) {
      const op = item[method];
      if (op === undefined) continue;
      assert.ok(isObj(op), `${method} ${path}`);
      out.push({ method: method.toUpperCase(), path, op });
    }
  }
  return out;
}

const ops = operations();
const label = (o: Operation) => `${o.method} ${o.path}`;

function responsesOf(o: Operation): Array<[string, Obj]> {
  assert.ok(isObj(o.op.responses), `${label(o)}: responses`);
  return Object.entries(o.op.responses).map(([status, r]) => {
    const resolved = deref(r);
    assert.ok(isObj(resolved), `${label(o)} ${status}: the response resolves`);
    return [status, resolved];
  });
}

function mediaTypes(holder: Obj): Array<[string, Obj]> {
  if (!isObj(holder.content)) return [];
  return Object.entries(holder.content).map(([type, m]) => {
    assert.ok(isObj(m), `media type ${type}`);
    return [type, m];
  });
}

/** The examples of a media type or parameter: `example`, or the `value`s of `examples`. */
function examplesOf(holder: Obj): Json[] {
  const out: Json[] = [];
  if (holder.example !== undefined) out.push(holder.example);
  if (isObj(holder.examples)) {
    for (const e of Object.values(holder.examples)) {
      const resolved = deref(e);
      if (isObj(resolved) && resolved.value !== undefined) out.push(resolved.value);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------- a small validator

const dateTime = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})$/;

function typeOf(v: Json): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

/**
 * What is wrong with `value` as an instance of `schema` (empty: nothing found). `strict`: an object schema with
 * `properties` and no `additionalProperties` is taken as closed (for answers of the implementation: no field the
 * file does not document).
 */
function problems(schemaIn: Json | undefined, value: Json, at = '$', strict = false): string[] {
  const schema = deref(schemaIn);
  if (schema === undefined) return [`${at}: the schema does not resolve`];
  if (schema === true || !isObj(schema)) return [];
  const out: string[] = [];
  if (Array.isArray(schema.allOf)) for (const s of schema.allOf) out.push(...problems(s, value, at, strict));
  if (Array.isArray(schema.anyOf) && !schema.anyOf.some((s) => problems(s, value, at, strict).length === 0)) {
    out.push(`${at}: matches none of anyOf`);
  }
  if (Array.isArray(schema.oneOf) && schema.oneOf.filter((s) => problems(s, value, at, strict).length === 0).length !== 1) {
    out.push(`${at}: matches not exactly one of oneOf`);
  }
  if (schema.not !== undefined && problems(schema.not, value, at, strict).length === 0) out.push(`${at}: matches "not"`);
  if (schema.type !== undefined) {
    const types = Array.isArray(schema.type) ? schema.type : [schema.type];
    const t = typeOf(value);
    if (!types.includes(t) && !(t === 'integer' && types.includes('number'))) {
      return [...out, `${at}: is ${t}, not ${types.join(' or ')}`];
    }
  }
  if (Array.isArray(schema.enum) && !schema.enum.some((e) => JSON.stringify(e) === JSON.stringify(value))) {
    out.push(`${at}: ${JSON.stringify(value)} is not one of ${JSON.stringify(schema.enum)}`);
  }
  if (typeof value === 'string') {
    if (typeof schema.pattern === 'string' && !new RegExp(schema.pattern).test(value)) out.push(`${at}: "${value}" does not match ${schema.pattern}`);
    if (schema.format === 'date-time' && !(dateTime.test(value) && !Number.isNaN(Date.parse(value)))) out.push(`${at}: "${value}" is not a date-time`);
    if (schema.format === 'uri' && !URL.canParse(value)) out.push(`${at}: "${value}" is not a URI`);
    if (typeof schema.minLength === 'number' && value.length < schema.minLength) out.push(`${at}: shorter than ${schema.minLength}`);
    if (typeof schema.maxLength === 'number' && value.length > schema.maxLength) out.push(`${at}: longer than ${schema.maxLength}`);
  }
  if (typeof value === 'number') {
    if (typeof schema.minimum === 'number' && value < schema.minimum) out.push(`${at}: below ${schema.minimum}`);
    if (typeof schema.maximum === 'number' && value > schema.maximum) out.push(`${at}: above ${schema.maximum}`);
  }
  if (Array.isArray(value) && schema.items !== undefined) value.forEach((v, i) => out.push(...problems(schema.items, v, `${at}[${i}]`, strict)));
  if (isObj(value)) {
    const props = isObj(schema.properties) ? schema.properties : {};
    if (Array.isArray(schema.required)) {
      for (const k of schema.required) if (typeof k === 'string' && !Object.hasOwn(value, k)) out.push(`${at}: lacks required "${k}"`);
    }
    for (const [k, v] of Object.entries(value)) {
      if (Object.hasOwn(props, k)) out.push(...problems(props[k], v, `${at}.${k}`, strict));
      else if (schema.additionalProperties === false) out.push(`${at}: "${k}" is not allowed (additionalProperties: false)`);
      else if (isObj(schema.additionalProperties)) out.push(...problems(schema.additionalProperties, v, `${at}.${k}`, strict));
      else if (strict && schema.additionalProperties === undefined && isObj(schema.properties)) out.push(`${at}: "${k}" is not documented`);
    }
  }
  return out;
}

/** Checks every example of a media type against its schema (an ND-JSON example line by line). */
function checkMediaExamples(where: string, type: string, media: Obj): void {
  for (const example of examplesOf(media)) {
    if (type === 'application/x-ndjson') {
      assert.equal(typeof example, 'string', `${where}: an ND-JSON example is text`);
      const lineSchema = isObj(media.schema) ? media.schema['x-gatehouse-line-schema'] : undefined;
      assert.ok(lineSchema !== undefined, `${where}: the ND-JSON schema names the schema of a line`);
      const lines = (example as string).split('\n').filter((l) => l !== '');
      assert.ok(lines.length > 0, `${where}: the ND-JSON example has lines`);
      for (const [i, line] of lines.entries()) assert.deepEqual(problems(lineSchema, JSON.parse(line) as Json, `line ${i + 1}`, true), [], where);
    } else {
      assert.deepEqual(problems(media.schema, example, '$', true), [], `${where} (${type})`);
    }
  }
}

// ---------------------------------------------------------------------------------------------- the tests

describe('docs/openapi.yaml', () => {
  it('is OpenAPI 3.1 served at /api/v1 of the auth host', () => {
    assert.equal(typeof spec.openapi, 'string');
    assert.match(spec.openapi as string, /^3\.1\./);
    assert.ok(isObj(spec.info) && typeof spec.info.title === 'string' && typeof spec.info.version === 'string', 'info.title and info.version');
    assert.ok(Array.isArray(spec.servers) && spec.servers.length === 1 && isObj(spec.servers[0]), 'one server');
    assert.equal(spec.servers[0].url, 'https://gatehouse.example.com/api/v1');
  });

  it('declares the bearer and session (cookie) schemes, and the CSRF rule', () => {
    const schemes = isObj(spec.components) ? spec.components.securitySchemes : undefined;
    assert.ok(isObj(schemes), 'components.securitySchemes');
    assert.ok(isObj(schemes.bearer) && schemes.bearer.type === 'http' && schemes.bearer.scheme === 'bearer', 'bearer: http bearer');
    assert.match(String(schemes.bearer.bearerFormat ?? schemes.bearer.description), /gh_/);
    assert.ok(isObj(schemes.session), 'session');
    assert.equal(schemes.session.type, 'apiKey');
    assert.equal(schemes.session.in, 'cookie');
    assert.equal(schemes.session.name, '__Host-gatehouse');
    const csrf = String(schemes.session.description);
    for (const word of ['ERR_CSRF', 'Sec-Fetch-Site', 'same-origin', 'Origin']) assert.ok(csrf.includes(word), `the session scheme's description mentions ${word}`);
    assert.deepEqual(spec.security, [{ bearer: [] }, { session: [] }]);
  });

  it('every $ref resolves', () => {
    const all = refs(spec);
    assert.ok(all.length > 0);
    for (const { at, ref } of all) {
      assert.equal(typeof ref, 'string', `${at}: $ref is a string`);
      assert.ok((ref as string).startsWith('#/'), `${at}: ${String(ref)} is a local reference`);
      assert.notEqual(pointer(ref as string), undefined, `${at}: ${String(ref)} resolves`);
    }
  });

  it('every operation has a summary, a description, a unique operationId and a 2xx answer', () => {
    const ids = new Map<string, string>();
    for (const o of ops) {
      assert.ok(typeof o.op.summary === 'string' && o.op.summary.trim() !== '', `${label(o)}: summary`);
      assert.ok(typeof o.op.description === 'string' && /\*\*Who:\*\*/.test(o.op.description), `${label(o)}: description says who may call it`);
      assert.ok(typeof o.op.operationId === 'string' && /^[A-Za-z][A-Za-z0-9]*$/.test(o.op.operationId), `${label(o)}: operationId`);
      const id = o.op.operationId as string;
      assert.ok(!ids.has(id), `${label(o)}: operationId ${id} is also used by ${ids.get(id)}`);
      ids.set(id, label(o));
      assert.ok(responsesOf(o).some(([status]) => /^2\d\d$/.test(status)), `${label(o)}: a 2xx response`);
    }
  });

  it('every path parameter is declared, and only those', () => {
    const paths = spec.paths as Obj;
    for (const o of ops) {
      const item = paths[o.path] as Obj;
      const params = [...((item.parameters as Json[] | undefined) ?? []), ...((o.op.parameters as Json[] | undefined) ?? [])].map(deref);
      const inPath = params.filter((p): p is Obj => isObj(p) && p.in === 'path').map((p) => p.name);
      const templated = [...o.path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]);
      assert.deepEqual([...inPath].sort(), [...templated].sort(), `${label(o)}: path parameters`);
      for (const p of params) {
        assert.ok(isObj(p), `${label(o)}: parameter`);
        if (p.in === 'path') assert.equal(p.required, true, `${label(o)}: path parameter ${String(p.name)} is required`);
        for (const example of examplesOf(p)) assert.deepEqual(problems(p.schema, example), [], `${label(o)}: example of parameter ${String(p.name)}`);
      }
    }
  });

  it('every request body is JSON with a closed schema and an example that fits it', () => {
    for (const o of ops) {
      if (o.op.requestBody === undefined) continue;
      const body = deref(o.op.requestBody);
      assert.ok(isObj(body), `${label(o)}: requestBody`);
      const media = mediaTypes(body);
      assert.deepEqual(media.map(([t]) => t), ['application/json'], `${label(o)}: the body is application/json`);
      const [, json] = media[0]!;
      const schema = deref(json.schema);
      assert.ok(isObj(schema) && schema.type === 'object', `${label(o)}: the body is an object`);
      assert.equal(schema.additionalProperties, false, `${label(o)}: unknown fields are refused`);
      assert.ok(examplesOf(json).length > 0, `${label(o)}: an example body`);
      checkMediaExamples(`${label(o)} request body`, 'application/json', json);
      const statuses = responsesOf(o).map(([s]) => s);
      assert.ok(statuses.includes('400') && statuses.includes('413'), `${label(o)}: a body can be refused with 400 and 413`);
    }
  });

  it('every 2xx answer with content has an example that fits its schema', () => {
    for (const o of ops) {
      for (const [status, response] of responsesOf(o)) {
        if (!/^2\d\d$/.test(status)) continue;
        const media = mediaTypes(response);
        if (status === '204') {
          assert.equal(media.length, 0, `${label(o)}: 204 has no content`);
          continue;
        }
        assert.ok(media.length > 0, `${label(o)} ${status}: content`);
        for (const [type, m] of media) {
          assert.ok(m.schema !== undefined, `${label(o)} ${status} ${type}: schema`);
          assert.ok(examplesOf(m).length > 0, `${label(o)} ${status} ${type}: example`);
          checkMediaExamples(`${label(o)} ${status}`, type, m);
        }
      }
    }
  });

  it('errors are the shared Error shape, with codes from its enum', () => {
    const components = spec.components as Obj;
    const error = deref((components.schemas as Obj).Error);
    assert.ok(isObj(error));
    const inner = deref((error.properties as Obj).error) as Obj;
    assert.deepEqual([...(inner.required as string[])].sort(), ['code', 'message', 'requestId']);
    const codes = (deref((inner.properties as Obj).code) as Obj).enum as string[];
    for (const code of ['ERR_BAD_REQUEST', 'ERR_NOT_SIGNED_IN', 'ERR_TOKEN_INVALID', 'ERR_USER_DISABLED', 'ERR_CSRF', 'ERR_FORBIDDEN', 'ERR_NOT_FOUND', 'ERR_METHOD_NOT_ALLOWED', 'ERR_CONFLICT', 'ERR_BODY_TOO_LARGE']) {
      assert.ok(codes.includes(code), `the Error code enum has ${code}`);
    }
    for (const o of ops) {
      const statuses = new Set<string>();
      for (const [status, response] of responsesOf(o)) {
        statuses.add(status);
        if (/^2\d\d$/.test(status)) continue;
        assert.match(status, /^(400|401|403|404|405|409|413|503)$/, `${label(o)}: error status ${status}`);
        const media = mediaTypes(response);
        assert.deepEqual(media.map(([t]) => t), ['application/json'], `${label(o)} ${status}: JSON`);
        const [, json] = media[0]!;
        assert.deepEqual(json.schema, { $ref: '#/components/schemas/Error' }, `${label(o)} ${status}: the Error schema`);
        assert.ok(examplesOf(json).length > 0, `${label(o)} ${status}: an example`);
        checkMediaExamples(`${label(o)} ${status}`, 'application/json', json);
        for (const example of examplesOf(json)) {
          const code = ((example as Obj).error as Obj).code as string;
          assert.ok(isErrorCode(code), `${label(o)} ${status}: ${code} is an error code of src/core`);
          assert.equal(Number(status), statusOf(code), `${label(o)} ${status}: the example's ${code} has that status`);
        }
      }
      for (const status of ['401', '403', '405']) assert.ok(statuses.has(status), `${label(o)}: ${status}`);
      if (!['GET', 'HEAD'].includes(o.method)) {
        const forbidden = deref((o.op.responses as Obj)['403']) as Obj;
        assert.match(String(forbidden.description), /ERR_CSRF/, `${label(o)}: a change can be refused with ERR_CSRF`);
      }
      if (o.path.includes('{')) assert.ok(statuses.has('404') || o.path.startsWith('/users/{email}/disable'), `${label(o)}: 404 for an unknown ${o.path}`);
    }
  });

  it('every example of a component schema fits the schema', () => {
    const schemas = (spec.components as Obj).schemas as Obj;
    for (const name of ['Me', 'RouteAccess', 'Role', 'RoleAdmin', 'Membership', 'AccessRequest', 'User', 'Session', 'Token', 'TokenIssued', 'Certificate', 'CertificateIssued', 'Connector', 'ConnectorSession', 'ConnectorEnrollment', 'ServiceAccount', 'AuditRecord', 'Explanation', 'Error']) {
      assert.ok(isObj(schemas[name]), `components.schemas.${name}`);
    }
    let checked = 0;
    for (const [name, schema] of Object.entries(schemas)) {
      assert.ok(isObj(schema), name);
      assert.ok(Array.isArray(schema.examples) && schema.examples.length > 0, `components.schemas.${name}: examples`);
      for (const example of schema.examples) {
        assert.deepEqual(problems(schema, example, '$', true), [], `components.schemas.${name}`);
        checked++;
      }
    }
    assert.ok(checked >= 14);
  });

  it('the checker itself finds a missing required key, an unknown field and a wrong type', () => {
    const schemas = (spec.components as Obj).schemas as Obj;
    assert.deepEqual(problems(schemas.Token, { id: 'x', user: 'u', name: 'n', kind: 'api', created: '2026-11-22T18:00:00.000Z' }), ['$: lacks required "expires"']);
    assert.deepEqual(problems(schemas.ApproveBody, { duration: '8h', extra: 1 }), ['$: "extra" is not allowed (additionalProperties: false)']);
    assert.equal(problems(schemas.Membership, { ...((schemas.Membership as Obj).examples as Obj[])[0], expires: 5 }).length, 1);
    assert.equal(problems(schemas.AddMemberBody, { expires: '2026-11-29T18:00:00.000Z', duration: '7d' }).length, 1, 'expires and duration together');
    assert.equal(problems(schemas.Duration, '7 days').length, 1);
  });

  it('documents every operation of docs/api.md, and nothing else', () => {
    assert.deepEqual(ops.map(label).sort(), [...DOCUMENTED].sort());
  });

  it('GET /audit answers JSON pages and ND-JSON streams', () => {
    const audit = ops.find((o) => label(o) === 'GET /audit');
    assert.ok(audit);
    const ok = responsesOf(audit).find(([s]) => s === '200')![1];
    assert.deepEqual(mediaTypes(ok).map(([t]) => t).sort(), ['application/json', 'application/x-ndjson']);
    const json = deref((ok.content as Obj)['application/json']) as Obj;
    assert.deepEqual([...((deref(json.schema) as Obj).required as string[])].sort(), ['next', 'records']);
    const names = ((audit.op.parameters as Json[]) ?? []).map(deref).map((p) => (p as Obj).name);
    for (const q of ['since', 'before', 'limit', 'actor', 'action', 'target']) assert.ok(names.includes(q), `GET /audit takes ?${q}`);
  });

  it('documents exactly the operations of API_ROUTES (src/admin/api.ts), each with its audience', () => {
    const routes = API_ROUTES.map((r) => `${r.method.toUpperCase()} ${r.path}`);
    assert.equal(new Set(routes).size, routes.length, 'API_ROUTES has no duplicates');
    assert.deepEqual(ops.map(label).sort(), [...routes].sort());
    for (const r of API_ROUTES) {
      const o = ops.find((x) => label(x) === `${r.method} ${r.path}`)!;
      assert.equal(o.op['x-gatehouse-who'], r.who, `${label(o)}: x-gatehouse-who is the route's audience`);
    }
  });
});

// ---------------------------------------------------------------------------------------------- the implementation

/** The 2xx JSON schemas of an operation of the file, by status. */
function answerSchemas(method: string, path: string): Map<string, Json> {
  const o = ops.find((x) => x.method === method && x.path === path);
  assert.ok(o, `${method} ${path} is documented`);
  const out = new Map<string, Json>();
  for (const [status, response] of responsesOf(o)) {
    if (!/^2\d\d$/.test(status)) continue;
    const json = isObj(response.content) ? response.content['application/json'] : undefined;
    out.set(status, isObj(json) ? (json.schema ?? null) : null);
  }
  return out;
}

/** The request-body example of an operation of the file. */
function bodyExample(method: string, path: string): Json | undefined {
  const o = ops.find((x) => x.method === method && x.path === path);
  const body = o && deref(o.op.requestBody);
  const json = isObj(body) && isObj(body.content) ? body.content['application/json'] : undefined;
  return isObj(json) ? json.example : undefined;
}

describe('docs/openapi.yaml describes what the implementation answers', () => {
  const tmp = tempDir('gatehouse-openapi-');
  const closers: Array<() => Promise<void>> = [];
  after(async () => {
    for (const close of closers.reverse()) await close().catch(() => undefined);
    tmp.cleanup();
  });

  const routesConfig = [
    { name: 'grafana', host: 'grafana.corp.example.com', auth: 'login' as const, permissions: [] },
    {
      name: 'wiki',
      host: 'wiki.corp.example.com',
      auth: 'login' as const,
      permissions: [
        { name: 'read', locations: [{ methods: ['GET'], path: '/' }] },
        { name: 'edit', locations: [{ path: '/api/pages' }] },
      ],
    },
    { name: 'apps', host: '*.apps.example.com', auth: 'login' as const, permissions: [] },
  ];
  const rolesConfig = [
    { name: 'sre', description: 'Site reliability engineers', grants: ['grafana', 'wiki:edit'], groups: ['sre'], members: [], admins: ['alice@example.com'] },
    { name: 'developer', description: '', grants: ['wiki:read'], groups: ['engineering'], members: [], admins: [] },
    { name: 'db', description: 'Databases', grants: ['apps'], groups: [], members: [], admins: [] },
  ];

  async function world() {
    const store = await openSqliteStore(join(tmp.dir, 'gatehouse.db'));
    const mirror = new StoreMirror(store, ['session', 'token', ...DIRECTORY_MIRROR_KINDS, ...CA_MIRROR_KINDS, ...TUNNEL_MIRROR_KINDS]);
    closers.push(() => store.close(), async () => mirror.close());
    await mirror.start();
    // as with identity.secretsKey configured: the keyring's key is not in the store, so a CA may be created
    const keyring = Keyring.fromSecret(Buffer.alloc(32, 7));
    const sessions = new SessionBook(store, mirror, keyring, { ttlMs: 12 * 3600_000, idleMs: 2 * 3600_000 });
    const ca = new InternalCa({ store, keyring, secretsKeyConfigured: true, mirror });
    await ca.start();
    closers.push(async () => ca.close());
    await ca.createRoot({ by: 'test', organisation: 'Acme' });
    const directory = new Directory({ store, mirror, sessions, settings: { admins: ['root@example.com'], roles: rolesConfig } });
    const policy = compilePolicy(routesConfig, rolesConfig);
    const connectors = new ConnectorHub({ store, ca, log: new Logger({ sink: { write: () => undefined } }), metrics: new Registry(), names: ['office-jenkins', 'lab-ssh'] });
    connectors.start();
    closers.push(() => connectors.destroy());
    // a live session as a worker records it
    const presence: ConnectorPresence = {
      name: 'office-jenkins',
      session: '01JDGY5M2Q8W3E4R5T6Y7U8I9O',
      address: '198.51.100.23',
      version: '0.1.0',
      target: '10.0.0.5:8080',
      serial: '0A1B2C3D4E5F60718293A4B5C6D7E8F9',
      since: Date.now(),
      streams: 2,
      worker: '1/1',
    };
    await store.put(PRESENCE_KIND, `office-jenkins/${presence.session}`, presence, { expiresAt: Date.now() + 60_000 });
    const tunnels = new TunnelRegistry({ store, mirror, metrics: new Registry(), log: new Logger({ sink: { write: () => undefined } }) });
    tunnels.start();
    closers.push(() => tunnels.destroy());
    const o = {
      tunnels,
      config: { identity: { admins: ['root@example.com'] }, routes: routesConfig, roles: rolesConfig, connectors: [{ name: 'office-jenkins' }, { name: 'lab-ssh' }] },
      connectors,
      policy,
      directory,
      sessions,
      ca,
      loginAvailable: true,
      findRoute: (host: string) => {
        const r = routesConfig.find((x) => x.host === host);
        return r && { name: r.name, config: r };
      },
      normalizePath,
    } as unknown as AdminOptions;
    return { o, directory, sessions, policy, tunnels };
  }

  it('every operation, called as the dashboard would, answers a documented status and shape', async () => {
    const { o, directory, sessions, policy, tunnels } = await world();
    const called = new Set<string>();

    const person = async (email: string, groups: string[] = []) => {
      await directory.recordSignIn(email, '198.51.100.4');
      const { session } = await sessions.create(email, groups, undefined);
      const user: UserFacts = { email, groups, roles: policy.rolesFor(email, groups, directory.rolesFromStore(email)) };
      return { email, groups, session, user };
    };
    const root = await person('root@example.com');
    const bob = await person('bob@example.com', ['engineering']);

    /**
     * Calls an operation through API_ROUTES as `who`, with the file's example body unless `body` is given, and
     * checks the answer against the file. Resolves the JSON answer (`{}` for 204), or `{ndjson: TEXT}` for a stream.
     */
    async function call(
      who: { email: string; groups: string[]; session: { id: string } },
      method: string,
      path: string,
      params: Record<string, string> = {},
      options: { body?: Json; query?: string; accept?: string } = {},
    ): Promise<Obj> {
      const route = API_ROUTES.find((r) => r.method === method && r.path === path);
      assert.ok(route, `${method} ${path} is in API_ROUTES`);
      const user: UserFacts = { email: who.email, groups: who.groups, roles: policy.rolesFor(who.email, who.groups, directory.rolesFromStore(who.email)) };
      const principal: Principal = { user, via: 'session', id: who.session.id };
      const request = {
        requestId: 'test',
        origin: 'https://gatehouse.example.com',
        path: `/api/v1${path}`,
        query: new URLSearchParams(options.query ?? ''),
        clientIp: '203.0.113.7',
        certificate: { status: 'missing' },
        principal: async () => principal,
        loginUrl: () => '/',
      } as unknown as AuthHostRequest;
      const lines: string[] = [];
      const res = {
        destroyed: false,
        writeHead: () => res,
        write: (chunk: string) => (lines.push(chunk), true),
        end: () => undefined,
        on: () => res,
        off: () => res,
      };
      const c: ApiCall = {
        o,
        req: { method, headers: options.accept ? { accept: options.accept } : {} } as unknown as IncomingMessage,
        res: res as unknown as ServerResponse,
        request,
        principal,
        me: who.email,
        actor: { email: who.email, from: '203.0.113.7' },
        root: who.email === 'root@example.com',
        params,
      };
      const example = options.body !== undefined ? options.body : (bodyExample(method, path) ?? {});
      const reply = await route.handle(c, route.body.parse(example));
      called.add(`${method} ${path}`);
      const schemas = answerSchemas(method, path);
      if (typeof reply === 'symbol') {
        // streamed: JSON lines, each an AuditRecord
        const ok = (ops.find((x) => x.method === method && x.path === path)!.op.responses as Obj)['200'] as Obj;
        const nd = ((ok.content as Obj)['application/x-ndjson'] as Obj).schema as Obj;
        const text = lines.join('');
        for (const [i, line] of text.split('\n').filter(Boolean).entries()) {
          assert.deepEqual(problems(nd['x-gatehouse-line-schema'], JSON.parse(line) as Json, `line ${i + 1}`, true), [], `${method} ${path} (x-ndjson)`);
        }
        return { ndjson: text };
      }
      assert.ok(schemas.has(String(reply.status)), `${method} ${path}: ${reply.status} is documented (${[...schemas.keys()].join(', ')})`);
      const schema = schemas.get(String(reply.status))!;
      if (reply.status === 204) assert.equal(reply.body, undefined, `${method} ${path}: 204 has no body`);
      else assert.deepEqual(problems(schema, JSON.parse(JSON.stringify(reply.body)) as Json, '$', true), [], `${method} ${path} ${reply.status}`);
      return isObj(reply.body as Json) ? (reply.body as Obj) : {};
    }

    await call(root, 'GET', '/me');
    await call(bob, 'GET', '/me');
    await call(bob, 'GET', '/roles');
    await call(root, 'POST', '/service-accounts');
    await call(root, 'GET', '/service-accounts');
    await call(root, 'PUT', '/roles/{role}/members/{email}', { role: 'sre', email: 'bob@example.com' });
    await call(root, 'PUT', '/roles/{role}/members/{email}', { role: 'db', email: 'ci@service.gatehouse' }, { body: { expires: '2099-01-01T00:00:00Z' } });
    await call(bob, 'GET', '/roles/{role}/members', { role: 'sre' });
    await call(root, 'PUT', '/roles/{role}/admins/{email}', { role: 'sre', email: 'carol@example.com' });
    const asked = await call(bob, 'POST', '/access-requests');
    await call(bob, 'POST', '/access-requests', {}, { body: { role: 'db', reason: 'migration' } });
    await call(root, 'GET', '/access-requests');
    await call(root, 'POST', '/access-requests/{id}/approve', { id: String((asked.request as Obj).id) });
    const other = await call(bob, 'POST', '/access-requests', {}, { body: { role: 'developer', reason: 'docs' } });
    await call(root, 'POST', '/access-requests/{id}/decline', { id: String((other.request as Obj).id) });
    await call(bob, 'GET', '/access-requests');
    const issued = await call(bob, 'POST', '/tokens');
    await call(root, 'POST', '/tokens', {}, { body: { name: 'pipeline', ttl: '90d', account: 'ci' } });
    await call(bob, 'GET', '/tokens');
    await call(root, 'GET', '/tokens', {}, { query: 'all=true' });
    await call(bob, 'DELETE', '/tokens/{id}', { id: String((issued.record as Obj).id) });
    const open = (user: string | undefined) =>
      tunnels.open({ route: 'ssh', host: 'build1.ssh.corp.example.com', user, client: '203.0.113.7', via: user ? 'token' : 'public', credential: user ? 'token:abc' : undefined });
    const bobs = await open('bob@example.com');
    await open(undefined);
    const mine = await call(bob, 'GET', '/tunnels');
    assert.deepEqual((mine.tunnels as Obj[]).map((x) => x.id), [bobs.id]);
    const allTunnels = await call(root, 'GET', '/tunnels', {}, { query: 'all=true' });
    assert.equal((allTunnels.tunnels as Json[]).length, 2);
    await call(bob, 'DELETE', '/tunnels/{id}', { id: bobs.id });
    assert.equal(tunnels.get(bobs.id), undefined, 'closed');
    await call(bob, 'GET', '/sessions');
    await call(root, 'GET', '/sessions', {}, { query: 'all=true' });
    const spare = await sessions.create('bob@example.com', [], undefined);
    await call(bob, 'DELETE', '/sessions/{id}', { id: spare.session.id });
    const forCsr = await call(bob, 'POST', '/certificates');
    assert.match(String(forCsr.certificate), /^-----BEGIN CERTIFICATE-----/);
    assert.equal(forCsr.p12, undefined, 'no PKCS#12 for a CSR');
    const withKey = await call(bob, 'POST', '/certificates', {}, { body: { device: 'phone', days: 30 } });
    assert.ok(typeof withKey.p12 === 'string' && typeof withKey.password === 'string', 'a PKCS#12 and its password');
    await call(root, 'POST', '/certificates', {}, { body: { device: 'build agent', user: 'carol@example.com', days: 90 } });
    await call(bob, 'GET', '/certificates');
    const everyone = await call(root, 'GET', '/certificates', {}, { query: 'all=true' });
    assert.equal((everyone.certificates as Json[]).length, 3);
    // the serial as openssl prints it with colons, lower-case
    const serial = String((forCsr.record as Obj).serial).toLowerCase().match(/../g)!.join(':');
    const revoked = await call(bob, 'POST', '/certificates/{serial}/revoke', { serial });
    assert.equal(((revoked.certificate as Obj).revoked as Obj).reason, 'laptop stolen');
    const listed = await call(root, 'GET', '/connectors');
    assert.deepEqual((listed.connectors as Obj[]).map((c) => [c.name, (c.sessions as Json[]).length]), [['office-jenkins', 1], ['lab-ssh', 0]]);
    const enrollment = await call(root, 'POST', '/connectors/{name}/enrollment', { name: 'office-jenkins' });
    assert.match(String(enrollment.command), /^gatehouse connect --via https:\/\/gatehouse\.example\.com --name office-jenkins --to http:\/\/BACKEND:PORT --enroll ghc_/);
    await call(bob, 'POST', '/explain', {}, { body: { url: 'https://wiki.corp.example.com/api/pages', method: 'post' } });
    await call(root, 'POST', '/explain');
    await call(root, 'POST', '/explain', {}, { body: { url: 'https://nowhere.example.com/' } });
    await call(root, 'GET', '/users');
    await call(root, 'POST', '/users/{email}/disable', { email: 'bob@example.com' });
    await call(root, 'POST', '/users/{email}/enable', { email: 'bob@example.com' });
    await call(root, 'DELETE', '/roles/{role}/admins/{email}', { role: 'sre', email: 'carol@example.com' });
    await call(root, 'DELETE', '/roles/{role}/members/{email}', { role: 'sre', email: 'bob@example.com' });
    await call(root, 'DELETE', '/service-accounts/{name}', { name: 'ci' });
    const page = await call(root, 'GET', '/audit', {}, { query: 'limit=5' });
    assert.equal((page.records as Json[]).length, 5);
    await call(root, 'GET', '/audit', {}, { query: `before=${String(page.next)}&action=membership.` });
    const stream = await call(root, 'GET', '/audit', {}, { accept: 'application/x-ndjson' });
    assert.ok(String(stream.ndjson).split('\n').filter(Boolean).length > 10, 'the stream has every record');

    assert.deepEqual([...called].sort(), ops.map(label).sort(), 'every documented operation was called');
  });

  it('the example request bodies are accepted by the operations\' body schemas', () => {
    for (const o of ops) {
      const example = bodyExample(o.method, o.path);
      const route = API_ROUTES.find((r) => r.method === o.method && r.path === o.path)!;
      const parsed = route.body.safeParse(example ?? {});
      assert.ok(parsed.success, `${label(o)}: ${parsed.success ? '' : parsed.error.message}`);
    }
  });
});
