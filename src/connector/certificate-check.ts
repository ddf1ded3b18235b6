/**
 * Who is at the other end of a connector's TLS connection: the hub checks the client certificate itself, whatever
 * the TLS layer trusts for users. It must be issued by the internal CA (name, key identifiers and signature), be
 * within its dates, have a record in the CA that says `connector`, not revoked, for the name asked for, with that
 * name as its CN.
 */
import { X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import type { Duplex } from 'node:stream';
import type { ErrorCode } from '../core/index.ts';
import { messageOf } from '../core/index.ts';
import { canonicalSerialFromNode } from '../pki/index.ts';
import { dnFields } from '../authn/index.ts';
import type { InternalCa } from '../ca/index.ts';

export type CertificateVerdict =
  | { readonly ok: true; readonly serial: string; readonly notAfter: number }
  | { readonly ok: false; readonly code: ErrorCode; readonly message: string };

let cachedCa: { readonly pem: string; readonly cert: X509Certificate } | undefined;

function caCertificate(ca: InternalCa): X509Certificate {
  const pem = ca.caCertificatePem();
  if (cachedCa?.pem !== pem) cachedCa = { pem, cert: new X509Certificate(pem) };
  return cachedCa.cert;
}

/** Checks the certificate the peer of `socket` presented for connector `name`. */
export function checkConnectorCertificate(socket: Duplex, name: string, ca: InternalCa, now = Date.now()): CertificateVerdict {
  const no = (code: ErrorCode, message: string): CertificateVerdict => ({ ok: false, code, message });
  let issuer: X509Certificate;
  try {
    issuer = caCertificate(ca);
  } catch (err) {
    return no('ERR_CA_NOT_INITIALISED', `connectors need the internal CA: ${messageOf(err)}`);
  }
  const tls = socket as TLSSocket;
  const peer = typeof tls.getPeerX509Certificate === 'function' ? tls.getPeerX509Certificate() : undefined;
  if (!peer) return no('ERR_CERT_MISSING', 'the connector presented no client certificate (give --cert and --key, or enroll with --enroll TOKEN)');
  if (!peer.checkIssued(issuer) || !peer.verify(issuer.publicKey)) {
    return no('ERR_CERT_UNTRUSTED', 'the connector certificate was not issued by this Gatehouse\'s internal CA');
  }
  const notBefore = Date.parse(peer.validFrom);
  const notAfter = Date.parse(peer.validTo);
  if (now > notAfter) return no('ERR_CERT_EXPIRED', `the connector certificate expired at ${new Date(notAfter).toISOString()}`);
  if (now < notBefore) return no('ERR_CERT_NOT_YET_VALID', `the connector certificate is valid from ${new Date(notBefore).toISOString()}`);
  const serial = canonicalSerialFromNode(peer.serialNumber);
  const record = ca.recordOf(serial);
  if (!record) return no('ERR_CERT_INVALID', `the internal CA has no record of certificate ${serial}`);
  if (record.revoked) return no('ERR_CERT_REVOKED', `the connector certificate ${serial} was revoked`);
  if (record.kind !== 'connector') return no('ERR_CERT_INVALID', `certificate ${serial} is a ${record.kind} certificate, not a connector certificate`);
  const cn = dnFields(peer.subject).CN?.[0];
  if (record.connector !== name || cn !== name) {
    return no('ERR_CERT_SUBJECT_MISMATCH', `the certificate is for connector ${JSON.stringify(record.connector ?? cn)}, not ${JSON.stringify(name)}`);
  }
  return { ok: true, serial, notAfter };
}
