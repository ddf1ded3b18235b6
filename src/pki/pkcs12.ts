import { createCipheriv, createHash, createHmac, createPublicKey, pbkdf2Sync, randomBytes } from 'node:crypto';
import { GatehouseError } from '../core/index.ts';
import * as der from './der.ts';
import { exportPrivateKeyDer, loadPrivateKey } from './key.ts';
import { Oid } from './oid.ts';
import { checkOptions } from './options.ts';
import { decodePem } from './pem.ts';
import { certificateDer, readCertificate } from './x509.ts';

export interface EncodePkcs12Options {
  readonly keyPem: string;
  readonly certPem: string;
  /** Issuer certificates to carry along (each string may hold several PEM blocks). */
  readonly chainPems?: readonly string[];
  readonly password: string;
  /** Shown by browsers and keychains when the file is imported. */
  readonly friendlyName?: string;
  /** PBKDF2 and MAC iterations; default and minimum 2048. */
  readonly iterations?: number;
}

const encodeOptions = ['keyPem', 'certPem', 'chainPems', 'password', 'friendlyName', 'iterations'];

/**
 * A PKCS#12 (RFC 7292) file as DER, the way OpenSSL 3 writes one by default:
 * the certificates in a PBES2-encrypted bag (PBKDF2-HMAC-SHA256, AES-256-CBC), the key in a
 * PBES2-shrouded key bag, both linked by a localKeyId (SHA-1 of the certificate), and an
 * HMAC-SHA256 MAC keyed by the RFC 7292 appendix B derivation. EC and RSA keys both work.
 */
export function encodePkcs12(options: EncodePkcs12Options): Buffer {
  checkOptions(options, 'encodePkcs12', encodeOptions);
  const { password, friendlyName } = options;
  const iterations = options.iterations ?? 2048;
  if (typeof password !== 'string') throw new GatehouseError('ERR_USAGE', 'password must be a string');
  if (friendlyName !== undefined && typeof friendlyName !== 'string') throw new GatehouseError('ERR_USAGE', 'friendlyName must be a string');
  if (!Number.isSafeInteger(iterations) || iterations < 2048 || iterations > 10_000_000) {
    throw new GatehouseError('ERR_USAGE', `iterations must be a whole number from 2048 to 10000000, not ${String(iterations)}`);
  }
  const key = loadPrivateKey(options.keyPem, 'keyPem');
  const certDer = certificateDer(options.certPem, 'certPem');
  let spki: Buffer;
  try {
    spki = readCertificate(certDer).spki;
  } catch (err) {
    throw new GatehouseError('ERR_USAGE', 'certPem is not a readable certificate', { cause: err });
  }
  if (!createPublicKey({ key: spki, format: 'der', type: 'spki' }).equals(createPublicKey(key))) {
    throw new GatehouseError('ERR_USAGE', 'keyPem is not the private key of certPem');
  }
  const chain = (options.chainPems ?? []).flatMap((pem, i) => {
    const blocks = typeof pem === 'string' ? decodePem(pem, ['CERTIFICATE']) : [];
    if (blocks.length === 0) throw new GatehouseError('ERR_USAGE', `chainPems[${i}] holds no PEM CERTIFICATE block`);
    return blocks;
  });

  const passwordUtf8 = Buffer.from(password, 'utf8');
  const attributes = bagAttributes(createHash('sha1').update(certDer).digest(), friendlyName);

  const certBags = [certBag(certDer, attributes), ...chain.map((c) => certBag(c))];
  const certsEncrypted = pbes2Encrypt(der.sequence(...certBags), passwordUtf8, iterations);
  const certsInfo = der.sequence(
    der.oid(Oid.encryptedData),
    der.explicit(0, der.sequence(der.integer(0), der.sequence(der.oid(Oid.data), certsEncrypted.algorithm, der.implicit(0, certsEncrypted.ciphertext)))),
  );

  const keyEncrypted = pbes2Encrypt(exportPrivateKeyDer(key), passwordUtf8, iterations);
  const keyBag = der.sequence(
    der.oid(Oid.pkcs8ShroudedKeyBag),
    der.explicit(0, der.sequence(keyEncrypted.algorithm, der.octetString(keyEncrypted.ciphertext))),
    attributes,
  );
  const keyInfo = dataContentInfo(der.sequence(keyBag));

  const authSafe = der.sequence(certsInfo, keyInfo);
  const macSalt = randomBytes(16);
  const macKey = pkcs12DeriveKey(Buffer.concat([der.bmpBytes(password), Buffer.alloc(2)]), macSalt, 3, iterations, 32);
  const mac = createHmac('sha256', macKey).update(authSafe).digest();
  const macData = der.sequence(
    der.sequence(der.sequence(der.oid(Oid.sha256), der.nullValue()), der.octetString(mac)),
    der.octetString(macSalt),
    der.integer(iterations),
  );
  return der.sequence(der.integer(3), dataContentInfo(authSafe), macData);
}

function dataContentInfo(content: Buffer): Buffer {
  return der.sequence(der.oid(Oid.data), der.explicit(0, der.octetString(content)));
}

function attribute(oid: string, value: Buffer): Buffer {
  return der.sequence(der.oid(oid), der.setOf(value));
}

function bagAttributes(localKeyId: Buffer, friendlyName: string | undefined): Buffer {
  const list = [attribute(Oid.localKeyId, der.octetString(localKeyId))];
  if (friendlyName !== undefined) list.push(attribute(Oid.friendlyName, der.bmpString(friendlyName)));
  return der.setOf(...list);
}

function certBag(certDer: Buffer, attributes?: Buffer): Buffer {
  const value = der.sequence(der.oid(Oid.x509Certificate), der.explicit(0, der.octetString(certDer)));
  return der.sequence(der.oid(Oid.certBag), der.explicit(0, value), ...(attributes ? [attributes] : []));
}

/** PBES2 (RFC 8018): PBKDF2-HMAC-SHA256 derives an AES-256-CBC key from the UTF-8 password. */
function pbes2Encrypt(plaintext: Buffer, password: Buffer, iterations: number): { algorithm: Buffer; ciphertext: Buffer } {
  const salt = randomBytes(16);
  const iv = randomBytes(16);
  const key = pbkdf2Sync(password, salt, iterations, 32, 'sha256');
  const cipher = createCipheriv('aes-256-cbc', key, iv);
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  const algorithm = der.sequence(
    der.oid(Oid.pbes2),
    der.sequence(
      der.sequence(
        der.oid(Oid.pbkdf2),
        der.sequence(der.octetString(salt), der.integer(iterations), der.sequence(der.oid(Oid.hmacWithSha256), der.nullValue())),
      ),
      der.sequence(der.oid(Oid.aes256Cbc), der.octetString(iv)),
    ),
  );
  return { algorithm, ciphertext };
}

/**
 * RFC 7292 appendix B.2 with SHA-256 (u = 32, v = 64). `password` is the BMPString with its two
 * zero bytes; `id` 3 derives MAC keys.
 */
export function pkcs12DeriveKey(password: Buffer, salt: Buffer, id: number, iterations: number, length: number): Buffer {
  const u = 32;
  const v = 64;
  const stretch = (src: Buffer, size: number): Buffer => {
    const out = Buffer.alloc(size);
    for (let i = 0; i < size; i++) out[i] = src[i % src.length]!;
    return out;
  };
  const blocksFor = (src: Buffer): Buffer => (src.length === 0 ? Buffer.alloc(0) : stretch(src, v * Math.ceil(src.length / v)));
  const d = Buffer.alloc(v, id);
  const input = Buffer.concat([blocksFor(salt), blocksFor(password)]);
  const parts: Buffer[] = [];
  for (let produced = 0; produced < length; produced += u) {
    let a = createHash('sha256').update(d).update(input).digest();
    for (let r = 1; r < iterations; r++) a = createHash('sha256').update(a).digest();
    parts.push(a);
    if (produced + u >= length) break;
    // I_j = (I_j + B + 1) mod 2^(8v) for every v-byte block of I, B being A repeated to v bytes
    const b = stretch(a, v);
    for (let j = 0; j < input.length; j += v) {
      let carry = 1;
      for (let k = v - 1; k >= 0; k--) {
        const sum = input[j + k]! + b[k]! + carry;
        input[j + k] = sum & 0xff;
        carry = sum >> 8;
      }
    }
  }
  return Buffer.concat(parts).subarray(0, length);
}
