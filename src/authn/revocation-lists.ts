/**
 * CRLs of the trusted CAs, read from files or fetched from URLs, refreshed periodically. Each CRL must be
 * signed by one of the trusted CAs; it then revokes serials of that CA only. While a configured CRL has never
 * been loaded, certificates are refused (their revocation status is unknown).
 */
import { readFile } from 'node:fs/promises';
import { X509Certificate } from 'node:crypto';
import { normaliseSerial, parseCrl } from '../pki/index.ts';
import { messageOf, type Logger } from '../core/index.ts';
import { dnFields, nameKey, type RevocationSource } from './client-certificate.ts';


interface TrustedCa {
  readonly pem: string;
  readonly key: string;
}

export function splitPemCertificates(bundle: string): string[] {
  return bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

export class RevocationLists implements RevocationSource {
  readonly #sources: readonly string[];
  readonly #cas: readonly TrustedCa[];
  readonly #refreshMs: number;
  readonly #log: Logger | undefined;
  /** per source: issuer key and revoked serials, once loaded */
  readonly #loaded = new Map<string, { issuerKey: string; revoked: Set<string> }>();
  #byIssuer = new Map<string, Set<string>>();
  #timer: NodeJS.Timeout | undefined;

  constructor(options: { sources: readonly string[]; trustedCaPems: readonly string[]; refreshMs: number; log?: Logger }) {
    this.#sources = options.sources;
    this.#cas = options.trustedCaPems.map((pem) => ({ pem, key: nameKey(dnFields(new X509Certificate(pem).subject)) }));
    this.#refreshMs = options.refreshMs;
    this.#log = options.log;
  }

  /** Loads every source once; throws when a local file cannot be read or verified (URLs only warn). */
  async start(): Promise<void> {
    for (const source of this.#sources) {
      try {
        await this.#load(source);
      } catch (err) {
        if (!/^https?:/.test(source)) throw err;
        this.#log?.warn('crl_fetch_failed', { source, error: messageOf(err) });
      }
    }
    this.#rebuild();
    if (this.#sources.length > 0) {
      this.#timer = setInterval(() => void this.refresh(), this.#refreshMs);
      this.#timer.unref();
    }
  }

  async refresh(): Promise<void> {
    for (const source of this.#sources) {
      try {
        await this.#load(source);
      } catch (err) {
        this.#log?.warn('crl_refresh_failed', { source, error: messageOf(err) });
      }
    }
    this.#rebuild();
  }

  close(): void {
    if (this.#timer) clearInterval(this.#timer);
  }

  isRevoked(issuerKey: string, serial: string): boolean | undefined {
    if (this.#loaded.size < this.#sources.length) return undefined;
    return this.#byIssuer.get(issuerKey)?.has(serial) ?? false;
  }

  async #load(source: string): Promise<void> {
    let data: Buffer;
    if (/^https?:/.test(source)) {
      const res = await fetch(source, { signal: AbortSignal.timeout(10_000) });
      if (!res.ok) throw new Error(`HTTP ${res.status} from ${source}`);
      data = Buffer.from(await res.arrayBuffer());
    } else {
      data = await readFile(source);
    }
    const text = data.toString('latin1');
    const crl = parseCrl(text.includes('-----BEGIN') ? text : data);
    let issuerKey: string | undefined;
    for (const ca of this.#cas) {
      if (await crl.verify(ca.pem)) {
        issuerKey = ca.key;
        break;
      }
    }
    if (!issuerKey) throw new Error(`the CRL ${source} is not signed by any trusted CA`);
    this.#loaded.set(source, { issuerKey, revoked: new Set([...crl.revoked].map(normaliseSerial)) });
  }

  #rebuild(): void {
    const next = new Map<string, Set<string>>();
    for (const { issuerKey, revoked } of this.#loaded.values()) {
      const set = next.get(issuerKey) ?? new Set<string>();
      for (const s of revoked) set.add(s);
      next.set(issuerKey, set);
    }
    this.#byIssuer = next;
  }
}
