/**
 * Before anything is measured: every target answers `200 ok`, both proxies send the backend the same
 * headers, and both refuse the mTLS route without a certificate and with a certificate whose subject does
 * not match, so the two proxies really do the same work.
 */
import { request } from 'node:https';
import { request as httpRequest } from 'node:http';
import { readFileSync } from 'node:fs';
import { MTLS_HOST, OPEN_HOST, type Targets } from './targets.ts';
import type { CertFiles } from '../test/harness/certs.ts';

interface Answer {
  readonly status: number;
  readonly body: string;
}

function get(port: number, host: string, path: string, ca: string, client?: CertFiles): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        servername: host,
        path,
        headers: { host: `${host}:${port}`, 'x-forwarded-for': '203.0.113.9' },
        ca,
        ...(client ? { cert: client.certPem, key: client.keyPem } : {}),
        agent: false,
        timeout: 5000,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
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
  if (problems.length > 0) throw new Error(`the targets are not equivalent:\n  ${problems.join('\n  ')}`);
  return notes;
}
