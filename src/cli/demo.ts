/**
 * `gatehouse demo`: prepares the demo folder (CA, certificates, passwords, configuration), starts the sample
 * backends, the built-in OpenID provider and Gatehouse in this process, prints what runs and how to try it, and
 * stops everything on Ctrl-C / SIGTERM.
 */
import { createWriteStream } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { GatehouseError, Logger } from '../core/index.ts';
import { Gatehouse } from '../app/index.ts';
import {
  authHost,
  demoIdpOptions,
  demoRoutes,
  prepareDemoFiles,
  routeHost,
  startIdp,
  startSampleBackends,
  writeDemoConfig,
  type DemoFiles,
  type RunningIdp,
  type SampleBackends,
} from '../demo/index.ts';

export interface DemoOptions {
  readonly dir: string;
  /** 0 picks a free port */
  readonly port: number;
}

/** `arg` as the shell takes it: bare when safe, else single-quoted. */
function q(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", `'\\''`)}'`;
}

function pad(text: string, width: number): string {
  return text.padEnd(width);
}

export interface BannerFacts {
  readonly files: DemoFiles;
  readonly port: number;
  readonly backends: SampleBackends;
  /** the built-in OpenID provider's issuer */
  readonly issuer: string;
}

/** What runs, where to go, what to trust, and curl lines to paste as they are. */
export function renderBanner({ files: f, port, backends, issuer }: BannerFacts): string {
  const url = (host: string) => `https://${host}:${port}/`;
  const app = url(routeHost(demoRoutes.find((r) => r.name === 'app')!));
  const secure = url(routeHost(demoRoutes.find((r) => r.name === 'secure')!));
  const echo = url(routeHost(demoRoutes.find((r) => r.name === 'echo')!));
  const redirect = url(routeHost(demoRoutes.find((r) => r.name === 'redirect')!));
  const cacert = `--cacert ${q(f.caCert)}`;
  const width = Math.max(...demoRoutes.map((r) => url(routeHost(r)).length), url(authHost).length) + 2;
  const userWidth = Math.max(...f.users.map((u) => u.email.length)) + 2;
  const passwordWidth = Math.max(...f.users.map((u) => u.password.length)) + 2;
  const lines = [
    '',
    `Gatehouse demo is running: one front door on https://127.0.0.1:${port}, sample apps behind it.`,
    '',
    'Open in a browser (every *.localhost name is this machine):',
    ...demoRoutes.map((r) => `  ${pad(url(routeHost(r)), width)}${pad(r.auth, 13)}${r.about}`),
    `  ${pad(url(authHost), width)}${pad('login', 13)}the dashboard: my access, roles and members, access requests, users, audit, explain`,
    '',
    'The sample apps, plain HTTP on 127.0.0.1, reached through Gatehouse:',
    ...Object.entries(backends).map(([name, b]) => `  ${pad(name, 10)}${b.origin}`),
    '',
    `Sign in: open ${app}`,
    `  Gatehouse sends you to the built-in OpenID provider (${issuer}, standing in for your company's),`,
    `  which knows these demo users (passwords kept in ${q(f.idpSecrets)} and reused on the next start):`,
    ...f.users.map((u) => `    ${pad(u.email, userWidth)}${pad(u.password, passwordWidth)}${u.can}`),
    `Sign out: ${app}.gatehouse/logout`,
    '',
    `Trust the demo's internal CA once (its key is sealed in the store in ${q(f.dir)}; reused on the next start):`,
    `  ${q(f.caCert)}   ${f.caCreated ? 'created now' : 'reused'}, SHA-256 ${f.caFingerprint}`,
    `  browsers: import it as a certificate authority for websites; curl: ${cacert}`,
    `  it issues each host's server certificate, and device certificates (dashboard → Devices, or gatehouse ca issue)`,
    '',
    `Device certificate of ${f.clientUser}, issued by the internal CA (opens ${secure}):`,
    `  PEM       ${q(f.clientCert)}  ${q(f.clientKey)}`,
    `  PKCS#12   ${q(f.clientP12)}  password: ${f.clientP12Password}  (also in ${q(f.clientP12PasswordFile)})`,
    '            import the .p12 into your browser or keychain to use it there',
    '',
    'Try it with curl (paste any line):',
    '  a public route (200):',
    `    curl ${cacert} ${echo}`,
    '  the certificate route with the PEM certificate and key (200):',
    `    curl ${cacert} --cert ${q(f.clientCert)} --key ${q(f.clientKey)} ${secure}`,
    '  the same without a certificate (403, and the answer says why):',
    `    curl ${cacert} ${secure}`,
    '  the same with the PKCS#12 file (200):',
    `    curl ${cacert} --cert-type P12 --cert ${q(`${f.clientP12}:${f.clientP12Password}`)} ${secure}`,
    "  the app's redirect to its internal address, rewritten to the public name (302, see Location):",
    `    curl ${cacert} -i ${redirect}`,
    '  the sign-in route without signing in (401 for scripts; browsers are sent to sign in):',
    `    curl ${cacert} ${app}`,
    '  the keys that verify the X-Gatehouse-Jwt-Assertion the apps receive (200):',
    `    curl ${cacert} ${url(authHost)}.well-known/jwks.json`,
    '',
    `Configuration: ${q(f.config)} (written on every start)`,
    `Log:           ${q(f.log)} (JSON lines, one per request; follow it with: tail -f ${q(f.log)})`,
    'Stop:          press Ctrl-C (or send SIGTERM)',
    '',
  ];
  return lines.join('\n') + '\n';
}

function checkPort(port: number): void {
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new GatehouseError('ERR_USAGE', '--port must be a whole number from 0 to 65535 (0 picks a free port)');
  }
}

/** The one-line reason a listener could not start, for the errors a user can fix. */
function listenError(err: unknown, port: number): unknown {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'EADDRINUSE') {
    return new GatehouseError('ERR_USAGE', `port ${port} on 127.0.0.1 is already in use (is a demo running already? choose another with --port, or --port 0 for any free port)`, { cause: err });
  }
  if (code === 'EACCES') {
    return new GatehouseError('ERR_USAGE', `not allowed to listen on port ${port} (ports below 1024 need privileges; try --port 8443)`, { cause: err });
  }
  return err;
}

/** The log file, appended to. It is never ended: tunnels that close late still log, and exit closes it. */
function openLog(path: string): Logger {
  const stream = createWriteStream(path, { flags: 'a', mode: 0o600 });
  stream.once('error', (err) => process.stderr.write(`gatehouse: cannot write the log ${path}: ${err.message}\n`));
  return new Logger({ sink: stream });
}

/**
 * Holds `port` (0: a free one) on 127.0.0.1 until released: the IdP must know the front door's port before
 * Gatehouse listens on it, and must not be given the same port meanwhile.
 */
async function reservePort(port: number): Promise<{ port: number; release(): Promise<void> }> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    release: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

function nextSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (signal: NodeJS.Signals) => {
      process.off('SIGINT', on);
      process.off('SIGTERM', on);
      resolve(signal);
    };
    process.on('SIGINT', on);
    process.on('SIGTERM', on);
  });
}

/** Runs until SIGINT or SIGTERM, then stops everything; a second signal stops at once. */
export async function runDemo(o: DemoOptions): Promise<void> {
  checkPort(o.port);
  const files = await prepareDemoFiles(o.dir);
  const log = openLog(files.log);
  let samples: Awaited<ReturnType<typeof startSampleBackends>> | undefined;
  let idp: RunningIdp | undefined;
  let g: Gatehouse;
  try {
    const reserved = await reservePort(o.port);
    try {
      samples = await startSampleBackends();
      idp = await startIdp(demoIdpOptions(files, reserved.port));
    } finally {
      await reserved.release();
    }
    const configFile = await writeDemoConfig(files, reserved.port, samples.backends, idp.issuer);
    g = await Gatehouse.start({ configFile, log });
  } catch (err) {
    await Promise.all([samples?.close(), idp?.close()]);
    log.flush();
    throw listenError(err, o.port);
  }
  const port = Number(g.addresses.https.slice(g.addresses.https.lastIndexOf(':') + 1));
  log.info('listening', { ...g.addresses, idp: idp.issuer, demo: true });
  process.stdout.write(renderBanner({ files, port, backends: samples.backends, issuer: idp.issuer }));

  const signal = await nextSignal();
  process.stdout.write(`\n${signal}: stopping the demo…\n`);
  const hurry = () => void g.destroy();
  process.once('SIGINT', hurry);
  process.once('SIGTERM', hurry);
  await Promise.all([g.close(), samples.close(), idp.close()]);
  process.off('SIGINT', hurry);
  process.off('SIGTERM', hurry);
  log.info('stopped', { signal });
  log.flush();
  process.stdout.write('Stopped.\n');
}
