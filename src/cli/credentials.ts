/**
 * The CLI's stored logins: `$XDG_CONFIG_HOME/gatehouse/credentials.json` (default `~/.config/gatehouse/…`),
 * one entry per Gatehouse origin, so several Gatehouses can be used side by side. The folder is 0700 and the
 * file 0600; a write goes to a temporary file first and is renamed into place, so a reader never sees half a file.
 */
import { chmod, mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { homedir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { GatehouseError, messageOf } from '../core/index.ts';

/** One login as stored: the Gatehouse origin, the token and whose it is, and when it ends (ISO 8601). */
export interface StoredLogin {
  readonly via: string;
  readonly token: string;
  readonly user: string;
  readonly expires: string;
}

interface CredentialsFile {
  version: 1;
  logins: Record<string, StoredLogin>;
}

/** `$XDG_CONFIG_HOME/gatehouse` when that is an absolute path, else `~/.config/gatehouse`. */
export function configDir(env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env.XDG_CONFIG_HOME;
  const base = xdg && isAbsolute(xdg) ? xdg : join(env.HOME || homedir(), '.config');
  return join(base, 'gatehouse');
}

export function credentialsFile(env: NodeJS.ProcessEnv = process.env): string {
  return join(configDir(env), 'credentials.json');
}

/**
 * The origin a `--via` URL names (`https://host[:port]`), the key of its stored login. Only https: the token
 * travels to it in the clear otherwise.
 */
export function viaOrigin(via: string): string {
  let u: URL;
  try {
    u = new URL(via);
  } catch {
    throw new GatehouseError('ERR_USAGE', `--via "${via}" is not a URL (use e.g. https://gate.example.com)`);
  }
  if (u.protocol !== 'https:') throw new GatehouseError('ERR_USAGE', `--via must be an https:// URL, not ${u.protocol}//…`);
  if (u.username || u.password) throw new GatehouseError('ERR_USAGE', '--via must not carry a user name or password');
  return u.origin;
}

async function readAll(file: string): Promise<CredentialsFile> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, logins: {} };
    throw new GatehouseError('ERR_USAGE', `cannot read ${file}: ${messageOf(err)}`, { cause: err });
  }
  try {
    const parsed = JSON.parse(text) as Partial<CredentialsFile>;
    if (parsed && typeof parsed === 'object' && parsed.logins && typeof parsed.logins === 'object') return { version: 1, logins: parsed.logins };
  } catch {
    // fall through: unreadable content is reported below
  }
  throw new GatehouseError('ERR_USAGE', `${file} is not a Gatehouse credentials file (remove it and sign in again)`);
}

/** The stored login for `via` whatever its expiry, or undefined. */
export async function readLogin(via: string, env: NodeJS.ProcessEnv = process.env): Promise<StoredLogin | undefined> {
  const origin = viaOrigin(via);
  const entry = (await readAll(credentialsFile(env))).logins[origin];
  return entry && typeof entry.token === 'string' ? entry : undefined;
}

/** The stored token for `via` while it is still valid (for a minute more at least), or undefined. */
export async function storedToken(via: string, env: NodeJS.ProcessEnv = process.env): Promise<{ token: string; user: string; expires: string } | undefined> {
  const login = await readLogin(via, env);
  if (!login) return undefined;
  const ends = Date.parse(login.expires);
  if (!Number.isFinite(ends) || ends - 60_000 <= Date.now()) return undefined;
  return { token: login.token, user: login.user, expires: login.expires };
}

/** Stores (or replaces) the login for its origin; returns the file written. */
export async function saveLogin(login: StoredLogin, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const dir = configDir(env);
  const file = credentialsFile(env);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  const all = await readAll(file);
  const origin = viaOrigin(login.via);
  all.logins[origin] = { via: origin, token: login.token, user: login.user, expires: login.expires };
  const temp = join(dir, `.credentials.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const handle = await open(temp, 'wx', 0o600);
    try {
      await handle.chmod(0o600); // whatever the umask
      await handle.writeFile(JSON.stringify(all, null, 2) + '\n');
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, file);
  } catch (err) {
    await rm(temp, { force: true });
    throw new GatehouseError('ERR_USAGE', `cannot write ${file}: ${messageOf(err)}`, { cause: err });
  }
  return file;
}
