/**
 * Making and checking the CA's own certificate and key, before anything is stored: a new root, the request for an
 * intermediate, and the checks an imported CA certificate (with its key and chain) must pass.
 */
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { GatehouseError, messageOf } from '../core/index.ts';
import { createCa, createCrl, createCsr, parseCertificate, parseCrl, type SubjectInput } from '../pki/index.ts';

/** The CN of every CA Gatehouse makes. */
export const CA_COMMON_NAME = 'Gatehouse internal CA';
/** The O of the CA when none is given. */
export const DEFAULT_ORGANISATION = 'Gatehouse';
const ROOT_DAYS = 3650;

const pemCertificate = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g;

/** Each PEM certificate in `text`, in order, each ending in a newline. */
export function pemCertificates(text: string): string[] {
  return (text.match(pemCertificate) ?? []).map((b) => (b.endsWith('\n') ? b : `${b}\n`));
}

export function caSubject(organisation: string | undefined): SubjectInput {
  const o = organisation?.trim() || DEFAULT_ORGANISATION;
  if (o.length > 64) throw new GatehouseError('ERR_BAD_REQUEST', 'the organisation name is longer than 64 characters');
  return { O: o, CN: CA_COMMON_NAME };
}

/** A new self-signed root: EC P-256, 10 years, no CA below it (pathLength 0). */
export async function makeRoot(organisation: string | undefined): Promise<{ certPem: string; keyPem: string }> {
  const { certPem, keyPem } = await createCa({ subject: caSubject(organisation), validityDays: ROOT_DAYS, pathLength: 0 });
  return { certPem, keyPem };
}

/** A fresh EC P-256 key and a CSR for it, for the company's CA to sign as an intermediate. */
export async function makeIntermediateRequest(organisation: string | undefined): Promise<{ csrPem: string; keyPem: string; subject: string }> {
  const { csrPem, keyPem } = await createCsr({ subject: caSubject(organisation) });
  return { csrPem, keyPem, subject: `CN=${CA_COMMON_NAME},O=${(organisation?.trim() || DEFAULT_ORGANISATION).replace(/([\\"+,;<>])/g, '\\$1')}` };
}

/** What the checks learnt about a CA certificate. */
export interface CheckedCa {
  readonly certPem: string;
  /** the certificates above it, nearest first, PEM ('' when none) */
  readonly chainPem: string;
  readonly serial: string;
  readonly subject: string;
  readonly notBefore: number;
  readonly notAfter: number;
  readonly fingerprint256: string;
  /** whether the chain reaches a self-signed root (or the certificate is one) */
  readonly reachesRoot: boolean;
  /** things an operator should know that do not stop the import */
  readonly warnings: readonly string[];
}

function refuse(message: string, cause?: unknown): GatehouseError {
  return new GatehouseError('ERR_BAD_REQUEST', message, cause === undefined ? undefined : { cause });
}

function readKey(keyPem: string): KeyObject {
  if (/-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED/.test(keyPem)) {
    throw refuse('the CA key is encrypted: give it unencrypted (openssl pkey -in KEY -out PLAIN.key); Gatehouse seals it in the store itself');
  }
  try {
    return createPrivateKey({ key: keyPem, format: 'pem' });
  } catch (err) {
    throw refuse('the CA key is not a PEM private key', err);
  }
}

function selfSigned(cert: X509Certificate): boolean {
  return cert.checkIssued(cert) && cert.verify(cert.publicKey);
}

/**
 * Checks `bundlePem` (the CA certificate first, then the certificates above it) against `keyPem`: the first is a CA
 * certificate (basicConstraints CA:TRUE) whose public key is that of `keyPem`, valid now, allowed to sign CRLs (a
 * trial CRL must verify); each certificate of the chain issued the one before it. A chain that stops short of a
 * self-signed root is allowed, with a warning. Refusals are `ERR_BAD_REQUEST`.
 */
export async function checkCaMaterial(bundlePem: string, keyPem: string, now: number): Promise<CheckedCa> {
  const blocks = pemCertificates(bundlePem);
  if (blocks.length === 0) throw refuse('no PEM CERTIFICATE block found in the CA certificate file');
  let certs: X509Certificate[];
  try {
    certs = blocks.map((b) => new X509Certificate(b));
  } catch (err) {
    throw refuse(`the CA certificate file holds a certificate that cannot be read: ${messageOf(err)}`, err);
  }
  const [cert, ...chain] = certs as [X509Certificate, ...X509Certificate[]];
  const info = parseCertificate(blocks[0]!);
  if (!cert.ca) throw refuse(`${info.subjectDn} is not a CA certificate (basicConstraints CA:TRUE is not set)`);
  const key = readKey(keyPem);
  if (key.type !== 'private' || !cert.checkPrivateKey(key)) throw refuse(`the key is not the private key of ${info.subjectDn}`);
  if (info.notAfter.getTime() <= now) throw refuse(`${info.subjectDn} expired on ${info.notAfter.toISOString()}`);
  if (info.notBefore.getTime() > now + 300_000) throw refuse(`${info.subjectDn} is not valid before ${info.notBefore.toISOString()}`);

  // One trial CRL proves both that the key signs and that keyUsage (when present) allows cRLSign.
  const plainKey = key.export({ type: 'pkcs8', format: 'pem' }).toString();
  let signsCrls: boolean;
  try {
    signsCrls = await parseCrl(await createCrl({ ca: { certPem: blocks[0]!, keyPem: plainKey }, revoked: [] })).verify(blocks[0]!);
  } catch (err) {
    throw refuse(`cannot sign with ${info.subjectDn}: ${messageOf(err)}`, err);
  }
  if (!signsCrls) throw refuse(`${info.subjectDn} may not sign CRLs (its keyUsage lacks cRLSign)`);

  for (let i = 0; i < chain.length; i++) {
    const below = certs[i]!;
    const above = chain[i]!;
    if (!above.ca) throw refuse(`the chain holds ${above.subject.replace(/\n/g, ', ')}, which is not a CA certificate`);
    if (!below.checkIssued(above) || !below.verify(above.publicKey)) {
      throw refuse(`the chain does not link up: ${below.subject.replace(/\n/g, ', ')} was not issued by ${above.subject.replace(/\n/g, ', ')} (give the CA certificate first, then its issuer, up to the root)`);
    }
  }
  const top = certs[certs.length - 1]!;
  const reachesRoot = selfSigned(top);
  const warnings: string[] = [];
  if (!reachesRoot) {
    warnings.push(
      `the chain ends at ${top.subject.replace(/\n/g, ', ')}, which is not a self-signed root: add the root (and any intermediates) after the CA certificate, or clients and Gatehouse cannot verify certificates up to a trust anchor`,
    );
  }
  const daysLeft = Math.floor((info.notAfter.getTime() - now) / 86_400_000);
  if (daysLeft < 365) warnings.push(`${info.subjectDn} expires in ${daysLeft} days (${info.notAfter.toISOString()})`);
  for (const c of chain) {
    if (Date.parse(c.validTo) <= now) warnings.push(`${c.subject.replace(/\n/g, ', ')} in the chain has expired`);
  }
  return {
    certPem: blocks[0]!,
    chainPem: blocks.slice(1).join(''),
    serial: info.serial,
    subject: info.subjectDn,
    notBefore: info.notBefore.getTime(),
    notAfter: info.notAfter.getTime(),
    fingerprint256: info.fingerprint256,
    reachesRoot,
    warnings,
  };
}

/** Whether `pem` (one certificate) is self-signed. */
export function isSelfSigned(pem: string): boolean {
  return selfSigned(new X509Certificate(pem));
}

/**
 * Refuses weak keys in a certificate signed from a CSR (checked on the result, before anything is stored):
 * RSA below 2048 bits, elliptic curves other than P-256, P-384 and P-521.
 */
export function checkRequestKey(certPem: string): void {
  const key = new X509Certificate(certPem).publicKey;
  const details = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === 'rsa' && (details.modulusLength ?? 0) < 2048) {
    throw refuse(`the CSR's RSA key has ${details.modulusLength ?? '?'} bits; at least 2048 are needed`);
  }
  if (key.asymmetricKeyType === 'ec' && !['prime256v1', 'secp384r1', 'secp521r1'].includes(details.namedCurve ?? '')) {
    throw refuse(`the CSR's key is on curve ${details.namedCurve ?? '?'}; use P-256, P-384 or P-521`);
  }
}
