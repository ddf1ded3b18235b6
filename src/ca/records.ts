/**
 * What the internal CA keeps in the store: one record type per kind, the ids they live under, and the checks on
 * what callers hand in. Times are milliseconds since the epoch, emails lower-case, serials canonical
 * (`normaliseSerial`: upper-case hex, two digits a byte).
 *
 * No private key is ever stored in clear: the CA key and the keys of server certificates are sealed with the
 * keyring (`Keyring.encrypt`), and device keys generated without a CSR are handed back once and not kept.
 */
import { isIP } from 'node:net';
import { GatehouseError } from '../core/index.ts';
import { normaliseSerial } from '../pki/index.ts';

/** Kind `ca`, id `current`: the CA material. */
export const CA_KIND = 'ca';
export const CA_ID = 'current';
/** Kind `certificate`, id = canonical serial: every certificate the CA issued, until its notAfter. */
export const CERTIFICATE_KIND = 'certificate';
/** Kind `server-certificate`, id = `serverCertificateId(hosts)`: the current certificate and sealed key for a host set. */
export const SERVER_CERTIFICATE_KIND = 'server-certificate';

/** The kinds the hot path reads from memory: a `StoreMirror` handed to the CA must hold both. */
export const CA_MIRROR_KINDS: readonly string[] = Object.freeze([CA_KIND, CERTIFICATE_KIND]);

/** Keyring purposes: what each sealed value is. */
export const CA_KEY_PURPOSE = 'ca-key';
export const SERVER_KEY_PURPOSE = 'server-certificate-key';

/**
 * How the CA's key is protected: `secrets-key` when the keyring comes from `identity.secretsKey` (kept outside the
 * store), `store-key` when the keyring key was generated into the same store (an operator accepted that with
 * `--allow-store-key`: whoever reads the store can unseal the CA key).
 */
export type KeyProtection = 'secrets-key' | 'store-key';

/**
 * The protection a new CA key gets, or `ERR_USAGE` when `identity.secretsKey` is not configured and the operator did
 * not accept a keyring key kept in the same store (`allowStoreKey`, `--allow-store-key`).
 */
export function keyProtectionFor(secretsKeyConfigured: boolean, allowStoreKey: boolean | undefined): KeyProtection {
  if (secretsKeyConfigured) return 'secrets-key';
  if (allowStoreKey === true) return 'store-key';
  throw new GatehouseError(
    'ERR_USAGE',
    'identity.secretsKey is not set, so the key sealing the CA key would sit in the same store as the CA key and protect nothing: ' +
      'set identity.secretsKey (e.g. `secretsKey: ${GATEHOUSE_KEY}` with GATEHOUSE_KEY from `openssl rand -base64 32`), or accept this with --allow-store-key',
  );
}

/** How the CA came to be. */
export type CaMode = 'root' | 'intermediate' | 'imported';

/** Kind `ca`, id `current`. */
export type CaRecord = ActiveCaRecord | PendingCaRecord;

interface CaRecordBase {
  readonly mode: CaMode;
  /** the private key (PKCS#8 PEM), sealed with purpose `ca-key` */
  readonly key: string;
  readonly keyProtection: KeyProtection;
  readonly created: number;
  readonly createdBy: string;
}

/** A CA ready to sign. */
export interface ActiveCaRecord extends CaRecordBase {
  readonly state: 'active';
  /** the CA certificate (PEM) */
  readonly certPem: string;
  /** the certificates above it (intermediate or imported CA), PEM, nearest first; '' for a root */
  readonly chainPem: string;
  /** canonical serial of `certPem`: issued certificates record it as `caSerial` */
  readonly serial: string;
  readonly subject: string;
  readonly notBefore: number;
  readonly notAfter: number;
  readonly fingerprint256: string;
  readonly activated: number;
}

/** An intermediate waiting for its signed certificate (`gatehouse ca init --csr`, then `--import-cert`). */
export interface PendingCaRecord extends CaRecordBase {
  readonly state: 'pending';
  readonly mode: 'intermediate';
  readonly csrPem: string;
  /** the subject asked for */
  readonly subject: string;
}

/** What an issued certificate is for. */
export type IssuedKind = 'device' | 'connector' | 'server' | 'instance';

/** The one DNS name of an instance certificate: peers dial with it as SNI and check the certificate against it. */
export function instanceHost(instanceId: string): string {
  return `${instanceId.toLowerCase()}.instance.gatehouse.invalid`;
}

/** An instance id: 1–63 letters and digits (it becomes a DNS label). */
export function checkInstanceId(id: unknown): string {
  if (typeof id !== 'string' || !/^[A-Za-z0-9]{1,63}$/.test(id)) throw bad(`${JSON.stringify(id)} is not an instance id (1–63 letters and digits)`);
  return id;
}

/** Kind `certificate`, id = canonical serial. Stored with expiry `notAfter`, revoked or not. */
export interface CertificateRecord {
  readonly serial: string;
  readonly kind: IssuedKind;
  /** device certificates: the user's lower-case email */
  readonly user?: string;
  /** connector certificates: the connector's name */
  readonly connector?: string;
  /** instance certificates: the Gatehouse instance's id */
  readonly instance?: string;
  /** server certificates: DNS names and IP addresses */
  readonly hosts?: readonly string[];
  /** a label for the device (the connector name for connectors, the first host for servers) */
  readonly device: string;
  /** RFC 4514 subject DN, most specific first */
  readonly subject: string;
  readonly notBefore: number;
  readonly notAfter: number;
  /** SHA-256 of the DER, `AB:CD:…` */
  readonly fingerprint256: string;
  /** the serial of the CA certificate that signed it */
  readonly caSerial: string;
  /** whether the holder's key came in a CSR (`csr`) or was generated here and handed back once (`generated`) */
  readonly keySource: 'csr' | 'generated';
  /** who asked for it: an email, `cli`, `gatehouse` (automatic server certificates) */
  readonly issuedBy: string;
  readonly issued: number;
  readonly revoked?: Revocation;
}

export interface Revocation {
  readonly at: number;
  readonly by: string;
  readonly reason?: string;
}

/** Kind `server-certificate`: the certificate for one host set and its key, sealed with purpose `server-certificate-key`. */
export interface ServerCertificateRecord {
  readonly hosts: readonly string[];
  readonly serial: string;
  readonly certPem: string;
  readonly key: string;
  readonly caSerial: string;
  readonly notBefore: number;
  readonly notAfter: number;
}

// ---------------------------------------------------------------------------------------------- checks

const emailPattern = /^[\x21-\x3f\x41-\x7e]+@[a-z0-9.-]+$/;
const connectorPattern = /^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$/;
const labelPattern = /^(?:\*|[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)$/;

/** Longest validity a device or connector certificate may ask for (the CA/Browser limit of old, as a sane ceiling). */
export const MAX_DAYS = 825;
export const DEFAULT_DAYS = 365;

function bad(message: string): GatehouseError {
  return new GatehouseError('ERR_BAD_REQUEST', message);
}

/** The lower-case email (ASCII: it goes into the certificate's emailAddress and SAN), or `ERR_BAD_REQUEST`. */
export function checkUserEmail(email: unknown): string {
  const e = typeof email === 'string' ? email.trim().toLowerCase() : '';
  if (!emailPattern.test(e) || e.length > 254) throw bad(`${JSON.stringify(email)} is not an email address`);
  return e;
}

/** A connector name as in the configuration (`[a-z0-9-]`, up to 64), or `ERR_BAD_REQUEST`. */
export function checkConnectorName(name: unknown): string {
  if (typeof name !== 'string' || !connectorPattern.test(name)) {
    throw bad(`${JSON.stringify(name)} is not a connector name (lower-case letters, digits and "-", up to 64)`);
  }
  return name;
}

/** A device label: 1–64 printable characters. */
export function checkDevice(device: unknown): string {
  const d = typeof device === 'string' ? device.trim() : '';
  // eslint-disable-next-line no-control-regex
  if (d === '' || d.length > 64 || /[\x00-\x1f\x7f]/.test(d)) throw bad(`${JSON.stringify(device)} is not a device name (1–64 printable characters)`);
  return d;
}

/** Whole days from 1 to `MAX_DAYS`; `DEFAULT_DAYS` when absent. */
export function checkDays(days: unknown, max = MAX_DAYS): number {
  if (days === undefined) return Math.min(DEFAULT_DAYS, max);
  if (typeof days !== 'number' || !Number.isSafeInteger(days) || days < 1 || days > max) {
    throw bad(`days must be a whole number from 1 to ${max}, not ${String(days)}`);
  }
  return days;
}

/** The canonical serial of any spelling (colons, either case, `0x`), or `ERR_BAD_REQUEST`. */
export function checkSerial(serial: unknown): string {
  try {
    return normaliseSerial(serial as string);
  } catch (err) {
    throw new GatehouseError('ERR_BAD_REQUEST', (err as Error).message, { cause: err });
  }
}

/** Host names (a leading `*.` allowed) and IP addresses, lower-case, de-duplicated and sorted; at least one. */
export function checkHosts(hosts: unknown): string[] {
  if (!Array.isArray(hosts) || hosts.length === 0) throw bad('a server certificate needs at least one host name or IP address');
  const out = new Set<string>();
  for (const h of hosts as unknown[]) {
    const host = typeof h === 'string' ? h.trim().toLowerCase().replace(/\.$/, '') : '';
    if (isIP(host) !== 0) {
      out.add(host);
      continue;
    }
    const labels = host.split('.');
    const ok = host.length > 0 && host.length <= 253 && labels.every((l, i) => labelPattern.test(l) && (l !== '*' || i === 0));
    if (!ok) throw bad(`${JSON.stringify(h)} is not a host name or IP address`);
    out.add(host);
  }
  return [...out].sort();
}

/** Splits checked hosts into SAN DNS names and IP addresses. */
export function splitHosts(hosts: readonly string[]): { dnsNames: string[]; ipAddresses: string[] } {
  return { dnsNames: hosts.filter((h) => isIP(h) === 0), ipAddresses: hosts.filter((h) => isIP(h) !== 0) };
}

const MAX_REASON = 200;

/** A revocation reason: up to 200 characters, blank = none. */
export function checkReason(reason: unknown): string | undefined {
  if (reason === undefined) return undefined;
  const r = typeof reason === 'string' ? reason.trim() : '';
  if (r.length > MAX_REASON) throw bad(`a revocation reason is at most ${MAX_REASON} characters`);
  return r === '' ? undefined : r;
}
