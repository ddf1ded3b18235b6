/**
 * `GET /audit` (root admins): audit records newest first, filtered by time, actor, action and target, a page at a
 * time (`next` is the `before` of the following page) — or, with `Accept: application/x-ndjson`, every matching
 * record as one JSON line each, read from the store a page at a time and written as fast as the client reads.
 */
import type { ServerResponse } from 'node:http';
import { GatehouseError } from '../core/index.ts';
import type { AuditRecord } from '../directory/index.ts';
import { STREAMED, defineRoute, ok, requireRoot, type ApiCall, type ApiRoute } from './api-call.ts';
import { NDJSON_TYPE, apiHeaders } from './api-reply.ts';
import { auditJson } from './api-shapes.ts';

export const DEFAULT_AUDIT_LIMIT = 100;
export const MAX_AUDIT_LIMIT = 500;
/** how many records are read from the store at once */
const PAGE = 500;
const FILTERS = new Set(['since', 'before', 'limit', 'actor', 'action', 'target']);

interface AuditQuery {
  readonly since: number | undefined;
  readonly before: string | undefined;
  readonly limit: number | undefined;
  readonly actor: string | undefined;
  readonly action: string | undefined;
  readonly target: string | undefined;
}

function parseQuery(query: URLSearchParams): AuditQuery {
  for (const key of new Set(query.keys())) {
    if (!FILTERS.has(key)) throw new GatehouseError('ERR_BAD_REQUEST', `unknown parameter "${key}" (use ${[...FILTERS].join(', ')})`);
    if (query.getAll(key).length > 1) throw new GatehouseError('ERR_BAD_REQUEST', `parameter "${key}" is given more than once`);
  }
  const text = (key: string) => {
    const v = query.get(key);
    return v === null || v === '' ? undefined : v;
  };
  const sinceText = text('since');
  const since = sinceText === undefined ? undefined : Date.parse(sinceText);
  if (since !== undefined && (Number.isNaN(since) || !/^\d{4}-\d\d-\d\d(?:T|$)/.test(sinceText!))) {
    throw new GatehouseError('ERR_BAD_REQUEST', `parameter "since": ${JSON.stringify(sinceText)} is not an ISO 8601 time`);
  }
  const limitText = text('limit');
  const limit = limitText === undefined ? undefined : Number(limitText);
  if (limit !== undefined && (!/^\d+$/.test(limitText!) || limit < 1 || limit > MAX_AUDIT_LIMIT)) {
    throw new GatehouseError('ERR_BAD_REQUEST', `parameter "limit": a whole number from 1 to ${MAX_AUDIT_LIMIT}`);
  }
  return { since, before: text('before'), limit, actor: text('actor')?.toLowerCase(), action: text('action'), target: text('target') };
}

function matches(q: AuditQuery, r: AuditRecord): boolean {
  return (
    (q.actor === undefined || r.actor === q.actor) &&
    (q.action === undefined || r.action.startsWith(q.action)) &&
    (q.target === undefined || r.target.startsWith(q.target))
  );
}

/**
 * The matching records, newest first, a store page at a time, until `visit` returns false or the records run out.
 * Returns the id of the last record visited when `visit` stopped the walk.
 */
async function walk(call: ApiCall, q: AuditQuery, visit: (r: AuditRecord) => boolean | Promise<boolean>): Promise<string | undefined> {
  let cursor = q.before;
  for (;;) {
    const page = await call.o.directory.audit(q.since, PAGE, cursor);
    for (const r of page) {
      if (matches(q, r) && !(await visit(r))) return r.id;
    }
    if (page.length < PAGE) return undefined;
    cursor = page[page.length - 1]!.id;
  }
}

/** Resolves when `res` may take more (or has closed). */
function drained(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

async function streamLines(call: ApiCall, q: AuditQuery): Promise<void> {
  const { res, request } = call;
  res.writeHead(200, apiHeaders(request.requestId, NDJSON_TYPE));
  if (call.req.method === 'HEAD') {
    res.end();
    return;
  }
  let sent = 0;
  await walk(call, q, async (r) => {
    if (res.destroyed) return false;
    if (!res.write(JSON.stringify(auditJson(r)) + '\n')) await drained(res);
    sent++;
    return !res.destroyed && (q.limit === undefined || sent < q.limit);
  });
  if (!res.destroyed) res.end();
}

function wantsLines(accept: string | undefined): boolean {
  return accept !== undefined && accept.toLowerCase().includes(NDJSON_TYPE);
}

export const AUDIT_ROUTES: readonly ApiRoute[] = [
  defineRoute({
    method: 'GET',
    path: '/audit',
    who: 'root',
    summary: 'audit records, newest first; filters since, before, limit, actor, action (prefix), target (prefix); Accept: application/x-ndjson streams them all',
    handle: async (call) => {
      requireRoot(call, 'read the audit log');
      const q = parseQuery(call.request.query);
      if (wantsLines(call.req.headers.accept)) {
        await streamLines(call, q);
        return STREAMED;
      }
      const limit = q.limit ?? DEFAULT_AUDIT_LIMIT;
      // one record past the page says whether there is a next page (a page that ends at the last record has none)
      const records: AuditRecord[] = [];
      await walk(call, q, (r) => {
        records.push(r);
        return records.length <= limit;
      });
      const more = records.length > limit;
      if (more) records.pop();
      return ok({ records: records.map(auditJson), next: more ? records[records.length - 1]!.id : null });
    },
  }),
];
