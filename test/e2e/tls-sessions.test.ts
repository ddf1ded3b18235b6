import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connect, type TLSSocket } from 'node:tls';
import { TestCa, startEcho, startGatehouse, tempDir, type Backend, type RunningGatehouse } from '../harness/index.ts';

/** Opens a TLS connection (optionally resuming `session`), sends one request, returns whether it resumed and the new session. */
function handshake(port: number, ca: string, session?: Buffer): Promise<{ reused: boolean; session: Buffer | undefined }> {
  return new Promise((resolve, reject) => {
    let latest: Buffer | undefined;
    const s: TLSSocket = connect({ host: '127.0.0.1', port, servername: 'app.corp.test', ca, ...(session ? { session } : {}) });
    s.on('session', (sess: Buffer) => (latest = sess));
    s.on('secureConnect', () => s.write('GET / HTTP/1.1\r\nHost: app.corp.test\r\nConnection: close\r\n\r\n'));
    s.on('data', () => undefined);
    s.on('end', () => resolve({ reused: s.isSessionReused(), session: latest }));
    s.on('error', reject);
  });
}

describe('TLS sessions across processes that share ticket keys (as workers do)', () => {
  const t = tempDir();
  let echo: Backend;
  let a: RunningGatehouse;
  let b: RunningGatehouse;
  let c: RunningGatehouse;
  let ca: TestCa;

  before(async () => {
    ca = new TestCa(t.dir);
    const server = ca.server(['*.corp.test', 'gate.test']);
    echo = await startEcho();
    const config = {
      server: { https: '127.0.0.1:0', authHost: 'gate.test', workers: 1, tls: { cert: server.cert, key: server.key } },
      routes: [{ name: 'app', host: 'app.corp.test', to: echo.origin, auth: 'public' }],
    };
    const keys = randomBytes(48);
    a = await startGatehouse(t.dir, config, { ticketKeys: keys, name: 'a.yaml' });
    b = await startGatehouse(t.dir, config, { ticketKeys: keys, name: 'b.yaml' });
    c = await startGatehouse(t.dir, config, { ticketKeys: randomBytes(48), name: 'c.yaml' });
  });
  after(async () => {
    await Promise.all([a.close(), b.close(), c.close()]);
    await echo.close();
    t.cleanup();
  });

  it('a session from one instance resumes on another with the same keys, not on one with other keys', async () => {
    const first = await handshake(a.httpsPort, ca.certPem);
    assert.equal(first.reused, false);
    assert.ok(first.session, 'a session ticket arrived');
    const onB = await handshake(b.httpsPort, ca.certPem, first.session);
    assert.equal(onB.reused, true, 'resumed on the second instance');
    const onC = await handshake(c.httpsPort, ca.certPem, first.session);
    assert.equal(onC.reused, false, 'an instance with other keys cannot resume it');
  });
});
