/**
 * Real etcd for tests (Debian's `etcd-server`): one member or a three-member cluster on 127.0.0.1 with
 * free ports and data in a temp folder, optionally with TLS and client certificates from a `TestCa`.
 * Members can be stopped (SIGTERM), killed (SIGKILL) and started again on the same ports and data.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { createServer, type AddressInfo } from 'node:net';
import { Agent, request } from 'undici';
import type { CertFiles, TestCa } from './certs.ts';

export interface EtcdMember {
  readonly name: string;
  readonly clientUrl: string;
  readonly peerUrl: string;
  readonly dataDir: string;
  readonly running: boolean;
  /** Starts the member (again), resolving once it answers /health (with `wait`, the default). */
  start(options?: { wait?: boolean }): Promise<void>;
  /** Resolves once the member answers /health (a member of a cluster: once there is a leader). */
  ready(timeout?: number): Promise<void>;
  /** SIGTERM, resolving once it has exited. */
  stop(): Promise<void>;
  /** SIGKILL, resolving once it has exited. */
  kill(): Promise<void>;
}

export interface EtcdCluster {
  readonly members: readonly EtcdMember[];
  /** Every member's client URL. */
  readonly endpoints: string[];
  /** For `tls: true`: the files a client needs (the CA of the members' certificates, a client certificate). */
  readonly client?: { readonly ca: string; readonly cert: string; readonly key: string };
  /** The member that is the cluster's leader now, by its own status (undefined while there is none). */
  leader(): Promise<EtcdMember | undefined>;
  /** Kills every member and removes the data. */
  close(): Promise<void>;
}

export interface EtcdOptions {
  /** The folder for data and logs (each member gets a subfolder). */
  readonly dir: string;
  /** 1 (default) or 3. */
  readonly members?: 1 | 3;
  /** Client URLs over TLS with client certificates required, all from this CA. */
  readonly ca?: TestCa;
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** etcd's server certificate: its JSON gateway dials its own gRPC port with it, so it is a client certificate too. */
function memberCertificate(ca: TestCa, name: string): CertFiles {
  const base = join(ca.dir, `etcd-${name}`);
  const ext = `${base}.ext`;
  writeFileSync(ext, 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n');
  const run = (args: string[]) => execFileSync('openssl', args, { cwd: ca.dir, stdio: ['ignore', 'ignore', 'pipe'] });
  run(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${base}.key`, '-out', `${base}.csr`, '-subj', `/CN=etcd ${name}`]);
  run(['x509', '-req', '-in', `${base}.csr`, '-CA', ca.cert, '-CAkey', ca.key, '-set_serial', `0x7${randomBytes(8).toString('hex')}`, '-out', `${base}.crt`, '-days', '30', '-extfile', ext]);
  return { cert: `${base}.crt`, key: `${base}.key`, certPem: readFileSync(`${base}.crt`, 'utf8'), keyPem: readFileSync(`${base}.key`, 'utf8'), serial: '' };
}

export async function startEtcd(options: EtcdOptions): Promise<EtcdCluster> {
  const count = options.members ?? 1;
  const scheme = options.ca ? 'https' : 'http';
  const ports = await Promise.all(Array.from({ length: count * 2 }, () => freePort()));
  const names = Array.from({ length: count }, (_, i) => `m${i}`);
  const peers = names.map((name, i) => `${name}=http://127.0.0.1:${ports[count + i]}`).join(',');
  const client = options.ca ? options.ca.client('/CN=gatehouse') : undefined;
  const agent = new Agent(client && options.ca ? { connect: { ca: options.ca.certPem, cert: client.certPem, key: client.keyPem } } : {});

  async function answers(url: string): Promise<boolean> {
    try {
      const r = await request(`${url}/health`, { dispatcher: agent, signal: AbortSignal.timeout(1000) });
      const body = (await r.body.json()) as { health?: string };
      return r.statusCode === 200 && body.health === 'true';
    } catch {
      return false;
    }
  }

  const members = names.map((name, i): EtcdMember & { child?: ChildProcess } => {
    const clientUrl = `${scheme}://127.0.0.1:${ports[i]}`;
    const peerUrl = `http://127.0.0.1:${ports[count + i]}`;
    const dataDir = join(options.dir, name, 'data');
    mkdirSync(join(options.dir, name), { recursive: true });
    const cert = options.ca ? memberCertificate(options.ca, name) : undefined;
    let exited: Promise<void> = Promise.resolve();
    /** Why the last start failed before etcd ran at all. */
    let failure = '';
    let started = false;
    const member: EtcdMember & { child?: ChildProcess } = {
      name,
      clientUrl,
      peerUrl,
      dataDir,
      get running() {
        return member.child !== undefined;
      },
      async start({ wait = true } = {}) {
        if (member.child) return;
        const args = [
          '--name', name, '--data-dir', dataDir,
          '--listen-client-urls', clientUrl, '--advertise-client-urls', clientUrl,
          '--listen-peer-urls', peerUrl, '--initial-advertise-peer-urls', peerUrl,
          '--initial-cluster', peers, '--initial-cluster-state', started && existsSync(dataDir) ? 'existing' : 'new', '--initial-cluster-token', `gatehouse-test-${ports[0]}`,
          // etcd's own timings: shorter ones make a loaded machine (CI) miss heartbeats and re-elect over and over
          '--heartbeat-interval', '100', '--election-timeout', '1000',
          '--logger', 'zap', '--log-outputs', 'stderr', '--log-level', 'warn',
          ...(cert && options.ca ? ['--cert-file', cert.cert, '--key-file', cert.key, '--trusted-ca-file', options.ca.cert, '--client-cert-auth'] : []),
        ];
        started = true;
        const log = openSync(join(options.dir, name, 'etcd.log'), 'a');
        const child = spawn('etcd', args, { stdio: ['ignore', log, log] });
        closeSync(log);
        member.child = child;
        running.add(child);
        exited = new Promise((resolve) => {
          const gone = () => {
            running.delete(child);
            if (member.child === child) member.child = undefined;
            resolve();
          };
          child.once('exit', gone);
          child.once('error', (err) => {
            failure = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'there is no etcd command: install Debian\'s etcd-server' : err.message;
            gone();
          });
        });
        if (wait) await member.ready();
      },
      async ready(timeout = 15_000) {
        const deadline = Date.now() + timeout;
        while (!(await answers(clientUrl))) {
          if (!member.child) throw new Error(`etcd ${name} exited at start: ${failure || `see ${join(options.dir, name, 'etcd.log')}`}`);
          if (Date.now() > deadline) throw new Error(`etcd ${name} did not become healthy: see ${join(options.dir, name, 'etcd.log')}`);
          await new Promise((resolve) => setTimeout(resolve, 25));
        }
      },
      async stop() {
        member.child?.kill('SIGTERM');
        await exited;
      },
      async kill() {
        member.child?.kill('SIGKILL');
        await exited;
      },
    };
    return member;
  });

  // members of a new cluster wait for each other: start them all before waiting for any
  await Promise.all(members.map((m) => m.start({ wait: false })));
  const cluster: EtcdCluster = {
    members,
    endpoints: members.map((m) => m.clientUrl),
    ...(client && options.ca ? { client: { ca: options.ca.cert, cert: client.cert, key: client.key } } : {}),
    async leader() {
      for (const member of members) {
        if (!member.running) continue;
        try {
          const r = await request(`${member.clientUrl}/v3/maintenance/status`, { dispatcher: agent, method: 'POST', body: '{}', signal: AbortSignal.timeout(1000) });
          const status = (await r.body.json()) as { leader?: string; header?: { member_id?: string } };
          if (status.leader && status.leader === status.header?.member_id) return member;
        } catch {
          // not answering: not the leader
        }
      }
      return undefined;
    },
    async close() {
      // the data goes too: no need for a graceful stop (which, for a whole cluster at once, waits seconds on a leader hand-over)
      await Promise.all(members.map((m) => m.kill()));
      await agent.close();
      for (const name of names) rmSync(join(options.dir, name), { recursive: true, force: true });
    },
  };
  try {
    await Promise.all(members.map((m) => m.ready()));
  } catch (err) {
    await cluster.close().catch(() => undefined);
    throw err;
  }
  return cluster;
}
