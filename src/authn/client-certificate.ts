/**
 * Client certificate → facts for the policy. The TLS layer verifies the chain against the trusted CAs
 * (it never rejects the handshake: a refused certificate gets a page that says why); revocation is checked
 * here on every request against the loaded CRLs, so a newly revoked certificate is refused on the next
 * request, even on an open keep-alive connection.
 */
import type { X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import type { CertificateFacts, CertificateStatus } from '../policy/index.ts';
import { canonicalSerialFromNode } from '../pki/index.ts';

/** Revocation by issuer and serial, as loaded from CRLs (and, later, the internal CA). */
export interface RevocationSource {
  /** undefined when the status cannot be known (a configured CRL is not loaded) */
  isRevoked(issuerKey: string, serial: string): boolean | undefined;
}

/** The internal CA as the TLS layer needs it: its certificate, and memory lookups by serial. */
export interface InternalTrust {
  /** the CA that issues device certificates */
  readonly ca: X509Certificate;
  /**
   * false when the front door asks for the internal CA's certificates only so that connectors can present theirs
   * (`identity.certificates.trust` does not name "internal"): then none of them stands for a user. Default true.
   */
  readonly users?: boolean;
  /**
   * what the CA's records say of a serial: undefined when it never issued it (or the record is gone). Only a
   * `device` certificate stands for a user or passes a certificate route; `connector` and `server` never do.
   */
  lookup(serial: string): { readonly revoked: boolean; readonly user?: string | undefined; readonly kind?: 'device' | 'connector' | 'server' | 'instance' | undefined } | undefined;
}

export interface ClientCertificateOptions {
  readonly internal?: InternalTrust | undefined;
  /** subject field naming the user of a certificate from an external CA (`identity.certificates.userField`) */
  readonly userField?: string | undefined;
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
  /** issued by the internal CA (its revocation and user come from the CA's records) */
  readonly internal: boolean;
  /** for an external CA's certificate: the user its subject names (`userField`) */
  readonly subjectUser: string | undefined;
}

const missing: CertificateFacts = { status: 'missing' };

export class ClientCertificates {
  readonly #cache = new WeakMap<TLSSocket, CachedPeer | null>();

  readonly #internal: InternalTrust | undefined;
  readonly #userField: string | undefined;

  constructor(
    private readonly revocation: RevocationSource,
    options: ClientCertificateOptions = {},
  ) {
    this.#internal = options.internal;
    this.#userField = options.userField;
  }

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
    if (cached.internal) {
      if (this.#internal!.users === false) {
        return { ...base, status: 'untrusted', detail: 'identity.certificates.trust does not name "internal": its certificates are for connectors only' };
      }
      // the CA's records are in memory and follow the store: a revocation anywhere applies to the next request
      const known = this.#internal!.lookup(base.serial!);
      if (!known) return { ...base, status: 'invalid', detail: 'the internal CA has no record of this certificate' };
      if (known.revoked) return { ...base, status: 'revoked' };
      if (known.kind !== undefined && known.kind !== 'device') {
        return { ...base, status: 'invalid', detail: `it is a ${known.kind} certificate, which stands for a ${known.kind}, not for a user's device` };
      }
      return known.user === undefined ? base : { ...base, user: known.user };
    }
    const revoked = this.revocation.isRevoked(cached.issuerKey, base.serial!);
    if (revoked === true) return { ...base, status: 'revoked' };
    if (revoked === undefined) return { ...base, status: 'invalid', detail: 'its revocation status cannot be checked: a revocation list is not loaded' };
    return cached.subjectUser === undefined ? base : { ...base, user: cached.subjectUser };
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
    // issued by the internal CA: name, key identifiers and signature, so a CA elsewhere with the same name is not it
    const ca = this.#internal?.ca;
    const internal = status === 'valid' && ca !== undefined && peer.checkIssued(ca) && peer.verify(ca.publicKey);
    const field = this.#userField;
    const named = !internal && field ? subject[field]?.[0]?.trim().toLowerCase() : undefined;
    return {
      base,
      notAfter: Date.parse(peer.validTo),
      notBefore: Date.parse(peer.validFrom),
      issuerKey: nameKey(dnFields(peer.issuer)),
      internal,
      subjectUser: named || undefined,
    };
  }
}
