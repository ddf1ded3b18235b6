/**
 * The internal certificate authority: Gatehouse's own CA (a root, an intermediate of the company's CA, or an
 * imported one), kept in the store so every worker and instance signs with the same key, and the certificates it
 * issues to users' devices, to connectors and to Gatehouse's own route hosts.
 *
 * - The CA's private key is sealed with the keyring (purpose `ca-key`) before it reaches the store; it is never
 *   written, returned or logged in clear. Creating a CA needs `identity.secretsKey`: without it the keyring's key
 *   lives in the same store, so the seal would protect nothing (`allowStoreKey` accepts that knowingly).
 * - Every issued certificate is a `certificate` record (id = serial) until its notAfter, revoked or not, so the CRL
 *   lists a revoked certificate for as long as it could otherwise be used.
 * - The hot path (`isRevoked`, `recordOf`, `userOf`, `caCertificatePem`) reads memory only: a `StoreMirror` of
 *   kinds `ca` and `certificate`, fed by the store's change feed. `onRevoked` and `onCaChanged` tell the front
 *   door about changes made by any process (the CLI included), within the store's poll interval.
 *
 * Refusals are `GatehouseError`s: `ERR_CA_NOT_INITIALISED` (no CA yet, or an intermediate waiting for its
 * certificate), `ERR_BAD_REQUEST` (bad input: email, CSR, days, hosts, CA files), `ERR_NOT_FOUND` (unknown
 * serial), `ERR_CONFLICT` (a CA exists and `force` was not given), `ERR_USAGE` (a CA without a secrets key),
 * `ERR_CONFIG_INVALID` (the stored CA key cannot be unsealed with this secrets key), `ERR_NOT_READY` (before
 * `start` or after `close`).
 */
import { X509Certificate, createHash, createPrivateKey, randomBytes } from 'node:crypto';
import { GatehouseError, messageOf, type Logger } from '../core/index.ts';
import {
  createCrl,
  encodePkcs12,
  issueCertificate,
  parseCertificate,
  signCsr,
  type CertificateAuthority,
  type SubjectInput,
} from '../pki/index.ts';
import { StoreMirror, newId, type Store, type StoreChange, type StoreOp, type StoreRecord } from '../store/index.ts';
import type { Keyring } from '../authn/index.ts';
import { AUDIT_KIND, type AuditRecord } from '../directory/index.ts';
import { checkCaMaterial, checkRequestKey, isSelfSigned, makeIntermediateRequest, makeRoot, pemCertificates, type CheckedCa } from './ca-material.ts';
import {
  CA_ID,
  CA_KEY_PURPOSE,
  CA_KIND,
  CA_MIRROR_KINDS,
  CERTIFICATE_KIND,
  SERVER_CERTIFICATE_KIND,
  SERVER_KEY_PURPOSE,
  checkConnectorName,
  checkDays,
  checkInstanceId,
  instanceHost,
  checkDevice,
  checkHosts,
  checkReason,
  checkSerial,
  checkUserEmail,
  keyProtectionFor,
  splitHosts,
  type ActiveCaRecord,
  type CaMode,
  type CaRecord,
  type CertificateRecord,
  type KeyProtection,
  type PendingCaRecord,
  type ServerCertificateRecord,
} from './records.ts';

const DAY = 86_400_000;
/** New certificates start a minute early, so a peer whose clock lags a little accepts them. */
const BACKDATE = 60_000;
/** A CRL is valid for a week and rebuilt at least daily (and at once after a revocation). */
const CRL_VALIDITY = 7 * DAY;
const CRL_REFRESH = DAY;
/** Server certificates: 90 days unless asked otherwise, renewed when a third (at most 30 days) is left. */
const SERVER_DAYS = 90;
const RENEW_AT_MOST = 30 * DAY;
/** Instance certificates (between Gatehouse instances): two days, renewed by their holder when a third is left. */
const INSTANCE_DAYS = 2;
/** How often the revoked set is compared with the mirror, for changes a mirror reload (resync) did not announce. */
const RECONCILE_INTERVAL = 10_000;
const CONNECTOR_OU = 'gatehouse-connector';
const ATTEMPTS = 5;

export interface InternalCaOptions {
  readonly store: Store;
  readonly keyring: Keyring;
  /** Whether `keyring` comes from `identity.secretsKey` (true) or from a key generated into the store (false). */
  readonly secretsKeyConfigured: boolean;
  /**
   * A mirror holding (at least) `CA_MIRROR_KINDS`, started by its owner and shared with the rest of the process.
   * Absent: the CA makes its own, starts it in `start` and closes it in `close`.
   */
  readonly mirror?: StoreMirror;
  /** O and OU written into device certificates; O defaults to the CA's own O. */
  readonly deviceSubject?: { readonly O?: string; readonly OU?: string };
  readonly log?: Logger;
}

/** The CA as an operator sees it (never the key). */
export interface CaInfo {
  readonly state: 'active' | 'pending';
  readonly mode: CaMode;
  readonly subject: string;
  /** active only */
  readonly serial?: string;
  readonly notBefore?: number;
  readonly notAfter?: number;
  readonly fingerprint256?: string;
  readonly keyProtection: KeyProtection;
  readonly created: number;
  readonly createdBy: string;
}

export interface InitOptions {
  /** who does it: an email, or `cli` */
  readonly by: string;
  /** replace an existing (or pending) CA; every certificate the old one issued stops being trusted */
  readonly force?: boolean;
  /** create the CA although `identity.secretsKey` is not configured */
  readonly allowStoreKey?: boolean;
  /** the O of the CA's subject; default `Gatehouse` */
  readonly organisation?: string;
}

export interface ImportCaOptions extends InitOptions {
  /** the CA certificate, then (optionally) the certificates above it up to the root, PEM */
  readonly certPem: string;
  /** its private key, unencrypted PEM */
  readonly keyPem: string;
}

export interface InitResult {
  readonly info: CaInfo;
  /** e.g. a chain that stops short of a root, or a CA that expires within a year */
  readonly warnings: readonly string[];
}

export interface IssueRequest {
  /** a device certificate for this user (lower-cased) … */
  readonly user?: string;
  /** … or a connector certificate for this connector */
  readonly connector?: string;
  /** a label for the device; default `unnamed` (the connector name for connectors) */
  readonly device?: string;
  /** PKCS#10 PEM: only its public key is used (its subject and extensions are ignored); its signature must verify */
  readonly csrPem?: string;
  /** validity in whole days, 1–825; default 365 (never past the CA's own notAfter) */
  readonly days?: number;
  readonly issuedBy: string;
}

export interface IssuedCertificate {
  readonly record: CertificateRecord;
  /** the certificate alone */
  readonly certPem: string;
  /** what a client sends after its certificate: the CA and any intermediates, without a self-signed root ('' for a root CA) */
  readonly chainPem: string;
  /** only without a CSR: the new key (PKCS#8 PEM). Handed back once, never stored. */
  readonly keyPem?: string;
  /** only without a CSR: key, certificate and CA bundle as PKCS#12 (PBES2/AES-256, HMAC-SHA256) */
  readonly p12?: Buffer;
  /** only without a CSR: the one-time password of `p12` */
  readonly p12Password?: string;
}

export interface ServerCertificate {
  readonly hosts: readonly string[];
  readonly serial: string;
  /** the certificate followed by any intermediates: what `tls.createSecureContext({ cert })` takes */
  readonly certPem: string;
  readonly keyPem: string;
  readonly notBefore: number;
  readonly notAfter: number;
  /** from then on `serverCertificate` issues a new one: call it again by then */
  readonly renewAt: number;
}

/** This instance's certificate for the peer relay: its key exists only in the process that asked for it. */
export interface InstanceCertificate {
  readonly serial: string;
  /** the certificate followed by any intermediates */
  readonly certPem: string;
  readonly keyPem: string;
  readonly notAfter: number;
  /** when to ask for a new one */
  readonly renewAt: number;
}

export interface ListFilter {
  readonly user?: string;
  readonly connector?: string;
  readonly kind?: CertificateRecord['kind'];
}

interface LoadedCa {
  readonly record: CaRecord;
  readonly info: CaInfo;
  /** active and unsealed: ready to sign */
  readonly issuer?: CertificateAuthority;
  /** active but the key cannot be unsealed */
  readonly unusable?: string;
  /** the CA and any intermediates above it without a self-signed root */
  readonly sendChain: string;
  /** the CA certificate and every certificate above it */
  readonly bundle: string;
  /** the first O of the CA's subject */
  readonly organisation?: string;
}

/** The active CA with its key unsealed. */
type SigningCa = LoadedCa & { readonly record: ActiveCaRecord; readonly issuer: CertificateAuthority };

interface CachedCrl {
  readonly pem: string;
  readonly generation: number;
  readonly caSerial: string;
  readonly thisUpdate: number;
}

function infoOf(record: CaRecord): CaInfo {
  const base = { mode: record.mode, subject: record.subject, keyProtection: record.keyProtection, created: record.created, createdBy: record.createdBy };
  if (record.state === 'pending') return { state: 'pending', ...base };
  return { state: 'active', ...base, serial: record.serial, notBefore: record.notBefore, notAfter: record.notAfter, fingerprint256: record.fingerprint256 };
}

function isConflict(err: unknown): boolean {
  return err instanceof GatehouseError && err.code === 'ERR_STORE_CONFLICT';
}

/** The store id of a host set: its checked hosts joined, hashed when long. */
export function serverCertificateId(hosts: readonly string[]): string {
  const joined = checkHosts(hosts).join(',');
  return joined.length <= 200 ? joined : `sha256:${createHash('sha256').update(joined).digest('hex')}`;
}

/** When a certificate valid from `notBefore` to `notAfter` is due for renewal: a third of its life, at most 30 days, before the end. */
export function renewalTime(notBefore: number, notAfter: number): number {
  return notAfter - Math.min((notAfter - notBefore) / 3, RENEW_AT_MOST);
}

export class InternalCa {
  readonly #store: Store;
  readonly #keyring: Keyring;
  readonly #secretsKeyConfigured: boolean;
  readonly #mirror: StoreMirror;
  readonly #ownMirror: boolean;
  readonly #deviceSubject: { readonly O?: string; readonly OU?: string };
  readonly #log: Logger | undefined;

  #state: 'new' | 'started' | 'closed' = 'new';
  #ca: LoadedCa | undefined;
  /** serials of revoked certificates, as last announced to `onRevoked` */
  readonly #revoked = new Set<string>();
  /** moves whenever what the CRL lists may have changed */
  #generation = 0;
  #crl: CachedCrl | undefined;
  #crlBuild: Promise<string> | undefined;
  #lastCrlNumber = 0;
  readonly #servers = new Map<string, { readonly certificate: ServerCertificate; readonly caSerial: string }>();
  readonly #serverIssues = new Map<string, Promise<ServerCertificate>>();
  readonly #revokedListeners = new Set<(record: CertificateRecord) => void>();
  readonly #caListeners = new Set<(info: CaInfo | undefined) => void>();
  #timer: NodeJS.Timeout | undefined;

  constructor(options: InternalCaOptions) {
    this.#store = options.store;
    this.#keyring = options.keyring;
    this.#secretsKeyConfigured = options.secretsKeyConfigured === true;
    this.#ownMirror = options.mirror === undefined;
    this.#mirror = options.mirror ?? new StoreMirror(options.store, CA_MIRROR_KINDS);
    this.#deviceSubject = { ...options.deviceSubject };
    this.#log = options.log;
  }

  // ------------------------------------------------------------------------------------------ lifecycle

  /** Loads the CA and the certificates (starting the mirror when it is the CA's own) and follows changes. */
  async start(): Promise<void> {
    if (this.#state !== 'new') throw new GatehouseError('ERR_NOT_READY', `the internal CA was already ${this.#state}`);
    if (this.#ownMirror) await this.#mirror.start();
    this.#state = 'started';
    this.#mirror.onChange((c) => this.#onChange(c));
    this.#loadCa(this.#mirror.get<CaRecord>(CA_KIND, CA_ID), false);
    this.#reconcile(false);
    this.#timer = setInterval(() => this.#reconcile(true), RECONCILE_INTERVAL).unref();
  }

  /** Stops following changes (and closes the CA's own mirror). Every later call fails with `ERR_NOT_READY`. */
  close(): void {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    clearInterval(this.#timer);
    if (this.#ownMirror) this.#mirror.close();
    this.#revokedListeners.clear();
    this.#caListeners.clear();
  }

  /** Nothing to drain: the same as `close`. */
  destroy(): void {
    this.close();
  }

  #ready(): void {
    if (this.#state === 'new') throw new GatehouseError('ERR_NOT_READY', 'the internal CA has not been started');
    if (this.#state === 'closed') throw new GatehouseError('ERR_NOT_READY', 'the internal CA has been closed');
  }

  // ------------------------------------------------------------------------------------------ hot path (memory only)

  /** Whether the certificate with this canonical serial (`canonicalSerialFromNode`) was issued here and revoked. */
  isRevoked(serial: string): boolean {
    return this.#mirror.get<CertificateRecord>(CERTIFICATE_KIND, serial)?.revoked !== undefined;
  }

  /** The record of an unexpired certificate issued here, by canonical serial. */
  recordOf(serial: string): CertificateRecord | undefined {
    return this.#mirror.get<CertificateRecord>(CERTIFICATE_KIND, serial);
  }

  /** The user a device certificate was issued to (undefined for connectors, servers and unknown serials). */
  userOf(serial: string): string | undefined {
    return this.recordOf(serial)?.user;
  }

  /** The CA as it stands, or undefined before `ca init`. */
  info(): CaInfo | undefined {
    this.#ready();
    return this.#ca?.info;
  }

  /** The CA certificate alone (PEM). `ERR_CA_NOT_INITIALISED` when there is no active CA. */
  caCertificatePem(): string {
    return this.#active().record.certPem;
  }

  /**
   * The CA certificate followed by every certificate above it (up to the root when it was given): what
   * `/ca/ca.crt` serves, and what the TLS layer trusts for client certificates.
   */
  caBundlePem(): string {
    return this.#active().bundle;
  }

  /** Called with each certificate revoked by any process, once, soon after (the store's poll interval). Returns an unsubscribe. */
  onRevoked(listener: (record: CertificateRecord) => void): () => void {
    this.#ready();
    this.#revokedListeners.add(listener);
    return () => this.#revokedListeners.delete(listener);
  }

  /** Called when the CA is created, replaced or finished by any process (undefined when it was removed). Returns an unsubscribe. */
  onCaChanged(listener: (info: CaInfo | undefined) => void): () => void {
    this.#ready();
    this.#caListeners.add(listener);
    return () => this.#caListeners.delete(listener);
  }

  // ------------------------------------------------------------------------------------------ setting up the CA

  /** A new root CA: EC P-256, CN "Gatehouse internal CA", O `organisation`, 10 years. */
  async createRoot(options: InitOptions): Promise<InitResult> {
    this.#ready();
    const by = this.#by(options.by);
    const protection = this.#protection(options);
    const existing = await this.#replaceable(options);
    const { certPem, keyPem } = await makeRoot(options.organisation);
    const checked = await checkCaMaterial(certPem, keyPem, Date.now());
    const record = this.#activeRecord('root', checked, keyPem, protection, by);
    await this.#writeCa(record, existing, 'ca.create-root', by);
    return { info: infoOf(record), warnings: [] };
  }

  /**
   * The first half of an intermediate: a new key (sealed in the store, like the CA key) and a CSR for the company's
   * CA to sign as a CA certificate. `completeIntermediate` finishes it; until then the CA is pending.
   */
  async requestIntermediate(options: InitOptions): Promise<{ csrPem: string; info: CaInfo }> {
    this.#ready();
    const by = this.#by(options.by);
    const protection = this.#protection(options);
    const existing = await this.#replaceable(options);
    const { csrPem, keyPem, subject } = await makeIntermediateRequest(options.organisation);
    const record: PendingCaRecord = {
      state: 'pending',
      mode: 'intermediate',
      csrPem,
      subject,
      key: this.#keyring.encrypt(CA_KEY_PURPOSE, keyPem),
      keyProtection: protection,
      created: Date.now(),
      createdBy: by,
    };
    await this.#writeCa(record, existing, 'ca.request-intermediate', by);
    return { csrPem, info: infoOf(record) };
  }

  /**
   * The second half: the certificate the company's CA signed for the pending request (first in `certPem`, then its
   * issuers up to the root). It must be a CA certificate for the pending key.
   */
  async completeIntermediate(options: { readonly certPem: string; readonly by: string }): Promise<InitResult> {
    this.#ready();
    const by = this.#by(options.by);
    const existing = await this.#store.get<CaRecord>(CA_KIND, CA_ID);
    if (existing?.value.state !== 'pending') {
      throw new GatehouseError(
        'ERR_CA_NOT_INITIALISED',
        existing ? 'the internal CA is already active: there is no pending intermediate request to complete' : 'there is no pending intermediate request: create one first (ca init --csr)',
      );
    }
    const keyPem = this.#unseal(existing.value);
    const [first] = pemCertificates(typeof options.certPem === 'string' ? options.certPem : '');
    if (!first) throw new GatehouseError('ERR_BAD_REQUEST', 'no PEM CERTIFICATE block found in the signed certificate file');
    let matches: boolean;
    try {
      matches = new X509Certificate(first).checkPrivateKey(createPrivateKey(keyPem));
    } catch (err) {
      throw new GatehouseError('ERR_BAD_REQUEST', `the signed certificate cannot be read: ${messageOf(err)}`, { cause: err });
    }
    if (!matches) {
      throw new GatehouseError('ERR_BAD_REQUEST', 'the signed certificate is not for the key of the pending request (was it made from another CSR?)');
    }
    const checked = await checkCaMaterial(options.certPem, keyPem, Date.now());
    const record = this.#activeRecord('intermediate', checked, keyPem, existing.value.keyProtection, existing.value.createdBy, existing.value.created);
    await this.#writeCa(record, existing, 'ca.complete-intermediate', by);
    return { info: infoOf(record), warnings: checked.warnings };
  }

  /** An existing CA certificate (then its chain) and its unencrypted key. */
  async importCa(options: ImportCaOptions): Promise<InitResult> {
    this.#ready();
    const by = this.#by(options.by);
    const protection = this.#protection(options);
    const existing = await this.#replaceable(options);
    if (typeof options.certPem !== 'string' || typeof options.keyPem !== 'string') {
      throw new GatehouseError('ERR_BAD_REQUEST', 'importing a CA needs its certificate and its key, both PEM');
    }
    const checked = await checkCaMaterial(options.certPem, options.keyPem, Date.now());
    // re-exported as PKCS#8, whatever form it came in
    const keyPem = createPrivateKey(options.keyPem).export({ type: 'pkcs8', format: 'pem' }).toString();
    const record = this.#activeRecord('imported', checked, keyPem, protection, by);
    await this.#writeCa(record, existing, 'ca.import', by);
    return { info: infoOf(record), warnings: checked.warnings };
  }

  #protection(options: InitOptions): KeyProtection {
    return keyProtectionFor(this.#secretsKeyConfigured, options.allowStoreKey);
  }

  /** The current CA record, when `force` allows replacing it; `ERR_CONFLICT` otherwise. */
  async #replaceable(options: InitOptions): Promise<StoreRecord<CaRecord> | undefined> {
    const existing = await this.#store.get<CaRecord>(CA_KIND, CA_ID);
    if (!existing || options.force === true) return existing;
    const c = existing.value;
    if (c.state === 'pending') {
      throw new GatehouseError('ERR_CONFLICT', `an intermediate CA (${c.subject}) is waiting for its signed certificate: import it (--import-cert), or use --force to start over`);
    }
    throw new GatehouseError(
      'ERR_CONFLICT',
      `the internal CA already exists (${c.subject}, serial ${c.serial}, until ${new Date(c.notAfter).toISOString()}); replacing it makes every certificate it issued untrusted: use --force to replace it`,
    );
  }

  #activeRecord(mode: CaMode, checked: CheckedCa, keyPem: string, protection: KeyProtection, by: string, created?: number): ActiveCaRecord {
    const now = Date.now();
    return {
      state: 'active',
      mode,
      certPem: checked.certPem,
      chainPem: checked.chainPem,
      serial: checked.serial,
      subject: checked.subject,
      notBefore: checked.notBefore,
      notAfter: checked.notAfter,
      fingerprint256: checked.fingerprint256,
      key: this.#keyring.encrypt(CA_KEY_PURPOSE, keyPem),
      keyProtection: protection,
      created: created ?? now,
      createdBy: by,
      activated: now,
    };
  }

  async #writeCa(record: CaRecord, existing: StoreRecord<CaRecord> | undefined, action: string, by: string): Promise<void> {
    const ops: StoreOp[] = [
      { op: 'put', kind: CA_KIND, id: CA_ID, value: record, options: { ifRevision: existing?.revision ?? 0 } },
      this.#auditOp(action, `${CA_KIND}:${CA_ID}`, by, infoOf(record), existing ? infoOf(existing.value) : undefined),
    ];
    try {
      await this.#store.transact(ops);
    } catch (err) {
      if (isConflict(err)) throw new GatehouseError('ERR_CONFLICT', 'the internal CA was changed by another process meanwhile: look at it and try again', { cause: err });
      throw err;
    }
    this.#log?.info('ca_changed', { action, mode: record.mode, state: record.state, subject: record.subject, by });
    await this.#afterWrite([{ kind: CA_KIND, id: CA_ID }]);
  }

  // ------------------------------------------------------------------------------------------ issuing

  /**
   * A client certificate for a user's device (CN and emailAddress = the email, SAN email, O/OU from the options) or
   * for a connector (CN = its name, OU `gatehouse-connector`). With a CSR, only its public key is used; without one
   * a key is generated and handed back once, with a PKCS#12 and its one-time password.
   */
  async issue(request: IssueRequest): Promise<IssuedCertificate> {
    this.#ready();
    const { user, connector } = request;
    if ((user === undefined) === (connector === undefined)) throw new GatehouseError('ERR_BAD_REQUEST', 'a certificate is for a user or for a connector: give exactly one');
    const email = user !== undefined ? checkUserEmail(user) : undefined;
    const name = connector !== undefined ? checkConnectorName(connector) : undefined;
    const device = request.device !== undefined ? checkDevice(request.device) : (name ?? 'unnamed');
    const days = checkDays(request.days);
    const by = this.#by(request.issuedBy);
    if (request.csrPem !== undefined && (typeof request.csrPem !== 'string' || !request.csrPem.includes('-----BEGIN'))) {
      throw new GatehouseError('ERR_BAD_REQUEST', 'the CSR must be PEM (-----BEGIN CERTIFICATE REQUEST-----)');
    }
    const ca = this.#signing();
    const organisation = this.#deviceSubject.O ?? ca.organisation;
    const subject: SubjectInput =
      email !== undefined
        ? { ...(organisation ? { O: organisation } : {}), ...(this.#deviceSubject.OU ? { OU: this.#deviceSubject.OU } : {}), CN: email, emailAddress: email }
        : { ...(organisation ? { O: organisation } : {}), OU: CONNECTOR_OU, CN: name! };
    const now = Date.now();
    const notBefore = new Date(now - BACKDATE);
    const notAfter = new Date(Math.min(now + days * DAY, ca.record.notAfter));

    let certPem: string;
    let keyPem: string | undefined;
    if (request.csrPem !== undefined) {
      try {
        certPem = (await signCsr({ ca: ca.issuer, csrPem: request.csrPem, kind: 'client', subjectOverride: subject, notBefore, notAfter })).certPem;
      } catch (err) {
        if (err instanceof GatehouseError && (err.code === 'ERR_CERT_INVALID' || err.code === 'ERR_USAGE')) {
          throw new GatehouseError('ERR_BAD_REQUEST', `the CSR was refused: ${err.message}`, { cause: err });
        }
        throw err;
      }
      checkRequestKey(certPem);
    } else {
      const issued = await issueCertificate({ ca: ca.issuer, subject, kind: 'client', notBefore, notAfter });
      certPem = issued.certPem;
      keyPem = issued.keyPem;
    }

    const record = this.#certificateRecord(certPem, ca, {
      kind: email !== undefined ? 'device' : 'connector',
      ...(email !== undefined ? { user: email } : { connector: name! }),
      device,
      keySource: keyPem === undefined ? 'csr' : 'generated',
      issuedBy: by,
      issued: now,
    });
    await this.#store.transact([this.#putCertificate(record), this.#auditOp('certificate.issue', `${CERTIFICATE_KIND}:${record.serial}`, by, record)]);
    this.#log?.info('ca_certificate_issued', { serial: record.serial, kind: record.kind, user: record.user, connector: record.connector, device, by });
    await this.#afterWrite([{ kind: CERTIFICATE_KIND, id: record.serial }]);

    if (keyPem === undefined) return { record, certPem, chainPem: ca.sendChain };
    const p12Password = randomBytes(15).toString('base64url');
    const p12 = encodePkcs12({
      keyPem,
      certPem,
      chainPems: ca.bundle ? [ca.bundle] : [],
      password: p12Password,
      friendlyName: email !== undefined ? `${email} (${device})` : `connector ${name}`,
    });
    return { record, certPem, chainPem: ca.sendChain, keyPem, p12, p12Password };
  }

  /**
   * The certificate for a set of host names (`*.` wildcards allowed) and IP addresses, issued by the CA and kept in
   * the store with its key sealed, so every process serves the same one. A new one is issued when the stored one is
   * due for renewal (`renewAt`), was issued by another CA, or cannot be unsealed.
   */
  async serverCertificate(hosts: readonly string[], options: { readonly days?: number } = {}): Promise<ServerCertificate> {
    this.#ready();
    const list = checkHosts(hosts);
    const days = checkDays(options.days ?? SERVER_DAYS);
    const id = serverCertificateId(list);
    const ca = this.#signing();
    const caSerial = ca.record.serial;
    const held = this.#servers.get(id);
    if (held && held.caSerial === caSerial && Date.now() < held.certificate.renewAt) return held.certificate;
    let pending = this.#serverIssues.get(id);
    if (!pending) {
      pending = this.#serverCertificate(id, list, days, ca).finally(() => this.#serverIssues.delete(id));
      this.#serverIssues.set(id, pending);
    }
    return pending;
  }

  async #serverCertificate(id: string, hosts: string[], days: number, ca: SigningCa): Promise<ServerCertificate> {
    const caSerial = ca.record.serial;
    for (let attempt = 0; ; attempt++) {
      const stored = await this.#store.get<ServerCertificateRecord>(SERVER_CERTIFICATE_KIND, id);
      const usable = stored && stored.value.caSerial === caSerial && Date.now() < renewalTime(stored.value.notBefore, stored.value.notAfter) && this.#openServer(stored.value, ca);
      if (usable) {
        this.#servers.set(id, { certificate: usable, caSerial });
        return usable;
      }
      const now = Date.now();
      const { dnsNames, ipAddresses } = splitHosts(hosts);
      const cn = hosts.find((h) => h.length <= 64);
      const organisation = this.#deviceSubject.O ?? ca.organisation;
      const subject: SubjectInput = cn ? { ...(organisation ? { O: organisation } : {}), CN: cn } : { O: organisation ?? 'Gatehouse' };
      const issued = await issueCertificate({
        ca: ca.issuer,
        subject,
        kind: 'server',
        dnsNames,
        ipAddresses,
        notBefore: new Date(now - BACKDATE),
        notAfter: new Date(Math.min(now + days * DAY, ca.record.notAfter)),
      });
      const record = this.#certificateRecord(issued.certPem, ca, { kind: 'server', hosts, device: hosts[0]!, keySource: 'generated', issuedBy: 'gatehouse', issued: now });
      const value: ServerCertificateRecord = {
        hosts,
        serial: record.serial,
        certPem: issued.certPem,
        key: this.#keyring.encrypt(SERVER_KEY_PURPOSE, issued.keyPem),
        caSerial,
        notBefore: record.notBefore,
        notAfter: record.notAfter,
      };
      try {
        await this.#store.transact([
          { op: 'put', kind: SERVER_CERTIFICATE_KIND, id, value, options: { ifRevision: stored?.revision ?? 0, expiresAt: record.notAfter } },
          this.#putCertificate(record),
          this.#auditOp('certificate.issue', `${CERTIFICATE_KIND}:${record.serial}`, 'gatehouse', record),
        ]);
      } catch (err) {
        // another process renewed it first: use theirs
        if (isConflict(err) && attempt < ATTEMPTS) continue;
        throw err;
      }
      this.#log?.info('ca_server_certificate_issued', { serial: record.serial, hosts, notAfter: new Date(record.notAfter).toISOString() });
      await this.#afterWrite([{ kind: CERTIFICATE_KIND, id: record.serial }]);
      const out = this.#serverResult(value, issued.keyPem, ca);
      this.#servers.set(id, { certificate: out, caSerial });
      return out;
    }
  }

  /**
   * A certificate for this Gatehouse instance to prove itself to the others and to serve them (the peer relay between
   * instances): kind `instance`, EKU serverAuth and clientAuth, the one DNS name `instanceHost(id)`, two days. Its key is
   * handed back and never stored (each process makes its own at start and renews it itself); the record is kept like
   * any other certificate's, so it can be listed and revoked.
   */
  async instanceCertificate(instanceId: string): Promise<InstanceCertificate> {
    this.#ready();
    const id = checkInstanceId(instanceId);
    const ca = this.#signing();
    const now = Date.now();
    const host = instanceHost(id);
    const organisation = this.#deviceSubject.O ?? ca.organisation;
    const issued = await issueCertificate({
      ca: ca.issuer,
      subject: { ...(organisation ? { O: organisation } : {}), OU: 'gatehouse-instance', CN: host },
      kind: 'peer',
      dnsNames: [host],
      notBefore: new Date(now - BACKDATE),
      notAfter: new Date(Math.min(now + INSTANCE_DAYS * DAY, ca.record.notAfter)),
    });
    const record = this.#certificateRecord(issued.certPem, ca, { kind: 'instance', instance: id, hosts: [host], device: id, keySource: 'generated', issuedBy: 'gatehouse', issued: now });
    await this.#store.transact([this.#putCertificate(record), this.#auditOp('certificate.issue', `${CERTIFICATE_KIND}:${record.serial}`, 'gatehouse', record)]);
    this.#log?.info('ca_instance_certificate_issued', { serial: record.serial, instance: id, notAfter: new Date(record.notAfter).toISOString() });
    await this.#afterWrite([{ kind: CERTIFICATE_KIND, id: record.serial }]);
    return {
      serial: record.serial,
      certPem: issued.certPem + ca.sendChain,
      keyPem: issued.keyPem,
      notAfter: record.notAfter,
      renewAt: renewalTime(record.notBefore, record.notAfter),
    };
  }

  #openServer(value: ServerCertificateRecord, ca: LoadedCa): ServerCertificate | undefined {
    try {
      return this.#serverResult(value, this.#keyring.decrypt(SERVER_KEY_PURPOSE, value.key), ca);
    } catch {
      this.#log?.warn('ca_server_key_unusable', { serial: value.serial, hosts: value.hosts, action: 'issuing a new certificate' });
      return undefined;
    }
  }

  #serverResult(value: ServerCertificateRecord, keyPem: string, ca: LoadedCa): ServerCertificate {
    return {
      hosts: value.hosts,
      serial: value.serial,
      certPem: value.certPem + ca.sendChain,
      keyPem,
      notBefore: value.notBefore,
      notAfter: value.notAfter,
      renewAt: renewalTime(value.notBefore, value.notAfter),
    };
  }

  #certificateRecord(
    certPem: string,
    ca: SigningCa,
    facts: Pick<CertificateRecord, 'kind' | 'user' | 'connector' | 'instance' | 'hosts' | 'device' | 'keySource' | 'issuedBy' | 'issued'>,
  ): CertificateRecord {
    const info = parseCertificate(certPem);
    return {
      serial: info.serial,
      ...facts,
      subject: info.subjectDn,
      notBefore: info.notBefore.getTime(),
      notAfter: info.notAfter.getTime(),
      fingerprint256: info.fingerprint256,
      caSerial: ca.record.serial,
    };
  }

  #putCertificate(record: CertificateRecord, ifRevision = 0): StoreOp {
    return { op: 'put', kind: CERTIFICATE_KIND, id: record.serial, value: record, options: { ifRevision, expiresAt: record.notAfter } };
  }

  // ------------------------------------------------------------------------------------------ revoking and listing

  /**
   * Revokes the certificate with this serial (any spelling). Revoking one already revoked changes nothing
   * (`changed: false`, the first revocation kept). `ERR_NOT_FOUND` for a serial not issued here or expired.
   */
  async revoke(serial: string, by: string, reason?: string): Promise<{ record: CertificateRecord; changed: boolean }> {
    this.#ready();
    const id = checkSerial(serial);
    const who = this.#by(by);
    const why = checkReason(reason);
    for (let attempt = 0; ; attempt++) {
      const rec = await this.#store.get<CertificateRecord>(CERTIFICATE_KIND, id);
      if (!rec) throw new GatehouseError('ERR_NOT_FOUND', `no certificate with serial ${id} (it was not issued by this Gatehouse, or it has expired)`);
      if (rec.value.revoked) return { record: rec.value, changed: false };
      const record = this.#revokedRecord(rec.value, who, why);
      try {
        await this.#store.transact([this.#putCertificate(record, rec.revision), this.#auditOp('certificate.revoke', `${CERTIFICATE_KIND}:${id}`, who, record, rec.value)]);
      } catch (err) {
        if (isConflict(err) && attempt < ATTEMPTS) continue;
        throw err;
      }
      this.#log?.info('ca_certificate_revoked', { serial: id, kind: record.kind, user: record.user, connector: record.connector, by: who, reason: why });
      await this.#afterWrite([{ kind: CERTIFICATE_KIND, id }]);
      return { record, changed: true };
    }
  }

  /** Revokes every unrevoked certificate of `user` (when the user is disabled), in one transaction. Returns those revoked. */
  async revokeAllOf(user: string, by: string, reason?: string): Promise<CertificateRecord[]> {
    this.#ready();
    const email = checkUserEmail(user);
    const who = this.#by(by);
    const why = checkReason(reason);
    for (let attempt = 0; ; attempt++) {
      const live = (await this.#all()).filter((r) => r.value.user === email && !r.value.revoked);
      if (live.length === 0) return [];
      const records = live.map((r) => this.#revokedRecord(r.value, who, why));
      const ops = live.flatMap((r, i) => [
        this.#putCertificate(records[i]!, r.revision),
        this.#auditOp('certificate.revoke', `${CERTIFICATE_KIND}:${r.id}`, who, records[i]!, r.value),
      ]);
      try {
        await this.#store.transact(ops);
      } catch (err) {
        if (isConflict(err) && attempt < ATTEMPTS) continue;
        throw err;
      }
      this.#log?.info('ca_certificates_revoked', { user: email, count: records.length, by: who, reason: why });
      await this.#afterWrite(records.map((r) => ({ kind: CERTIFICATE_KIND, id: r.serial })));
      return records;
    }
  }

  #revokedRecord(record: CertificateRecord, by: string, reason: string | undefined): CertificateRecord {
    return { ...record, revoked: { at: Date.now(), by, ...(reason !== undefined ? { reason } : {}) } };
  }

  /** Unexpired certificates issued here (revoked ones too), oldest first; from the store. */
  async list(filter: ListFilter = {}): Promise<CertificateRecord[]> {
    this.#ready();
    const user = filter.user !== undefined ? checkUserEmail(filter.user) : undefined;
    return (await this.#all())
      .map((r) => r.value)
      .filter((r) => (user === undefined || r.user === user) && (filter.connector === undefined || r.connector === filter.connector) && (filter.kind === undefined || r.kind === filter.kind))
      .sort((a, b) => a.issued - b.issued || (a.serial < b.serial ? -1 : 1));
  }

  /** One certificate by serial (any spelling), from the store; undefined when unknown or expired. */
  async get(serial: string): Promise<CertificateRecord | undefined> {
    this.#ready();
    return (await this.#store.get<CertificateRecord>(CERTIFICATE_KIND, checkSerial(serial)))?.value;
  }

  // ------------------------------------------------------------------------------------------ the CRL

  /**
   * The CA's current CRL (PEM, `X509 CRL`): every revoked, unexpired certificate it issued, with its revocation
   * time; thisUpdate now (less a minute), nextUpdate a week later. Kept in memory and rebuilt after a revocation
   * from any process, after a CA change, and daily.
   */
  async crlPem(): Promise<string> {
    this.#ready();
    this.#store.catchUp?.();
    const ca = this.#signing();
    const serial = ca.record.serial;
    const cached = this.#crl;
    if (cached && cached.generation === this.#generation && cached.caSerial === serial && Date.now() < cached.thisUpdate + CRL_REFRESH) return cached.pem;
    this.#crlBuild ??= this.#buildCrl(ca, serial).finally(() => (this.#crlBuild = undefined));
    return this.#crlBuild;
  }

  async #buildCrl(ca: SigningCa, caSerial: string): Promise<string> {
    const generation = this.#generation;
    const now = Date.now();
    const revoked = this.#mirror
      .values<CertificateRecord>(CERTIFICATE_KIND)
      .map((e) => e.value)
      .filter((r) => r.revoked && r.caSerial === caSerial && r.notAfter > now)
      .map((r) => ({ serial: r.serial, revokedAt: new Date(r.revoked!.at) }));
    const thisUpdate = now - BACKDATE;
    this.#lastCrlNumber = Math.max(this.#lastCrlNumber + 1, now);
    const pem = await createCrl({ ca: ca.issuer, revoked, thisUpdate: new Date(thisUpdate), nextUpdate: new Date(now + CRL_VALIDITY), crlNumber: this.#lastCrlNumber });
    // a revocation that arrived while building is not in it: keep it only for this generation
    this.#crl = { pem, generation, caSerial, thisUpdate: now };
    this.#log?.debug('ca_crl_built', { revoked: revoked.length });
    return pem;
  }

  // ------------------------------------------------------------------------------------------ internals

  /** The active CA, or `ERR_CA_NOT_INITIALISED`. */
  #active(): LoadedCa & { record: ActiveCaRecord } {
    this.#ready();
    const ca = this.#ca;
    if (!ca) throw new GatehouseError('ERR_CA_NOT_INITIALISED', 'the internal CA is not set up yet (gatehouse ca init)');
    if (ca.record.state === 'pending') {
      throw new GatehouseError('ERR_CA_NOT_INITIALISED', 'the internal CA is an intermediate waiting for its signed certificate (gatehouse ca init --import-cert)');
    }
    return ca as LoadedCa & { record: ActiveCaRecord };
  }

  /** The active CA with its key unsealed. */
  #signing(): SigningCa {
    const ca = this.#active();
    if (!ca.issuer) throw new GatehouseError('ERR_CONFIG_INVALID', ca.unusable ?? 'the internal CA key cannot be used');
    return ca as SigningCa;
  }

  #unseal(record: CaRecord): string {
    try {
      return this.#keyring.decrypt(CA_KEY_PURPOSE, record.key);
    } catch (err) {
      const hint =
        record.keyProtection === 'store-key'
          ? 'it was sealed with the key generated into the store; was identity.secretsKey set since?'
          : 'it was sealed with another identity.secretsKey; is the same secretsKey configured everywhere?';
      throw new GatehouseError('ERR_CONFIG_INVALID', `the internal CA key cannot be unsealed: ${hint}`, { cause: err });
    }
  }

  #by(by: unknown): string {
    if (typeof by !== 'string' || by.trim() === '' || by.length > 320) throw new GatehouseError('ERR_BAD_REQUEST', 'every change names who makes it');
    return by.trim();
  }

  #loadCa(record: CaRecord | undefined, announce: boolean): void {
    const before = this.#ca;
    if (!record) {
      this.#ca = undefined;
    } else {
      let issuer: CertificateAuthority | undefined;
      let unusable: string | undefined;
      let sendChain = '';
      let bundle = '';
      let organisation: string | undefined;
      if (record.state === 'active') {
        try {
          issuer = { certPem: record.certPem, keyPem: this.#unseal(record) };
        } catch (err) {
          unusable = messageOf(err);
          this.#log?.error('ca_key_unusable', { serial: record.serial, error: unusable });
        }
        const all = [record.certPem, ...pemCertificates(record.chainPem)];
        bundle = all.join('');
        sendChain = all.filter((pem) => !isSelfSigned(pem)).join('');
        organisation = parseCertificate(record.certPem).subject.O?.[0];
      }
      this.#ca = { record, info: infoOf(record), ...(issuer ? { issuer } : {}), ...(unusable ? { unusable } : {}), sendChain, bundle, ...(organisation ? { organisation } : {}) };
    }
    const same =
      before?.record.state === this.#ca?.record.state &&
      before?.record.key === this.#ca?.record.key &&
      (before?.record.state !== 'active' || (before.record as ActiveCaRecord).fingerprint256 === (this.#ca?.record as ActiveCaRecord).fingerprint256);
    if (same) return;
    this.#generation++;
    this.#servers.clear();
    if (!announce) return;
    const info = this.#ca?.info;
    for (const l of [...this.#caListeners]) this.#call(() => l(info));
  }

  #onChange(c: StoreChange): void {
    if (this.#state !== 'started') return;
    if (c.kind === CA_KIND) {
      if (c.id === CA_ID) this.#loadCa(c.value as CaRecord | undefined, true);
      return;
    }
    if (c.kind !== CERTIFICATE_KIND) return;
    const record = c.value as CertificateRecord | undefined;
    if (record?.revoked) {
      if (this.#revoked.has(c.id)) return;
      this.#revoked.add(c.id);
      this.#generation++;
      for (const l of [...this.#revokedListeners]) this.#call(() => l(record));
    } else if (this.#revoked.delete(c.id)) {
      this.#generation++;
    }
  }

  /** Brings the revoked set in line with the mirror: after a mirror reload, and as expired records fall away. */
  #reconcile(announce: boolean): void {
    if (this.#state !== 'started') return;
    const now = new Set<string>();
    const fresh: CertificateRecord[] = [];
    for (const { id, value } of this.#mirror.values<CertificateRecord>(CERTIFICATE_KIND)) {
      if (!value.revoked) continue;
      now.add(id);
      if (!this.#revoked.has(id)) fresh.push(value);
    }
    let changed = fresh.length > 0;
    for (const id of this.#revoked) {
      if (!now.has(id)) {
        this.#revoked.delete(id);
        changed = true;
      }
    }
    for (const r of fresh) this.#revoked.add(r.serial);
    if (changed) this.#generation++;
    // a mirror reload may also have replaced the CA without a change event
    const ca = this.#mirror.get<CaRecord>(CA_KIND, CA_ID);
    if (ca?.key !== this.#ca?.record.key) this.#loadCa(ca, announce);
    if (!announce) return;
    for (const r of fresh) for (const l of [...this.#revokedListeners]) this.#call(() => l(r));
  }

  #call(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.#log?.error('ca_listener_failed', { error: messageOf(err) });
    }
  }

  #auditOp(action: string, target: string, actor: string, after: unknown, before?: unknown): StoreOp {
    const id = newId();
    const record: AuditRecord = { id, time: Date.now(), actor, action, target, ...(before !== undefined ? { before } : {}), after };
    return { op: 'put', kind: AUDIT_KIND, id, value: record, options: { ifRevision: 0 } };
  }

  /** Makes this process's mirror see its own writes at once (the feed delivers them to the others). */
  async #afterWrite(keys: ReadonlyArray<{ kind: string; id: string }>): Promise<void> {
    if (this.#store.catchUp) return this.#store.catchUp();
    for (const { kind, id } of keys) {
      const rec = await this.#store.get(kind, id);
      this.#mirror.apply(
        rec
          ? { kind, id, revision: rec.revision, value: rec.value, ...(rec.expiresAt !== undefined ? { expiresAt: rec.expiresAt } : {}) }
          : { kind, id, revision: await this.#store.revision() },
      );
    }
  }

  async #all(): Promise<StoreRecord<CertificateRecord>[]> {
    const out: StoreRecord<CertificateRecord>[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await this.#store.list<CertificateRecord>(CERTIFICATE_KIND, { limit: 1000, ...(after ? { after } : {}) });
      out.push(...page);
      if (page.length < 1000) return out;
      after = page[page.length - 1]!.id;
    }
  }
}
