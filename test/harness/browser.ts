/**
 * Real headless Chromium (the Debian package) for end-to-end tests, via playwright-core.
 *
 * Names: `*.corp.test` and `gate.test` resolve to 127.0.0.1 inside Chromium (`--host-resolver-rules`); pass
 * `hostRules` to add more (e.g. `MAP * ~NOTFOUND, EXCLUDE 127.0.0.1` so nothing else resolves at all).
 * TLS: Chromium can pin a server certificate's key at launch (`trust` → `--ignore-certificate-errors-spki-list`);
 * a context cannot add a CA, so `newContext(browser, { ca })` falls back to Playwright's `ignoreHTTPSErrors`.
 * Client certificates: Playwright presents them from this process (a local SOCKS interceptor), which resolves
 * names with this process's `dns.promises.lookup`: use `resolveToLoopback` for the test names in that case.
 */
import { existsSync } from 'node:fs';
import dns from 'node:dns';
import { X509Certificate, createHash } from 'node:crypto';
import { chromium, type Browser, type BrowserContext, type BrowserContextOptions } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';

const BASE_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const BASE_HOST_RULES = ['MAP *.corp.test 127.0.0.1', 'MAP gate.test 127.0.0.1'];

export interface LaunchOptions {
  /** more `--host-resolver-rules` entries, after the base ones */
  hostRules?: string[];
  /** server certificates (PEM) whose keys Chromium accepts whatever their issuer (`--ignore-certificate-errors-spki-list`) */
  trust?: string[];
  /** more Chromium arguments */
  args?: string[];
}

/** Launches headless Chromium; fails with a clear message when it is not installed. */
export async function launchChromium(options: LaunchOptions = {}): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is not installed (apt-get install -y chromium)`);
  const args = [...BASE_ARGS, `--host-resolver-rules=${[...BASE_HOST_RULES, ...(options.hostRules ?? [])].join(', ')}`];
  if (options.trust?.length) args.push(`--ignore-certificate-errors-spki-list=${options.trust.map(spkiPin).join(',')}`);
  args.push(...(options.args ?? []));
  return chromium.launch({ executablePath: CHROMIUM, timeout: 20_000, args });
}

export interface ContextOptions {
  /** a CA (PEM) the pages' servers are signed by: Playwright cannot trust one per context, so this sets `ignoreHTTPSErrors` */
  ca?: string;
  clientCertificates?: BrowserContextOptions['clientCertificates'];
}

export function newContext(browser: Browser, options: ContextOptions = {}): Promise<BrowserContext> {
  return browser.newContext({
    ...(options.ca !== undefined && { ignoreHTTPSErrors: true }),
    ...(options.clientCertificates && { clientCertificates: options.clientCertificates }),
  });
}

/** The base64 SHA-256 of a certificate's public key, as `--ignore-certificate-errors-spki-list` wants it. */
export function spkiPin(certPem: string): string {
  const spki = new X509Certificate(certPem).publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(spki).digest('base64');
}

/**
 * Maps names for which `matches` is true (and localhost) to 127.0.0.1 in this process's promise-based lookup, and
 * makes every other name fail; IPv6 lookups find nothing. Returns the function that restores the real lookup.
 */
export function resolveToLoopback(matches: (host: string) => boolean): () => void {
  const promises = dns.promises as { lookup: typeof dns.promises.lookup };
  const original = promises.lookup;
  promises.lookup = (async (hostname: string, options?: { all?: boolean; family?: number }) => {
    const name = hostname.toLowerCase();
    if (!matches(name) && name !== 'localhost') {
      throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname} (test resolver)`), { code: 'ENOTFOUND', hostname });
    }
    if (options?.family === 6) {
      if (options.all) return [];
      throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname} (no IPv6 in tests)`), { code: 'ENOTFOUND', hostname });
    }
    const address = { address: '127.0.0.1', family: 4 };
    return options?.all ? [address] : address;
  }) as typeof dns.promises.lookup;
  return () => {
    promises.lookup = original;
  };
}
