/**
 * The `gatehouse` command line. Every command has --help; errors are one line on stderr and a non-zero exit
 * (a stack trace only with --debug).
 */
import { Command, CommanderError } from 'commander';
import { Logger, messageOf } from '../core/index.ts';
import { runCheck } from './check.ts';
import { runPac } from './pac.ts';
import { runDemo } from './demo.ts';
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
  .command('demo')
  .description('start a complete local demo on embedded defaults: CA, certificates, sample backends, routes')
  .option('--dir <dir>', 'where the demo keeps its files', '.demo')
  .option('--port <port>', 'TLS front door port', '8443')
  .action(async (o: { dir: string; port: string }) => {
    await runDemo({ dir: o.dir, port: Number(o.port) });
  });

try {
  await program.parseAsync(process.argv);
} catch (err) {
  fail(err);
}
