/**
 * Request bodies of the JSON API: `application/json`, one object, at most 16 KiB (read as it streams in; the
 * 16 KiB and first byte more are all that is ever held), checked against a strict zod schema so that an unknown
 * field is refused by name. A request without a body is read as `{}`.
 */
import type { IncomingMessage } from 'node:http';
import type { z } from 'zod';
import { GatehouseError } from '../core/index.ts';

export const MAX_BODY_BYTES = 16 * 1024;

const utf8 = new TextDecoder('utf-8', { fatal: true });

function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/** The raw bytes, or `ERR_BODY_TOO_LARGE` as soon as more than `MAX_BODY_BYTES` have arrived (the rest is left unread). */
function readLimited(req: IncomingMessage): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > MAX_BODY_BYTES) {
    return Promise.reject(new GatehouseError('ERR_BODY_TOO_LARGE', `the request body is larger than ${MAX_BODY_BYTES} bytes`));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const cleanup = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        cleanup();
        req.pause();
        reject(new GatehouseError('ERR_BODY_TOO_LARGE', `the request body is larger than ${MAX_BODY_BYTES} bytes`));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(Buffer.concat(chunks, size));
    };
    const onError = (err: Error) => {
      cleanup();
      reject(new GatehouseError('ERR_CLIENT_CLOSED', 'the request body was cut off', { cause: err }));
    };
    const onClose = () => {
      cleanup();
      reject(new GatehouseError('ERR_CLIENT_CLOSED', 'the client left while sending the body'));
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
  });
}

function valueAt(value: unknown, path: readonly PropertyKey[]): unknown {
  let v = value;
  for (const key of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[key];
  }
  return v;
}

/** One sentence per problem, naming the field. */
export function describeBodyIssues(issues: readonly z.core.$ZodIssue[], input: unknown): string {
  return issues
    .map((issue) => {
      if (issue.code === 'unrecognized_keys') {
        const names = issue.keys.map((k) => JSON.stringify(k)).join(', ');
        return `unknown field${issue.keys.length > 1 ? 's' : ''} ${names}`;
      }
      const field = issue.path.map(String).join('.');
      if (!field) return `the body: ${issue.message}`;
      if (valueAt(input, issue.path) === undefined) return `field "${field}" is required`;
      return `field "${field}": ${issue.message}`;
    })
    .join('; ');
}

/** The body of `req` parsed by `schema`; `ERR_BAD_REQUEST` (naming the field) or `ERR_BODY_TOO_LARGE`. */
export async function readJsonBody<S extends z.ZodType>(req: IncomingMessage, schema: S): Promise<z.output<S>> {
  let input: unknown = {};
  if (hasBody(req)) {
    const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (type !== 'application/json') {
      throw new GatehouseError('ERR_BAD_REQUEST', 'a request body must be JSON, sent with content-type: application/json');
    }
    const raw = await readLimited(req);
    if (raw.length > 0) {
      try {
        input = JSON.parse(utf8.decode(raw));
      } catch {
        throw new GatehouseError('ERR_BAD_REQUEST', 'the request body is not valid JSON');
      }
      if (input === null || typeof input !== 'object' || Array.isArray(input)) {
        throw new GatehouseError('ERR_BAD_REQUEST', 'the request body must be a JSON object');
      }
    }
  }
  const parsed = schema.safeParse(input);
  if (!parsed.success) throw new GatehouseError('ERR_BAD_REQUEST', describeBodyIssues(parsed.error.issues, input));
  return parsed.data;
}
