/**
 * `gatehouse ca init | issue | revoke | list | crl -c FILE`: the internal CA, worked on in the configured store
 * directly (no running Gatehouse needed; a running one sees every change through the store's change feed).
 *
 * Keys never reach stdout: a generated device key is written to PATH.key (mode 0600) and PATH.p12, whose one-time
 * password is the only thing printed on stdout. Summaries and warnings go to stderr.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { GatehouseError, messageOf } from '../core/index.ts';
import { exists } from './files.ts';
import { formatProblems, loadConfig, type Config } from '../config/index.ts';
import { openStore, type Store } from '../store/index.ts';
import { Keyring } from '../authn/index.ts';
import { InternalCa, keyProtectionFor, type CaInfo, type CertificateRecord, type InitResult } from '../ca/index.ts';

interface Opened {
  readonly config: Readonly<Config>;
  readonly store: Store;
  readonly ca: InternalCa;
}

/** Who the audit log names for changes made from the shell. */
function cliActor(): string {
  try {
    return `cli:${userInfo().username}`;
  } catch {
    return 'cli';
  }
}

/**
 * Loads the configuration, opens its store and starts the CA service over it; prints the problems and returns 1 for
 * a bad file. `before` runs on the configuration before anything is opened (so a refusal leaves the store alone).
 */
async function withCa(file: string, work: (o: Opened) => Promise<number>, before?: (config: Readonly<Config>) => void): Promise<number> {
  const loaded = await loadConfig(file);
  if (!loaded.ok) {
    process.stderr.write(formatProblems(loaded.problems) + '\n');
    return 1;
  }
  const config = loaded.config;
  before?.(config);
  const store = await openStore(config.store, loaded.baseDir);
  let ca: InternalCa | undefined;
  try {
    const keyring = await Keyring.open(store, config.identity.secretsKey);
    ca = new InternalCa({ store, keyring, secretsKeyConfigured: config.identity.secretsKey !== undefined });
    await ca.start();
    return await work({ config, store, ca });
  } finally {
    ca?.close();
    await store.close().catch(() => undefined);
  }
}

async function readInput(file: string, what: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new GatehouseError('ERR_USAGE', `cannot read ${what} ${file}: ${code === 'ENOENT' ? 'no such file' : messageOf(err)}`);
  }
}

/** Creates `file` (never over an existing one) with `mode`. */
async function writeNew(file: string, data: string | Buffer, mode: number): Promise<void> {
  try {
    await writeFile(file, data, { flag: 'wx', mode });
  } catch (err) {
    throw new GatehouseError('ERR_USAGE', `cannot write ${file}: ${messageOf(err)}`);
  }
}

const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

function describeCa(info: CaInfo): string {
  const kind = info.mode === 'root' ? 'a root CA' : info.mode === 'intermediate' ? 'an intermediate CA' : 'an imported CA';
  const lines = [`${info.subject}: ${kind}, serial ${info.serial}, valid until ${iso(info.notAfter!)}`, `SHA-256 fingerprint ${info.fingerprint256}`];
  if (info.keyProtection === 'store-key') lines.push('warning: its key is sealed with a key kept in the same store (no identity.secretsKey)');
  return lines.join('\n');
}

function reportInit(verb: string, result: InitResult, ca: InternalCa): number {
  process.stderr.write(`${verb} the internal CA ${describeCa(result.info)}\n`);
  for (const w of result.warnings) process.stderr.write(`warning: ${w}\n`);
  process.stdout.write(ca.caBundlePem());
  return 0;
}

// ---------------------------------------------------------------------------------------------- ca init

export interface CaInitOptions {
  readonly config: string;
  readonly csr?: string;
  readonly importCert?: string;
  readonly importKey?: string;
  readonly force?: boolean;
  readonly allowStoreKey?: boolean;
  readonly org?: string;
}

export async function runCaInit(o: CaInitOptions): Promise<number> {
  if (o.csr !== undefined && (o.importCert !== undefined || o.importKey !== undefined)) {
    throw new GatehouseError('ERR_USAGE', '--csr makes a new key for an intermediate; it does not go with --import-cert or --import-key');
  }
  if (o.importKey !== undefined && o.importCert === undefined) throw new GatehouseError('ERR_USAGE', '--import-key needs --import-cert (the CA certificate of that key)');
  if (o.org !== undefined && o.importCert !== undefined) throw new GatehouseError('ERR_USAGE', '--org names a new CA; an imported certificate already has its subject');
  const finishing = o.importCert !== undefined && o.importKey === undefined;
  const by = cliActor();
  // Refused before the store is opened: without a secrets key, opening the keyring would generate one into the store.
  const before = (config: Readonly<Config>) => {
    if (!finishing) keyProtectionFor(config.identity.secretsKey !== undefined, o.allowStoreKey);
  };
  return withCa(
    o.config,
    async ({ ca }) => {
      const common = { by, ...(o.force ? { force: true } : {}), ...(o.allowStoreKey ? { allowStoreKey: true } : {}), ...(o.org !== undefined ? { organisation: o.org } : {}) };
      if (o.csr !== undefined) {
        if (await exists(o.csr)) throw new GatehouseError('ERR_USAGE', `${o.csr} already exists: choose another --csr file or remove it`);
        const { csrPem, info } = await ca.requestIntermediate(common);
        await writeNew(o.csr, csrPem, 0o644);
        process.stderr.write(
          `Wrote the request for an intermediate CA (${info.subject}) to ${o.csr}; its key is sealed in the store.\n` +
            'Have your CA sign it as a CA certificate (basicConstraints critical CA:TRUE, keyUsage critical keyCertSign, cRLSign), then run\n' +
            `  gatehouse ca init -c ${o.config} --import-cert SIGNED.crt\n` +
            'with the signed certificate first in SIGNED.crt, followed by its issuers up to the root.\n',
        );
        return 0;
      }
      if (finishing) {
        const info = ca.info();
        if (info?.state !== 'pending') {
          throw new GatehouseError(
            'ERR_USAGE',
            '--import-cert without --import-key completes an intermediate started with --csr, and none is pending; to import an existing CA, give its key with --import-key',
          );
        }
        const certPem = await readInput(o.importCert!, 'the signed certificate');
        return reportInit('Activated', await ca.completeIntermediate({ certPem, by }), ca);
      }
      if (o.importCert !== undefined) {
        const certPem = await readInput(o.importCert, 'the CA certificate');
        const keyPem = await readInput(o.importKey!, 'the CA key');
        return reportInit('Imported', await ca.importCa({ ...common, certPem, keyPem }), ca);
      }
      return reportInit('Created', await ca.createRoot(common), ca);
    },
    before,
  );
}

// ---------------------------------------------------------------------------------------------- ca issue

export interface CaIssueOptions {
  readonly config: string;
  readonly user?: string;
  readonly connector?: string;
  readonly device?: string;
  readonly csr?: string;
  readonly days?: string;
  readonly out: string;
}

export async function runCaIssue(o: CaIssueOptions): Promise<number> {
  if (o.user !== undefined && o.connector !== undefined) throw new GatehouseError('ERR_USAGE', 'give --user or --connector, not both');
  if (o.user === undefined && o.connector === undefined) throw new GatehouseError('ERR_USAGE', 'give --user EMAIL (a device certificate) or --connector NAME');
  let days: number | undefined;
  if (o.days !== undefined) {
    if (!/^\d+$/.test(o.days.trim())) throw new GatehouseError('ERR_USAGE', `--days must be a whole number of days, not "${o.days}"`);
    days = Number(o.days.trim());
  }
  const csrPem = o.csr !== undefined ? await readInput(o.csr, 'the CSR') : undefined;
  const files = { crt: `${o.out}.crt`, key: `${o.out}.key`, p12: `${o.out}.p12` };
  const writing = csrPem !== undefined ? [files.crt] : [files.crt, files.key, files.p12];
  for (const f of writing) {
    if (await exists(f)) throw new GatehouseError('ERR_USAGE', `${f} already exists: choose another --out or remove it`);
  }
  return withCa(o.config, async ({ ca }) => {
    const issued = await ca.issue({
      ...(o.user !== undefined ? { user: o.user } : { connector: o.connector! }),
      ...(o.device !== undefined ? { device: o.device } : {}),
      ...(csrPem !== undefined ? { csrPem } : {}),
      ...(days !== undefined ? { days } : {}),
      issuedBy: cliActor(),
    });
    const r = issued.record;
    await writeNew(files.crt, issued.certPem + issued.chainPem, 0o644);
    if (issued.keyPem !== undefined) {
      await writeNew(files.key, issued.keyPem, 0o600);
      await writeNew(files.p12, issued.p12!, 0o600);
    }
    const owner = r.user !== undefined ? `${r.user} (device ${r.device})` : `connector ${r.connector}`;
    process.stderr.write(`Issued certificate ${r.serial} to ${owner}: ${r.subject}, valid until ${iso(r.notAfter)}\n`);
    process.stderr.write(`Wrote ${writing.join(', ')}${issued.keyPem !== undefined ? '; the PKCS#12 password is on stdout and shown only once' : ''}\n`);
    if (issued.p12Password !== undefined) process.stdout.write(issued.p12Password + '\n');
    return 0;
  });
}

// ---------------------------------------------------------------------------------------------- ca revoke

export async function runCaRevoke(o: { config: string; serial: string; reason?: string }): Promise<number> {
  return withCa(o.config, async ({ ca }) => {
    const { record: r, changed } = await ca.revoke(o.serial, cliActor(), o.reason);
    const owner = r.user !== undefined ? `${r.user}, device ${r.device}` : r.connector !== undefined ? `connector ${r.connector}` : `server ${(r.hosts ?? []).join(', ')}`;
    if (!changed) {
      process.stderr.write(`${r.serial} (${owner}) was already revoked on ${iso(r.revoked!.at)} by ${r.revoked!.by}\n`);
      return 0;
    }
    process.stderr.write(`Revoked ${r.serial} (${owner})\n`);
    return 0;
  });
}

// ---------------------------------------------------------------------------------------------- ca list

function ownerOf(r: CertificateRecord): string {
  return r.user ?? r.connector ?? (r.hosts ?? []).join(',');
}

export async function runCaList(o: { config: string; json?: boolean; user?: string }): Promise<number> {
  return withCa(o.config, async ({ ca }) => {
    const records = await ca.list(o.user !== undefined ? { user: o.user } : {});
    if (o.json) {
      const rows = records.map((r) => ({
        ...r,
        notBefore: new Date(r.notBefore).toISOString(),
        notAfter: new Date(r.notAfter).toISOString(),
        issued: new Date(r.issued).toISOString(),
        ...(r.revoked ? { revoked: { ...r.revoked, at: new Date(r.revoked.at).toISOString() } } : {}),
      }));
      process.stdout.write(JSON.stringify(rows, null, 2) + '\n');
      return 0;
    }
    if (records.length === 0) {
      process.stderr.write(o.user === undefined ? 'no certificates\n' : `no certificates for ${o.user}\n`);
      return 0;
    }
    const rows = [
      ['SERIAL', 'KIND', 'FOR', 'DEVICE', 'ISSUED', 'EXPIRES', 'STATUS'],
      ...records.map((r) => [r.serial, r.kind, ownerOf(r), r.device, iso(r.issued), iso(r.notAfter), r.revoked ? `revoked ${iso(r.revoked.at)}` : 'valid']),
    ];
    const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
    process.stdout.write(rows.map((row) => row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n') + '\n');
    return 0;
  });
}

// ---------------------------------------------------------------------------------------------- ca crl

export async function runCaCrl(o: { config: string }): Promise<number> {
  return withCa(o.config, async ({ ca }) => {
    process.stdout.write(await ca.crlPem());
    return 0;
  });
}
