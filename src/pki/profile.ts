import { GatehouseError } from '../core/index.ts';
import * as ext from './extension.ts';
import { publicKeyFromInfo } from './key.ts';
import { Oid } from './oid.ts';

/** What a certificate is for; each kind is one fixed set of extensions. */
export type CertificateKind = 'client' | 'server' | 'peer' | 'ca';
export const certificateKinds: readonly CertificateKind[] = ['client', 'server', 'peer', 'ca'];

export interface ProfileInput {
  readonly kind: CertificateKind;
  readonly spki: Buffer;
  /** The issuer's key identifier; the certificate's own for a self-signed root. */
  readonly authorityKeyId: Buffer;
  readonly emailAddresses?: readonly string[];
  readonly dnsNames?: readonly string[];
  readonly ipAddresses?: readonly string[];
  readonly pathLength?: number;
}

export function checkKind(kind: unknown, allowed: readonly CertificateKind[] = certificateKinds): CertificateKind {
  if (!allowed.includes(kind as CertificateKind)) {
    throw new GatehouseError('ERR_USAGE', `kind must be one of ${allowed.map((k) => `'${k}'`).join(', ')}, not ${JSON.stringify(kind)}`);
  }
  return kind as CertificateKind;
}

function checkList(value: unknown, what: string): readonly string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw new GatehouseError('ERR_USAGE', `${what} must be an array of strings`);
  return value as string[];
}

export function checkPathLength(value: unknown): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 255) {
    throw new GatehouseError('ERR_USAGE', `pathLength must be a whole number from 0 to 255, not ${String(value)}`);
  }
  return value;
}

/**
 * - ca: basicConstraints cA (critical, optional pathLength), keyUsage keyCertSign + cRLSign.
 * - server: cA false, keyUsage digitalSignature (+ keyEncipherment for RSA keys), EKU serverAuth,
 *   SAN DNS names (wildcards allowed) and IP addresses; at least one is required.
 * - client: the same key usages, EKU clientAuth, SAN e-mail for each subject emailAddress
 *   plus any DNS names and IP addresses given.
 * - peer: as server, with EKU serverAuth and clientAuth (one process talking to another, both ways).
 * Every kind carries subjectKeyIdentifier and authorityKeyIdentifier.
 */
export function profileExtensions(input: ProfileInput): Buffer[] {
  const { kind } = input;
  const dns = checkList(input.dnsNames, 'dnsNames');
  const ip = checkList(input.ipAddresses, 'ipAddresses');
  const out: Buffer[] = [];
  if (kind === 'ca') {
    out.push(ext.basicConstraints(true, checkPathLength(input.pathLength)));
    out.push(ext.keyUsage(['keyCertSign', 'cRLSign']));
    const san = ext.subjectAltName({ dns, ip });
    if (san) out.push(san);
  } else {
    const rsa = publicKeyFromInfo(input.spki).asymmetricKeyType === 'rsa';
    out.push(ext.basicConstraints(false));
    out.push(ext.keyUsage(rsa ? ['digitalSignature', 'keyEncipherment'] : ['digitalSignature']));
    out.push(ext.extendedKeyUsage(kind === 'peer' ? [Oid.serverAuth, Oid.clientAuth] : [kind === 'server' ? Oid.serverAuth : Oid.clientAuth]));
    const email = kind === 'client' ? (input.emailAddresses ?? []) : [];
    const san = ext.subjectAltName({ dns, ip, email });
    if (san) out.push(san);
    else if (kind === 'server' || kind === 'peer') {
      throw new GatehouseError('ERR_USAGE', `a ${kind} certificate needs dnsNames or ipAddresses (clients match the host against them)`);
    }
  }
  out.push(ext.subjectKeyIdentifier(ext.keyIdentifier(input.spki)));
  out.push(ext.authorityKeyIdentifier(input.authorityKeyId));
  return out;
}
