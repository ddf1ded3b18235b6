/**
 * The arguments of `gatehouse tunnel`: the target (NAME, HOST or HOST:PORT; SSH's port by default), `--resolve`
 * (curl's HOST:ADDRESS and HOST:PORT:ADDRESS) and `--listen` (loopback only: whoever reaches it uses your token).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseListen, parseResolve, parseTunnelTarget } from '../../../src/cli/tunnel.ts';
import { GatehouseError } from '../../../src/core/index.ts';

const usage = (f: () => unknown) => assert.throws(f, (e: unknown) => e instanceof GatehouseError && e.code === 'ERR_USAGE');

describe('gatehouse tunnel arguments', () => {
  it('reads NAME, HOST and HOST:PORT, with port 22 when none is given', () => {
    assert.deepEqual(parseTunnelTarget('db'), { host: 'db', port: 22 });
    assert.deepEqual(parseTunnelTarget('Build1.SSH.corp.example.com:2222'), { host: 'build1.ssh.corp.example.com', port: 2222 });
    assert.deepEqual(parseTunnelTarget('[::1]:22'), { host: '[::1]', port: 22 });
    for (const bad of ['', 'a b', 'host:0', 'host:65536', 'host:', '-host', 'user@host']) usage(() => parseTunnelTarget(bad));
  });

  it('reads --resolve like curl', () => {
    assert.deepEqual(parseResolve('gate.example.com:203.0.113.7'), { host: 'gate.example.com', port: undefined, address: '203.0.113.7' });
    assert.deepEqual(parseResolve('Gate.example.com:8443:127.0.0.1'), { host: 'gate.example.com', port: 8443, address: '127.0.0.1' });
    assert.deepEqual(parseResolve('gate.example.com:443:[2001:db8::1]'), { host: 'gate.example.com', port: 443, address: '2001:db8::1' });
    for (const bad of ['gate.example.com', 'gate.example.com:nowhere', ':127.0.0.1', 'gate:443:999.1.1.1']) usage(() => parseResolve(bad));
  });

  it('listens on loopback only', () => {
    assert.deepEqual(parseListen('127.0.0.1:2222'), { host: '127.0.0.1', port: 2222 });
    assert.deepEqual(parseListen('localhost:0'), { host: '127.0.0.1', port: 0 });
    assert.deepEqual(parseListen('[::1]:5432'), { host: '::1', port: 5432 });
    for (const bad of ['0.0.0.0:2222', '192.0.2.1:22', '[::]:22', '2222', '127.0.0.1:70000']) usage(() => parseListen(bad));
  });
});
