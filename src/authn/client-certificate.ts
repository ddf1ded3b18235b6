/**
 * Client certificate → facts for the policy. The TLS layer verifies the chain against the trusted CAs
 * (it never rejects the handshake: a refused certificate gets a page that says why); revocation is checked
 * here on every request against the loaded CRLs, so a newly revoked certificate is refused on the next
 * request, even on an open keep-alive connection.
 */
import type { TLSSocket } from 'node:tls';
import type { CertificateFacts, CertificateStatus } from '../policy/index.ts';
import { canonicalSerialFromNode } from '../pki/index.ts';

/** Revocation by issuer and serial, as loaded from CRLs (and, later, the internal CA). */
export interface RevocationSource {
  /** undefined when the status cannot be known (a configured CRL is not loaded) */
  isRevoked(issuerKey: string, serial: string): boolean | undefined;
}

const verifyErrors: Record<string, CertificateStatus> = {
  CERT_HAS_EXPIRED: 'expired',
  CERT_NOT_YET_VALID: 'not-yet-valid',
  CERT_REVOKED: 'revoked',
  UNABLE_TO_GET_ISSUER_CERT: 'untrusted',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'untrusted',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'untrusted',
  SELF_SIGNED_CERT_IN_CHAIN: 'untrusted',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'untrusted',
  CERT_UNTRUSTED: 'untrusted',
  CERT_SIGNATURE_FAILURE: 'untrusted',
  CERT_REJECTED: 'untrusted',
};


/** Subject (or issuer) fields as arrays of values, keyed by short name. */
export function subjectFields(name: Record<string, string | string[]> | undefined): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  if (!name) return out;
  for (const k of Object.keys(name)) {
    const v = name[k]!;
    out[k] = Array.isArray(v) ? v : [v];
  }
  return out;
}

function unescapeDnValue(v: string): string {
  if (!v.includes('\\')) return v;
  return v.replace(/\\([0-9A-Fa-f]{2}|[\s\S])/g, (_, e: string) => (e.length === 2 ? String.fromCharCode(parseInt(e, 16)) : e));
}

/**
 * Parses the DN text `X509Certificate` prints (one RDN a line, RFC 2253 escapes, several attributes of one RDN
 * joined by " + ") into fields with their values unescaped: `O=Example\, Inc.` is `Example, Inc.`.
 */
export function dnFields(dn: string): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const line of dn.split('\n')) {
    for (const part of line.split(/(?<!\\) \+ /)) {
      const eq = part.indexOf('=');
      if (eq <= 0) continue;
      (out[part.slice(0, eq)] ??= []).push(unescapeDnValue(part.slice(eq + 1)));
    }
  }
  return out;
}

/** A stable key for a distinguished name, equal for the same name however it was parsed. */
export function nameKey(fields: Record<string, readonly string[]>): string {
  return Object.keys(fields)
    .sort()
    .map((k) => `${k}=${[...fields[k]!].join('+')}`)
    .join('/');
}

export function formatDn(fields: Record<string, readonly string[]>): string {
  return Object.entries(fields)
    .flatMap(([k, vs]) => vs.map((v) => `${k}=${v}`))
    .join(', ');
}

interface CachedPeer {
  readonly base: CertificateFacts;
  readonly notAfter: number;
  readonly notBefore: number;
  readonly issuerKey: string;
}

const missing: CertificateFacts = { status: 'missing' };

export class ClientCertificates {
  readonly #cache = new WeakMap<TLSSocket, CachedPeer | null>();

  constructor(private readonly revocation: RevocationSource) {}

  facts(socket: TLSSocket): CertificateFacts {
    let cached = this.#cache.get(socket);
    if (cached === undefined) {
      cached = this.#inspect(socket);
      this.#cache.set(socket, cached);
    }
    if (cached === null) return missing;
    const base = cached.base;
    if (base.status !== 'valid') return base;
    const now = Date.now();
    if (now > cached.notAfter) return { ...base, status: 'expired' };
    if (now < cached.notBefore) return { ...base, status: 'not-yet-valid' };
    const revoked = this.revocation.isRevoked(cached.issuerKey, base.serial!);
    if (revoked === true) return { ...base, status: 'revoked' };
    if (revoked === undefined) return { ...base, status: 'invalid', detail: 'its revocation status cannot be checked: a revocation list is not loaded' };
    return base;
  }

  #inspect(socket: TLSSocket): CachedPeer | null {
    // getPeerX509Certificate reads fields on demand: far cheaper per connection than getPeerCertificate(),
    // which builds every field (and the raw DER) into an object
    const peer = socket.getPeerX509Certificate();
    if (!peer) return null;
    const subject = dnFields(peer.subject);
    const err = socket.authorized ? undefined : String(socket.authorizationError ?? 'UNKNOWN');
    const status: CertificateStatus = err === undefined ? 'valid' : verifyErrors[err] ?? 'invalid';
    const base: CertificateFacts = {
      status,
      subject,
      subjectDn: formatDn(subject),
      serial: canonicalSerialFromNode(peer.serialNumber),
      ...(err && status !== 'untrusted' && status !== 'expired' ? { detail: err } : {}),
    };
    return {
      base,
      notAfter: Date.parse(peer.validTo),
      notBefore: Date.parse(peer.validFrom),
      issuerKey: nameKey(dnFields(peer.issuer)),
    };
  }
}
