/**
 * `gatehouse token issue | list | revoke -c FILE`: API tokens minted, listed and revoked in the configured store
 * directly (no running Gatehouse needed; a running one sees the change through the store's change feed).
 * A token is printed once, on stdout and alone there; the store keeps only its SHA-256, which is its id.
 */
import { GatehouseError, parseDuration } from '../core/index.ts';
import { formatProblems, loadConfig, type Config } from '../config/index.ts';
import { openStore, StoreMirror, type Store } from '../store/index.ts';
import { Keyring, SessionBook, type TokenValue } from '../authn/index.ts';

/** How many characters of a token id `list` shows (and `revoke` needs at most). */
const SHOWN_ID = 12;

interface Opened {
  readonly config: Readonly<Config>;
  readonly store: Store;
}

/** Loads the configuration and opens its store; prints the problems and returns undefined for a bad file. */
async function openConfigured(file: string): Promise<Opened | undefined> {
  const loaded = await loadConfig(file);
  if (!loaded.ok) {
    process.stderr.write(formatProblems(loaded.problems) + '\n');
    return undefined;
  }
  return { config: loaded.config, store: await openStore(loaded.config.store, loaded.baseDir) };
}

async function withStore(file: string, work: (o: Opened) => Promise<number>): Promise<number> {
  const opened = await openConfigured(file);
  if (!opened) return 1;
  try {
    return await work(opened);
  } finally {
    await opened.store.close().catch(() => undefined);
  }
}

/** The book of sessions and tokens over the store, as `Gatehouse.start` builds it (its mirror is not followed: one write, then exit). */
async function sessionBook({ config, store }: Opened): Promise<SessionBook> {
  const keyring = await Keyring.open(store, config.identity.secretsKey);
  const mirror = new StoreMirror(store, ['token']);
  return new SessionBook(store, mirror, keyring, { ttlMs: config.identity.session.ttl, idleMs: config.identity.session.idle });
}

async function allTokens(store: Store): Promise<Array<{ id: string } & TokenValue>> {
  const out: Array<{ id: string } & TokenValue> = [];
  let after: string | undefined;
  for (;;) {
    const page = await store.list<TokenValue>('token', { limit: 1000, ...(after ? { after } : {}) });
    for (const r of page) out.push({ id: r.id, ...r.value });
    if (page.length < 1000) return out;
    after = page[page.length - 1]!.id;
  }
}

const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

export async function runTokenIssue(o: { config: string; user: string; ttl: string; name?: string }): Promise<number> {
  const user = o.user.trim();
  if (!user || /\s/.test(user)) throw new GatehouseError('ERR_USAGE', `--user "${o.user}" is not a user (an email address or service account name)`);
  const ttlMs = parseDuration(o.ttl);
  if (ttlMs <= 0) throw new GatehouseError('ERR_USAGE', '--ttl must be longer than 0');
  const name = o.name?.trim() || 'api';
  return withStore(o.config, async (opened) => {
    const sessions = await sessionBook(opened);
    const { token, record } = await sessions.issueToken(user, name, ttlMs, 'api');
    process.stdout.write(token + '\n');
    process.stderr.write(`Issued token ${record.id.slice(0, SHOWN_ID)} "${name}" for ${user}, valid until ${iso(record.expires)} (shown once; it is not stored)\n`);
    return 0;
  });
}

export async function runTokenList(o: { config: string; user?: string; json?: boolean }): Promise<number> {
  return withStore(o.config, async ({ store }) => {
    const tokens = (await allTokens(store)).filter((t) => o.user === undefined || t.user === o.user).sort((a, b) => a.created - b.created || (a.id < b.id ? -1 : 1));
    if (o.json) {
      const rows = tokens.map((t) => ({ id: t.id, user: t.user, name: t.name, kind: t.kind, created: new Date(t.created).toISOString(), expires: new Date(t.expires).toISOString() }));
      process.stdout.write(JSON.stringify(rows, null, 2) + '\n');
      return 0;
    }
    if (tokens.length === 0) {
      process.stderr.write(o.user === undefined ? 'no tokens\n' : `no tokens for ${o.user}\n`);
      return 0;
    }
    const rows = [['ID', 'USER', 'NAME', 'KIND', 'CREATED', 'EXPIRES'], ...tokens.map((t) => [t.id.slice(0, SHOWN_ID), t.user, t.name, t.kind, iso(t.created), iso(t.expires)])];
    const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
    process.stdout.write(rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n') + '\n');
    return 0;
  });
}

export async function runTokenRevoke(o: { config: string; id: string }): Promise<number> {
  const prefix = o.id.trim();
  if (!/^[A-Za-z0-9_-]+$/.test(prefix)) throw new GatehouseError('ERR_USAGE', `"${o.id}" is not a token id (see gatehouse token list)`);
  return withStore(o.config, async (opened) => {
    const found = await opened.store.list<TokenValue>('token', { prefix, limit: 2 });
    if (found.length === 0) throw new GatehouseError('ERR_USAGE', `no live token has an id starting with ${prefix} (see gatehouse token list)`);
    if (found.length > 1) throw new GatehouseError('ERR_USAGE', `more than one token has an id starting with ${prefix}: give more characters`);
    const t = found[0]!;
    const sessions = await sessionBook(opened);
    if (!(await sessions.revokeToken(t.id))) throw new GatehouseError('ERR_USAGE', `token ${t.id.slice(0, SHOWN_ID)} ended before it could be revoked`);
    process.stderr.write(`Revoked token ${t.id.slice(0, SHOWN_ID)} "${t.value.name}" of ${t.value.user}\n`);
    return 0;
  });
}
