/**
 * Runs Gatehouse in this process from a configuration given as an object (written as YAML into a temp
 * directory), with its log lines captured for assertions.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { Logger } from '../../src/core/index.ts';
import { Gatehouse } from '../../src/app/index.ts';

export interface RunningGatehouse {
  readonly g: Gatehouse;
  readonly configFile: string;
  readonly httpsPort: number;
  readonly httpPort: number | undefined;
  readonly proxyPort: number | undefined;
  /** every JSON log line so far */
  readonly lines: Record<string, unknown>[];
  writeConfig(config: unknown): void;
  close(): Promise<void>;
}

function port(address: string | undefined): number | undefined {
  return address ? Number(address.slice(address.lastIndexOf(':') + 1)) : undefined;
}

export async function startGatehouse(
  dir: string,
  config: Record<string, unknown>,
  options: { ticketKeys?: Buffer; name?: string } = {},
): Promise<RunningGatehouse> {
  const configFile = join(dir, options.name ?? 'gatehouse.yaml');
  const write = (c: unknown) => writeFileSync(configFile, stringify(c));
  write(config);
  const lines: Record<string, unknown>[] = [];
  const log = new Logger({
    sink: {
      write(chunk: string) {
        for (const l of chunk.split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      },
    },
  });
  const g = await Gatehouse.start({ configFile, log, ...(options.ticketKeys ? { ticketKeys: options.ticketKeys } : {}) });
  return {
    g,
    configFile,
    httpsPort: port(g.addresses.https)!,
    httpPort: port(g.addresses.http),
    proxyPort: port(g.addresses.forwardProxy),
    lines,
    writeConfig: write,
    close: () => g.destroy(),
  };
}
