/**
 * SSH through the front door, with the real OpenSSH programs: `sshd` (a throwaway host key and user key, on
 * 127.0.0.1, as the current user) published as a `tcp` route, and `ssh`/`scp` with
 * `ProxyCommand gatehouse tunnel %h:%p --via https://gate.test:PORT`: a remote command, a 100 MiB copy with its
 * SHA-256 intact, a user without the role refused in one line, an open session cut when its token is revoked
 * or its user disabled, and `--listen` for a plain TCP client.
 *
 * sshd run by root needs its privilege-separation directory (/run/sshd), which the Debian package only makes
 * when the service starts: the test makes it when it is missing.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, openSync, writeSync, closeSync, writeFileSync, chmodSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { join } from 'node:path';
import { userInfo } from 'node:os';
import { freePort, startSignInWorld, tempDir, type SignInWorld } from '../harness/index.ts';
import { GATEHOUSE_BIN, spawnGatehouse } from '../harness/tunnels.ts';
import { event, startConnector, type ConnectorProcess } from '../harness/connectors.ts';
import type { Gatehouse } from '../../src/app/index.ts';

const SSHD = '/usr/sbin/sshd';
const ALICE = { email: 'alice@example.com', password: 'alice-password' };
const BOB = { email: 'bob@example.com', password: 'bob-password' };
const DAVE = { email: 'dave@example.com', password: 'dave-password' };
const ROOT = { email: 'root@example.com', password: 'root-password' };
const BOX = 'box.corp.test';
/** the same sshd published through a connector (`tcp: connector:lab`): Gatehouse never dials it itself */
const LAB = 'lab.corp.test';
const SECRETS_KEY = 'a-secrets-key-for-the-ssh-tests-only-0123456789';

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

describe('SSH through gatehouse tunnel', { timeout: 120_000 }, () => {
  const t = tempDir('gatehouse-ssh-');
  const user = userInfo().username;
  const home = join(t.dir, 'home');
  let w: SignInWorld;
  let g: Gatehouse;
  let sshd: ChildProcess;
  let sshdLog = '';
  let connector: ConnectorProcess | undefined;
  const tokens: Record<string, string> = {};
  const children = new Set<ChildProcess>();

  before(async () => {
    if (!existsSync(SSHD)) throw new Error(`${SSHD} is not installed (apt-get install -y openssh-server openssh-client)`);
    if (process.getuid?.() === 0 && !existsSync('/run/sshd')) mkdirSync('/run/sshd', { mode: 0o755 });
    mkdirSync(home);
    const keygen = (file: string) => execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'gatehouse-test', '-f', file]);
    keygen(join(t.dir, 'host_key'));
    keygen(join(t.dir, 'user_key'));
    writeFileSync(join(t.dir, 'authorized_keys'), execFileSync('cat', [join(t.dir, 'user_key.pub')]));
    chmodSync(join(t.dir, 'user_key'), 0o600);
    const sshPort = await freePort();
    writeFileSync(
      join(t.dir, 'sshd_config'),
      [
        `Port ${sshPort}`,
        'ListenAddress 127.0.0.1',
        `HostKey ${join(t.dir, 'host_key')}`,
        `AuthorizedKeysFile ${join(t.dir, 'authorized_keys')}`,
        'UsePAM no',
        'StrictModes no',
        'PidFile none',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'PermitRootLogin prohibit-password',
        'Subsystem sftp internal-sftp',
        'LogLevel VERBOSE',
      ].join('\n') + '\n',
    );
    sshd = spawn(SSHD, ['-D', '-e', '-f', join(t.dir, 'sshd_config')], { stdio: ['ignore', 'ignore', 'pipe'] });
    sshd.stderr!.on('data', (c: Buffer) => (sshdLog += c.toString()));
    await waitUntil(() => sshdLog.includes('Server listening'), () => `sshd did not start: ${sshdLog}`);

    w = await startSignInWorld({
      users: [ALICE, BOB, DAVE, ROOT],
      identity: { admins: [ROOT.email], secretsKey: SECRETS_KEY },
      connectors: [{ name: 'lab' }],
      routes: [
        { name: 'box', host: BOX, to: undefined, tcp: `127.0.0.1:${sshPort}`, allow: { roles: ['ops'] } },
        { name: 'lab', host: LAB, to: undefined, tcp: 'connector:lab', allow: { roles: ['ops'] } },
      ],
      roles: [{ name: 'ops', members: [ALICE.email, DAVE.email], grants: ['box', 'lab'] }],
    });
    g = w.main.gh!.g;
    // a connector beside sshd: it dials out to Gatehouse with a certificate from the internal CA
    await g.services.ca.createRoot({ by: 'test' });
    const issued = await g.services.ca.issue({ connector: 'lab', issuedBy: 'test' });
    writeFileSync(join(t.dir, 'lab.crt'), issued.certPem + issued.chainPem);
    writeFileSync(join(t.dir, 'lab.key'), issued.keyPem!, { mode: 0o600 });
    connector = startConnector(t.dir, [
      '--via', `https://gate.test:${w.main.port}`, '--name', 'lab', '--to', `127.0.0.1:${sshPort}`,
      '--cert', join(t.dir, 'lab.crt'), '--key', join(t.dir, 'lab.key'), '--ca', w.ca.cert,
    ]);
    await connector.waitFor(event('connector_connected'));
    for (const u of [ALICE, BOB, DAVE]) tokens[u.email] = (await g.services.sessions.issueToken(u.email, 'ssh tests', 3_600_000, 'api')).token;
  });

  after(async () => {
    for (const c of children) c.kill('SIGKILL');
    await connector?.stop('SIGKILL');
    sshd?.kill();
    await w?.close();
    t.cleanup();
  });

  const proxyCommand = () =>
    `${process.execPath} ${GATEHOUSE_BIN} tunnel %h:%p --via https://gate.test:${w.main.port} --resolve gate.test:127.0.0.1 --ca ${w.ca.cert} --no-sign-in`;

  const sshOptions = (proxy = true) => [
    '-F', '/dev/null',
    '-i', join(t.dir, 'user_key'),
    '-o', 'IdentitiesOnly=yes',
    '-o', `UserKnownHostsFile=${join(t.dir, 'known_hosts')}`,
    '-o', 'StrictHostKeyChecking=accept-new',
    '-o', 'BatchMode=yes',
    '-o', 'LogLevel=ERROR',
    ...(proxy ? ['-o', `ProxyCommand=${proxyCommand()}`] : []),
  ];

  function start(program: 'ssh' | 'scp', args: string[], token: string): { child: ChildProcess; result: Promise<Ran>; stdout: () => string } {
    const started = Date.now();
    const child = spawn(program, args, {
      env: { ...process.env, GATEHOUSE_TOKEN: token, GATEHOUSE_CA: '', HOME: home, XDG_CONFIG_HOME: join(home, 'xdg') },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    const result = new Promise<Ran>((r) =>
      child.on('exit', (code) => {
        children.delete(child);
        r({ code, stdout, stderr, ms: Date.now() - started });
      }),
    );
    return { child, result, stdout: () => stdout };
  }

  const ssh = (token: string, command: string) => start('ssh', [...sshOptions(), '-l', user, BOX, command], token);

  it('runs a remote command through the tunnel', async () => {
    const r = await ssh(tokens[ALICE.email]!, 'echo hello-through-gatehouse; uname -s').result;
    assert.equal(r.code, 0, `${r.stderr}\n${sshdLog.slice(-2000)}`);
    assert.equal(r.stdout, 'hello-through-gatehouse\nLinux\n');
    assert.equal(r.stderr, '');
  });

  it('copies 100 MiB with scp and the SHA-256 is intact', async () => {
    const source = join(t.dir, 'payload.bin');
    const dest = join(t.dir, 'copied.bin');
    const fd = openSync(source, 'w');
    const sent = createHash('sha256');
    for (let i = 0; i < 100; i++) {
      const block = randomBytes(1024 * 1024);
      sent.update(block);
      writeSync(fd, block);
    }
    closeSync(fd);
    const r = await start('scp', [...sshOptions(), '-q', source, `${user}@${BOX}:${dest}`], tokens[ALICE.email]!).result;
    assert.equal(r.code, 0, r.stderr);
    const got = createHash('sha256');
    for await (const chunk of createReadStream(dest)) got.update(chunk as Buffer);
    assert.equal(got.digest('hex'), sent.digest('hex'));
    const mibPerSecond = 100 / (r.ms / 1000);
    process.stderr.write(`# scp of 100 MiB through gatehouse tunnel: ${r.ms} ms, ${mibPerSecond.toFixed(1)} MiB/s (process start and SSH handshake included)\n`);
  });

  it('reaches sshd through a connector (tcp: connector:NAME): a command and a 20 MiB copy, checksum intact', async () => {
    const r = await start('ssh', [...sshOptions(), '-l', user, LAB, 'echo hello-through-the-connector'], tokens[ALICE.email]!).result;
    assert.equal(r.code, 0, `${r.stderr}\n${connector!.stderr.join('\n')}`);
    assert.equal(r.stdout, 'hello-through-the-connector\n');
    const source = join(t.dir, 'lab-payload.bin');
    const dest = join(t.dir, 'lab-copied.bin');
    const block = randomBytes(20 * 1024 * 1024);
    writeFileSync(source, block);
    const copy = await start('scp', [...sshOptions(), '-q', source, `${user}@${LAB}:${dest}`], tokens[ALICE.email]!).result;
    assert.equal(copy.code, 0, copy.stderr);
    const got = createHash('sha256');
    for await (const chunk of createReadStream(dest)) got.update(chunk as Buffer);
    assert.equal(got.digest('hex'), createHash('sha256').update(block).digest('hex'));
    const refused = await start('ssh', [...sshOptions(), '-l', user, LAB, 'echo never'], tokens[BOB.email]!).result;
    assert.equal(refused.code, 255);
    assert.match(refused.stderr, /\(ERR_POLICY_DENIED\)$/m);
  });

  it('refuses a user without the role in one line from gatehouse tunnel, and ssh fails', async () => {
    const r = await ssh(tokens[BOB.email]!, 'echo never').result;
    assert.equal(r.code, 255);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^gatehouse: refused box\.corp\.test:22 through https:\/\/gate\.test:\d+: .*bob@example\.com.*\(ERR_POLICY_DENIED\)$/m);
  });

  it('cuts an open session within a second or two when its token is revoked', async () => {
    const extra = (await g.services.sessions.issueToken(ALICE.email, 'revoked mid-session', 3_600_000, 'api')).token;
    const session = ssh(extra, 'echo ready; sleep 10');
    await waitUntil(() => session.stdout().includes('ready'), () => 'the ssh session did not start');
    const cut = Date.now();
    await g.services.sessions.revokeToken(createHash('sha256').update(extra).digest('base64url'));
    const r = await session.result;
    const ms = Date.now() - cut;
    assert.notEqual(r.code, 0);
    assert.ok(ms < 2000, `the session ended ${ms} ms after the revocation`);
    process.stderr.write(`# token revoked: the ssh session ended ${ms} ms later\n`);
  });

  it('cuts an open session within a second or two when its user is disabled', async () => {
    const session = ssh(tokens[DAVE.email]!, 'echo ready; sleep 10');
    await waitUntil(() => session.stdout().includes('ready'), () => 'the ssh session did not start');
    const cut = Date.now();
    await g.services.directory.disable(DAVE.email, { email: ROOT.email });
    const r = await session.result;
    const ms = Date.now() - cut;
    assert.notEqual(r.code, 0);
    assert.ok(ms < 2000, `the session ended ${ms} ms after the user was disabled`);
    process.stderr.write(`# user disabled: the ssh session ended ${ms} ms later\n`);
  });

  it('offers the tunnel as a local port with --listen: each connection is its own tunnel', async () => {
    const run = spawnGatehouse(
      ['tunnel', BOX, '--via', `https://gate.test:${w.main.port}`, '--resolve', 'gate.test:127.0.0.1', '--ca', w.ca.cert, '--token', tokens[ALICE.email]!, '--listen', '127.0.0.1:0'],
      { HOME: home, XDG_CONFIG_HOME: join(home, 'xdg') },
    );
    children.add(run.child);
    try {
      const [, port] = await run.waitForStderr(/listening on 127\.0\.0\.1:(\d+)/);
      const banner = () =>
        new Promise<string>((resolve, reject) => {
          const s = netConnect({ host: '127.0.0.1', port: Number(port) });
          let text = '';
          s.on('data', (c: Buffer) => {
            text += c.toString('latin1');
            if (text.includes('\n')) {
              s.destroy();
              resolve(text);
            }
          });
          s.on('error', reject);
          setTimeout(() => reject(new Error(`no banner, got ${JSON.stringify(text)}`)), 10_000).unref();
        });
      const [a, b] = await Promise.all([banner(), banner()]);
      assert.match(a, /^SSH-2\.0-OpenSSH/);
      assert.match(b, /^SSH-2\.0-OpenSSH/);
      assert.equal(run.stdout.length, 0);
      // and ssh itself through the local port
      const r = await start('ssh', [...sshOptions(false), '-o', `HostKeyAlias=${BOX}`, '-p', port!, '-l', user, '127.0.0.1', 'echo via-listen'], '').result;
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'via-listen\n');
    } finally {
      run.child.kill('SIGTERM');
      await run.exited;
    }
  });
});

async function waitUntil(test: () => boolean, what: () => string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!test()) {
    if (Date.now() > deadline) throw new Error(what());
    await new Promise((r) => setTimeout(r, 25));
  }
}
