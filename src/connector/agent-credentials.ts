/**
 * The connector's key and certificate: given as files (`--cert`, `--key`), or enrolled once with a one-time token
 * and kept in a state folder (`connector.key`, `connector.crt`, mode 0600) that later starts reuse. Enrolled
 * credentials are renewed over TLS with the current certificate when they are due (a third of their life left, at
 * most 30 days), and written back to the state folder.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { request, type RequestOptions } from 'node:https';
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { GatehouseError, isErrorCode, messageOf, type ErrorCode } from '../core/index.ts';
import { createCsr } from '../pki/index.ts';
import { renewalTime } from '../ca/index.ts';
import { ENROLL_PATH, RENEW_PATH } from './protocol/index.ts';

export interface Credentials {
  readonly certPem: string;
  readonly keyPem: string;
  readonly serial: string;
  readonly notBefore: number;
  readonly notAfter: number;
  /** moves on each renewal: sessions opened with older credentials are rolled over */
  readonly generation: number;
}

const CERT_FILE = 'connector.crt';
const KEY_FILE = 'connector.key';
const REQUEST_TIMEOUT_MS = 15_000;

function describe(certPem: string, keyPem: string, generation: number, what: string): Credentials {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch (err) {
    throw new GatehouseError('ERR_USAGE', `${what} holds no readable PEM certificate: ${messageOf(err)}`, { cause: err });
  }
  return { certPem, keyPem, serial: cert.serialNumber.toUpperCase(), notBefore: Date.parse(cert.validFrom), notAfter: Date.parse(cert.validTo), generation };
}

/** The CN of a certificate's subject, or undefined. */
function commonName(certPem: string): string | undefined {
  try {
    return /^CN=(.*)$/m.exec(new X509Certificate(certPem).subject)?.[1];
  } catch {
    return undefined;
  }
}

async function readText(file: string, what: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new GatehouseError('ERR_USAGE', `cannot read ${what} ${file}: ${code === 'ENOENT' ? 'no such file' : messageOf(err)}`, { cause: err });
  }
}

/** Writes `data` to `file` (mode 0600) through a temporary file, so a crash never leaves half a key. */
async function writePrivate(file: string, data: string): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`;
  await writeFile(tmp, data, { mode: 0o600 });
  await chmod(tmp, 0o600);
  await rename(tmp, file);
}

export interface ConnectorCallOptions {
  /** `https://AUTHHOST[:PORT]` */
  readonly via: string;
  /** CAs to trust for the Gatehouse (undefined: the system's) */
  readonly trust: readonly string[] | undefined;
}

/** One JSON POST to the Gatehouse (optionally with a client certificate); a refusal becomes a `GatehouseError` with its code. */
export function postJson(
  call: ConnectorCallOptions,
  path: string,
  body: unknown,
  clientCertificate?: { readonly certPem: string; readonly keyPem: string },
): Promise<Record<string, unknown>> {
  const url = new URL(path, call.via);
  const payload = JSON.stringify(body);
  const options: RequestOptions = {
    method: 'POST',
    agent: false,
    headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload), accept: 'application/json', 'user-agent': 'gatehouse-connector' },
    ...(call.trust ? { ca: [...call.trust] } : {}),
    ...(clientCertificate ? { cert: clientCertificate.certPem, key: clientCertificate.keyPem } : {}),
  };
  return new Promise((resolve, reject) => {
    const req = request(url, options, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size <= 256 * 1024) chunks.push(c);
      });
      res.on('error', reject);
      res.on('end', () => {
        let parsed: Record<string, unknown> | undefined;
        try {
          parsed = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
        } catch {
          parsed = undefined;
        }
        if (res.statusCode === 200 && parsed) return resolve(parsed);
        const error = (parsed?.error ?? {}) as { code?: string; message?: string };
        const header = res.headers['x-gatehouse-error'];
        const code: ErrorCode = error.code && isErrorCode(error.code) ? error.code : typeof header === 'string' && isErrorCode(header) ? header : 'ERR_UPSTREAM_PROTOCOL';
        reject(new GatehouseError(code, `${url.origin} refused: ${error.message ?? `HTTP ${res.statusCode}`}`));
      });
    });
    req.setTimeout(REQUEST_TIMEOUT_MS, () => req.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS / 1000} s`)));
    req.on('error', (err) => reject(new GatehouseError('ERR_UPSTREAM_UNREACHABLE', `cannot reach ${url.origin}: ${messageOf(err)}`, { cause: err })));
    req.end(payload);
  });
}

/** Where the connector's credentials come from, and whether (and how) they are renewed. */
export class ConnectorCredentials {
  #current: Credentials;
  readonly #stateDir: string | undefined;

  private constructor(current: Credentials, stateDir: string | undefined) {
    this.#current = current;
    this.#stateDir = stateDir;
  }

  get current(): Credentials {
    return this.#current;
  }

  /** Enrolled credentials in a state folder are renewed; files given on the command line are used as they are. */
  get renewable(): boolean {
    return this.#stateDir !== undefined;
  }

  /** When the current certificate is due for renewal. */
  get renewAt(): number {
    return renewalTime(this.#current.notBefore, this.#current.notAfter);
  }

  /** `--cert` and `--key`. */
  static async fromFiles(certFile: string, keyFile: string): Promise<ConnectorCredentials> {
    const certPem = await readText(certFile, 'the certificate');
    const keyPem = await readText(keyFile, 'the key');
    return new ConnectorCredentials(describe(certPem, keyPem, 1, certFile), undefined);
  }

  /**
   * The credentials in `stateDir` when they are there for `name` and unexpired; otherwise enrolls with `token`
   * (an error when there is none) and keeps the result there.
   */
  static async fromState(stateDir: string, name: string, token: string | undefined, call: ConnectorCallOptions): Promise<{ credentials: ConnectorCredentials; enrolled: boolean }> {
    const certFile = join(stateDir, CERT_FILE);
    const keyFile = join(stateDir, KEY_FILE);
    let stored: Credentials | undefined;
    try {
      const certPem = await readFile(certFile, 'utf8');
      const keyPem = await readFile(keyFile, 'utf8');
      stored = describe(certPem, keyPem, 1, certFile);
      // another name, expired, or a key that is not the certificate's (a renewal cut short): enroll again
      if (commonName(certPem) !== name || Date.now() >= stored.notAfter || !new X509Certificate(certPem).checkPrivateKey(createPrivateKey(keyPem))) stored = undefined;
    } catch (err) {
      // missing or unreadable as PEM: enroll again; a folder we may not read is the operator's to fix
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EACCES' || code === 'EPERM') throw new GatehouseError('ERR_USAGE', `cannot read ${stateDir}: ${messageOf(err)}`, { cause: err });
      stored = undefined;
    }
    if (stored) return { credentials: new ConnectorCredentials(stored, stateDir), enrolled: false };
    if (token === undefined) {
      throw new GatehouseError('ERR_USAGE', `${stateDir} holds no certificate for connector ${name}: enroll with --enroll TOKEN, or give --cert and --key`);
    }
    const { csrPem, keyPem } = await createCsr({ subject: { CN: name } });
    const answer = await postJson(call, ENROLL_PATH, { name, token, csr: csrPem });
    const certPem = typeof answer.certificate === 'string' ? answer.certificate : '';
    const credentials = describe(certPem, keyPem, 1, 'the enrollment answer');
    await mkdir(stateDir, { recursive: true, mode: 0o700 });
    await writePrivate(keyFile, keyPem);
    await writePrivate(certFile, certPem);
    return { credentials: new ConnectorCredentials(credentials, stateDir), enrolled: true };
  }

  /** A new key and certificate, asked for over TLS with the current certificate, kept in the state folder. */
  async renew(name: string, call: ConnectorCallOptions): Promise<Credentials> {
    const dir = this.#stateDir;
    if (dir === undefined) throw new GatehouseError('ERR_USAGE', 'only enrolled credentials (in --state) are renewed');
    const { csrPem, keyPem } = await createCsr({ subject: { CN: name } });
    const answer = await postJson(call, RENEW_PATH, { name, csr: csrPem }, this.#current);
    const certPem = typeof answer.certificate === 'string' ? answer.certificate : '';
    const next = describe(certPem, keyPem, this.#current.generation + 1, 'the renewal answer');
    await writePrivate(join(dir, KEY_FILE), keyPem);
    await writePrivate(join(dir, CERT_FILE), certPem);
    this.#current = next;
    return next;
  }
}
