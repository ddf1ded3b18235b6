import { createPrivateKey, createPublicKey, generateKeyPair, sign, verify, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import { GatehouseError } from '../core/index.ts';
import * as der from './der.ts';
import { Oid } from './oid.ts';

/** Key pairs Gatehouse generates. ECDSA P-256 unless asked otherwise. */
export type KeyAlgorithm = 'ec-p256' | 'rsa-2048';
export const keyAlgorithms: readonly KeyAlgorithm[] = ['ec-p256', 'rsa-2048'];

const generate = promisify(generateKeyPair);

export async function generatePrivateKey(algorithm: KeyAlgorithm = 'ec-p256'): Promise<KeyObject> {
  switch (algorithm) {
    case 'ec-p256':
      return (await generate('ec', { namedCurve: 'P-256' })).privateKey;
    case 'rsa-2048':
      return (await generate('rsa', { modulusLength: 2048 })).privateKey;
    default:
      throw new GatehouseError('ERR_USAGE', `keyAlgorithm "${String(algorithm)}" is not one of ${keyAlgorithms.join(', ')}`);
  }
}

/** PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), unencrypted. */
export function exportPrivateKeyPem(key: KeyObject): string {
  return key.export({ type: 'pkcs8', format: 'pem' }).toString();
}

export function exportPrivateKeyDer(key: KeyObject): Buffer {
  return key.export({ type: 'pkcs8', format: 'der' });
}

/** Reads an unencrypted private key: PKCS#8, or the older PKCS#1 / SEC 1 PEM forms. */
export function loadPrivateKey(pem: string, what: string): KeyObject {
  if (typeof pem !== 'string') throw new GatehouseError('ERR_USAGE', `${what} must be a PEM string`);
  try {
    return createPrivateKey({ key: pem, format: 'pem' });
  } catch (err) {
    throw new GatehouseError('ERR_USAGE', `${what} is not an unencrypted PEM private key`, { cause: err });
  }
}

/** The DER SubjectPublicKeyInfo of a key's public half. */
export function publicKeyInfo(key: KeyObject): Buffer {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  return pub.export({ type: 'spki', format: 'der' });
}

export function publicKeyFromInfo(spki: Buffer): KeyObject {
  return createPublicKey({ key: spki, format: 'der', type: 'spki' });
}

/** How a private key signs: the AlgorithmIdentifier to write and the digest to use. */
export interface Signer {
  readonly key: KeyObject;
  readonly algorithmIdentifier: Buffer;
  readonly digest: string | null;
}

const ecDigests: Record<string, [digest: string, oid: string]> = {
  prime256v1: ['sha256', Oid.ecdsaWithSha256],
  secp384r1: ['sha384', Oid.ecdsaWithSha384],
  secp521r1: ['sha512', Oid.ecdsaWithSha512],
};

export function signerFor(key: KeyObject): Signer {
  const type = key.asymmetricKeyType;
  if (type === 'rsa') {
    return { key, digest: 'sha256', algorithmIdentifier: der.sequence(der.oid(Oid.sha256WithRsa), der.nullValue()) };
  }
  if (type === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve ?? '';
    const entry = ecDigests[curve];
    if (entry) return { key, digest: entry[0], algorithmIdentifier: der.sequence(der.oid(entry[1])) };
  }
  if (type === 'ed25519') return { key, digest: null, algorithmIdentifier: der.sequence(der.oid(Oid.ed25519)) };
  throw new GatehouseError('ERR_USAGE', `cannot sign with a ${type ?? 'unknown'} key (use ECDSA P-256/P-384/P-521, RSA or Ed25519)`);
}

export function signWith(signer: Signer, data: Buffer): Buffer {
  return sign(signer.digest, data, signer.key);
}

const verifyDigests: Record<string, string | null> = {
  [Oid.ecdsaWithSha256]: 'sha256',
  [Oid.ecdsaWithSha384]: 'sha384',
  [Oid.ecdsaWithSha512]: 'sha512',
  [Oid.sha256WithRsa]: 'sha256',
  [Oid.sha384WithRsa]: 'sha384',
  [Oid.sha512WithRsa]: 'sha512',
  [Oid.ed25519]: null,
};

/**
 * Checks `signature` over `data` under the AlgorithmIdentifier `algorithm`.
 * SHA-1 and RSA-PSS signatures are not accepted; they are reported as unsupported.
 */
export function verifyWith(algorithm: der.Tlv, data: Buffer, signature: Buffer, publicKey: KeyObject): boolean {
  const name = der.readOid(der.children(der.expectTag(algorithm, der.Tag.SEQUENCE, 'an algorithm'))[0]);
  const digest = verifyDigests[name];
  if (digest === undefined) throw new GatehouseError('ERR_CERT_INVALID', `unsupported signature algorithm ${name}`);
  try {
    return verify(digest, data, publicKey, signature);
  } catch {
    return false; // the key does not fit the algorithm
  }
}
