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
import { runTokenIssue, runTokenList, runTokenRevoke } from './token.ts';
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
  .argument('<id-prefix>', 'the token id or a unique prefix of it (see token list)')
  .action(async (id: string, o: { config: string }) => {
    process.exitCode = await runTokenRevoke({ config: o.config, id });
  });

try {
  await program.parseAsync(process.argv);
} catch (err) {
  fail(err);
}
