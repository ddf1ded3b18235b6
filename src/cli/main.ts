/**
 * The `gatehouse` command line. Every command has --help; errors are one line on stderr and a non-zero exit
 * (a stack trace only with --debug).
 */
import { Command, CommanderError } from 'commander';
import { Logger, messageOf, parseDuration } from '../core/index.ts';
import { runCheck } from './check.ts';
import { runPac } from './pac.ts';
import { runExplain } from './explain.ts';
import { runDemo } from './demo.ts';
import { runLogin } from './login.ts';
import { runConnect } from './connect.ts';
import { runTunnel } from './tunnel.ts';
import { runTokenIssue, runTokenList, runTokenRevoke } from './token.ts';
import { runCaCrl, runCaInit, runCaIssue, runCaList, runCaRevoke } from './ca.ts';
import { runBackup, runRestore } from './backup.ts';
import { serve } from '../app/index.ts';

const debug = process.argv.includes('--debug');

function fail(err: unknown): never {
  if (err instanceof CommanderError) process.exit(err.exitCode);
  process.stderr.write(`gatehouse: ${debug && err instanceof Error ? err.stack : messageOf(err)}\n`);
  process.exit(1);
}

const program = new Command()
  .name('gatehouse')
  .description('Identity-aware access proxy: one front door for internal web apps, every request tied to a person and a device.')
  .option('--debug', 'print stack traces on errors')
  .showHelpAfterError('(run with --help for usage)')
  .exitOverride();

program
  .command('serve')
  .description('run the proxy; reloads the config file on change or SIGHUP (a bad file is reported and the old config stays)')
  .requiredOption('-c, --config <file>', 'configuration file (YAML)')
  .action(async (o: { config: string }) => {
    await serve({ configFile: o.config, log: new Logger() });
  });

program
  .command('check')
  .description('validate a configuration file: exit 0, or exit 1 printing FILE:LINE:COL: message for each problem')
  .requiredOption('-c, --config <file>', 'configuration file (YAML)')
  .action(async (o: { config: string }) => {
    process.exitCode = await runCheck(o.config);
  });

program
  .command('pac')
  .description('print the proxy auto-config file that sends route hosts and aliases through Gatehouse')
  .requiredOption('-c, --config <file>', 'configuration file (YAML)')
  .action(async (o: { config: string }) => {
    process.exitCode = await runPac(o.config);
  });

program
  .command('explain')
  .description('print "allow: <rule>" or "deny: <reason>" for a request to URL (exit 0 either way)')
  .argument('<url>', 'the request, e.g. https://grafana.corp.example.com/api/health')
  .requiredOption('-c, --config <file>', 'configuration file (YAML)')
  .option('--user <email>', 'the signed-in user making the request')
  .option('--cert <file>', 'the client certificate presented (PEM)')
  .option('--method <method>', 'the HTTP method', 'GET')
  .option('-v, --verbose', 'also list every rule considered')
  .action(async (url: string, o: { config: string; user?: string; cert?: string; method: string; verbose?: boolean }) => {
    process.exitCode = await runExplain(url, o);
  });

program
  .command('demo')
  .description('start a complete local demo on embedded defaults: CA, certificates, an OpenID provider with demo users, sample backends, routes')
  .option('--dir <dir>', 'where the demo keeps its files', '.demo')
  .option('--port <port>', 'TLS front door port', '8443')
  .action(async (o: { dir: string; port: string }) => {
    await runDemo({ dir: o.dir, port: Number(o.port) });
  });

program
  .command('login')
  .description('sign the command line in through the browser (loopback redirect, PKCE); stores a token in the user\'s config folder, mode 0600')
  .requiredOption('--via <url>', 'the Gatehouse auth host, e.g. https://gate.example.com')
  .option('--no-browser', 'do not try to open a browser; only print the URL')
  .option('--ca <file>', 'PEM CA to trust for the Gatehouse (default $GATEHOUSE_CA, else the system CAs)')
  .option('--timeout <duration>', 'how long to wait for the browser sign-in', '5m')
  .action(async (o: { via: string; browser: boolean; ca?: string; timeout: string }) => {
    await runLogin({ via: o.via, browser: o.browser, ...(o.ca !== undefined ? { ca: o.ca } : {}), timeoutMs: parseDuration(o.timeout) });
  });

program
  .command('tunnel')
  .description('a byte stream to a TCP route through the Gatehouse: stdin/stdout (SSH ProxyCommand), or a local port with --listen')
  .argument('<target>', 'the route: its host (or alias) or its name, with any :PORT (ignored by tcp routes; default 22)')
  .requiredOption('--via <url>', 'the Gatehouse auth host, e.g. https://gate.example.com')
  .option('--token <token>', 'the token to use (default $GATEHOUSE_TOKEN, else the stored login; signs in through the browser when none is valid)')
  .option('--cert <file>', 'client certificate (PEM) for routes that ask for a device certificate')
  .option('--key <file>', 'the private key (PEM) of --cert')
  .option('--ca <file>', 'PEM CA to trust for the Gatehouse (default $GATEHOUSE_CA, else the system CAs)')
  .option('--listen <address:port>', 'offer the tunnel as a local port instead (loopback only; port 0: any free port): each connection opens its own tunnel')
  .option('--resolve <host:address>', 'connect to ADDRESS for HOST, like curl (HOST:PORT:ADDRESS also works); repeatable', (v: string, all: string[] | undefined) => [...(all ?? []), v])
  .option('--no-browser', 'when a sign-in is needed, do not try to open a browser; only print the URL')
  .option('--no-sign-in', 'never sign in through the browser: fail with a message when not signed in')
  .option('--timeout <duration>', 'how long to wait for the browser sign-in', '5m')
  .addHelpText(
    'after',
    `
Made for SSH. In ~/.ssh/config:
  Host *.corp.example.com
    ProxyCommand gatehouse tunnel %h:%p --via https://gate.corp.example.com
    ServerAliveInterval 60
after which "ssh host.corp.example.com" (and scp, rsync, git over ssh) works from anywhere. The route must be a
tcp route (tcp: HOST:PORT in the configuration); it decides where the bytes go, so %p is ignored. The first use
opens the browser to sign in (as gatehouse login) and keeps the token; stdout carries only the tunnel's bytes.
An idle tunnel ends after the route's upstream.timeouts.read (default 180s): ServerAliveInterval keeps SSH busy.

With a device certificate:   ProxyCommand gatehouse tunnel %h:%p --via https://gate.corp.example.com --cert ~/.gatehouse/laptop.crt --key ~/.gatehouse/laptop.key
As a local port:             gatehouse tunnel db.corp.example.com --via https://gate.corp.example.com --listen 127.0.0.1:5432
Gatehouse not in DNS:        gatehouse tunnel db --via https://gate.corp.example.com --resolve gate.corp.example.com:203.0.113.7`,
  )
  .action(
    async (
      target: string,
      o: { via: string; token?: string; cert?: string; key?: string; ca?: string; listen?: string; resolve?: string[]; browser: boolean; signIn: boolean; timeout: string },
    ) => {
      process.exitCode = await runTunnel({ ...o, target, timeoutMs: parseDuration(o.timeout) });
      process.exit(); // stdin may be a terminal that keeps the loop alive; with --listen, Ctrl-C ends the open tunnels too
    },
  );

program
  .command('connect')
  .description('run a connector beside a backend: it dials out to the Gatehouse and serves the routes whose to/tcp is connector:NAME (the backend needs no inbound port)')
  .requiredOption('--via <url>', 'the Gatehouse auth host, e.g. https://gate.example.com')
  .requiredOption('--name <name>', 'the connector name, as in connectors: of the Gatehouse configuration')
  .requiredOption('--to <target>', 'the backend: http://HOST[:PORT], https://HOST[:PORT] (the connector makes the TLS connection) or HOST:PORT')
  .option('--cert <file>', 'the connector certificate (PEM), from gatehouse ca issue --connector NAME')
  .option('--key <file>', 'the private key (PEM) of --cert')
  .option('--enroll <token>', 'enroll with this one-time token (from the dashboard or POST /api/v1/connectors/NAME/enrollment) on first start')
  .option('--state <dir>', 'where an enrolled connector keeps its key and certificate (mode 0600); default ~/.config/gatehouse/connectors/NAME')
  .option('--ca <file>', 'PEM CA to trust for the Gatehouse (default $GATEHOUSE_CA, else the system CAs)')
  .option('--to-ca <file>', 'PEM CA to trust for an https:// backend (default the system CAs)')
  .option('--to-insecure', 'do not verify the certificate of an https:// backend')
  .addHelpText(
    'after',
    `
Enroll once with a token, then restart with the same --state and no token:
  gatehouse connect --via https://gate.example.com --name office-jenkins --to http://127.0.0.1:8080 --enroll ghc_… --state /var/lib/gatehouse-connector
Or with a certificate issued on the Gatehouse host:
  gatehouse ca issue -c gatehouse.yaml --connector office-jenkins --out office-jenkins
  gatehouse connect --via https://gate.example.com --name office-jenkins --to 10.0.0.5:22 --cert office-jenkins.crt --key office-jenkins.key
Run several with the same name to share the load; each keeps a link to every Gatehouse worker and reconnects by itself.`,
  )
  .action(async (o: { via: string; name: string; to: string; cert?: string; key?: string; enroll?: string; state?: string; ca?: string; toCa?: string; toInsecure?: boolean }) => {
    process.exitCode = await runConnect(o);
  });

const token = program.command('token').description('API tokens in the configured store: issue, list, revoke');

token
  .command('issue')
  .description('mint an API token for a user or service account (for automation): the token alone on stdout, printed once')
  .requiredOption('-c, --config <file>', 'configuration file (YAML)')
  .requiredOption('--user <email>', 'whose token it is')
  .option('--ttl <duration>', 'how long the token is valid', '1h')
  .option('--name <name>', 'a name shown in token list', 'api')
  .action(async (o: { config: string; user: string; ttl: string; name: string }) => {
    process.exitCode = await runTokenIssue(o);
  });

token
  .command('list')
  .description('list live tokens (id prefix, user, name, kind, created, expires; never the token)')
  .requiredOption('-c, --config <file>', 'configuration file (YAML)')
  .option('--user <email>', 'only this user\'s tokens')
  .option('--json', 'print JSON (with the full ids)')
  .action(async (o: { config: string; user?: string; json?: boolean }) => {
    process.exitCode = await runTokenList(o);
  });

token
  .command('revoke')
  .description('revoke the token whose id starts with ID-PREFIX (it must be the only one)')
  .requiredOption('-c, --config <file>', 'configuration file (YAML)')
  .argument('<id-prefix>', 'the token id or a unique prefix of it (see token list); after -- when it starts with -')
  .showHelpAfterError("(an id that starts with '-' goes after '--': gatehouse token revoke -c FILE -- ID-PREFIX)")
  .action(async (id: string, o: { config: string }) => {
    process.exitCode = await runTokenRevoke({ config: o.config, id });
  });

const ca = program.command('ca').description('the internal certificate authority in the configured store: init, issue, revoke, list, crl');

ca
  .command('init')
  .description('create the internal CA: a new root (default), an intermediate of your CA (--csr, then --import-cert), or an existing CA (--import-cert with --import-key)')
  .requiredOption('-c, --config <file>', 'configuration file (YAML)')
  .option('--csr <out>', 'make a key and write a CSR to OUT for your CA to sign as an intermediate; finish with --import-cert')
  .option('--import-cert <crt>', 'with --import-key: the CA certificate to import (then its chain); alone: the signed certificate that completes a --csr request')
  .option('--import-key <key>', 'the unencrypted PEM private key of --import-cert')
  .option('--org <name>', 'the O of a new CA\'s subject (CN is "Gatehouse internal CA")', 'Gatehouse')
  .option('--force', 'replace an existing (or pending) CA: every certificate it issued stops being trusted')
  .option('--allow-store-key', 'create the CA without identity.secretsKey (its key is then sealed with a key kept in the same store)')
  .addHelpText(
    'after',
    `
The CA certificate (and its chain) is printed on stdout; the key is sealed in the store with identity.secretsKey
and never written out. An intermediate takes two steps:
  gatehouse ca init -c FILE --csr gatehouse-ca.csr          # then have your CA sign it as a CA certificate
  gatehouse ca init -c FILE --import-cert gatehouse-ca.crt  # the signed certificate first, then its issuers up to the root`,
  )
  .action(async (o: { config: string; csr?: string; importCert?: string; importKey?: string; org?: string; force?: boolean; allowStoreKey?: boolean }, cmd: Command) => {
    const org = cmd.getOptionValueSource('org') === 'default' ? undefined : o.org;
    process.exitCode = await runCaInit({ ...o, org });
  });

ca
  .command('issue')
  .description('issue a client certificate to a user\'s device or to a connector: writes PATH.crt, and PATH.key + PATH.p12 when no CSR is given (the p12 password is printed once on stdout)')
  .requiredOption('-c, --config <file>', 'configuration file (YAML)')
  .option('--user <email>', 'a device certificate for this user (CN and emailAddress = the email)')
  .option('--connector <name>', 'a connector certificate (CN = the name, OU = gatehouse-connector)')
  .option('--device <name>', 'a label for the device, shown in lists (default: unnamed; the name for a connector)')
  .option('--csr <file>', 'sign this PKCS#10 request (only its public key is used; the subject is set by Gatehouse)')
  .option('--days <n>', 'validity in days, 1 to 825', '365')
  .requiredOption('--out <path>', 'where to write PATH.crt (and PATH.key, PATH.p12); existing files are not overwritten')
  .action(async (o: { config: string; user?: string; connector?: string; device?: string; csr?: string; days?: string; out: string }) => {
    process.exitCode = await runCaIssue(o);
  });

ca
  .command('revoke')
  .description('revoke a certificate issued by the internal CA; a running Gatehouse refuses it at once and lists it in the CRL')
  .requiredOption('-c, --config <file>', 'configuration file (YAML)')
  .argument('<serial>', 'the serial number in any spelling: 4F1A..., 4f:1a:..., 0x4f1a...')
  .option('--reason <text>', 'why (kept in the certificate record and the audit log)')
  .action(async (serial: string, o: { config: string; reason?: string }) => {
    process.exitCode = await runCaRevoke({ ...o, serial });
  });

ca
  .command('list')
  .description('list the unexpired certificates issued by the internal CA (serial, kind, user or connector, device, dates, status)')
  .requiredOption('-c, --config <file>', 'configuration file (YAML)')
  .option('--user <email>', 'only this user\'s certificates')
  .option('--json', 'print JSON')
  .action(async (o: { config: string; user?: string; json?: boolean }) => {
    process.exitCode = await runCaList(o);
  });

ca
  .command('crl')
  .description('print the internal CA\'s current CRL (PEM) on stdout')
  .requiredOption('-c, --config <file>', 'configuration file (YAML)')
  .action(async (o: { config: string }) => {
    process.exitCode = await runCaCrl(o);
  });

program
  .command('backup')
  .description('copy every record of the configured store (users, tokens, sessions, certificates, the CA with its sealed key, audit…) to OUT: JSON lines, mode 0600')
  .requiredOption('-c, --config <file>', 'configuration file (YAML)')
  .argument('<out>', 'the backup file to write')
  .option('--force', 'replace OUT when it exists')
  .action(async (out: string, o: { config: string; force?: boolean }) => {
    process.exitCode = await runBackup({ ...o, out });
  });

program
  .command('restore')
  .description('write every record of the backup IN into the configured store, which must be empty (or --force); SQLite and etcd either way')
  .requiredOption('-c, --config <file>', 'configuration file (YAML)')
  .argument('<in>', 'a file written by gatehouse backup')
  .option('--force', 'delete everything in the store first')
  .addHelpText('after', '\nSealed secrets stay sealed: the restored store needs the same identity.secretsKey. Restore before starting the Gatehouses that use the store.')
  .action(async (file: string, o: { config: string; force?: boolean }) => {
    process.exitCode = await runRestore({ ...o, in: file });
  });

try {
  await program.parseAsync(process.argv);
} catch (err) {
  fail(err);
}
