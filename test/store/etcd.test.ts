/**
 * The etcd store against real etcd (Debian's etcd-server): the shared contract, then what only etcd
 * does — its key layout, sweeping, a cluster losing a member, outages, a replaced etcd, TLS.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { createServer, request as httpRequest, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Agent, request } from 'undici';
import { loadConfigText } from '../../src/config/index.ts';
import { GatehouseError, type ErrorCode, type StoreUnavailableError } from '../../src/core/index.ts';
import { runStoreContract } from '../../src/store/contract.ts';
import { openEtcdStore, openStore, type EtcdStore, type EtcdStoreOptions, type StoreChange, type StoreResync } from '../../src/store/index.ts';
import { TestCa } from '../harness/certs.ts';
import { startEtcd, type EtcdCluster } from '../harness/etcd.ts';
import { tempDir } from '../harness/tmp.ts';

const tmp = tempDir('gatehouse-etcd-');
const etcd = await startEtcd({ dir: tmp.dir });
after(async () => {
  await etcd.close();
  tmp.cleanup();
});

const prefix = '/contract/';
runStoreContract('etcd', () => openEtcdStore({ endpoints: etcd.endpoints, prefix, requestTimeout: 3000 }), {
  compact: async (store: EtcdStore) => void (await store.compact()),
  config: { etcd: { endpoints: etcd.endpoints, prefix } },
  baseDir: tmp.dir,
});

async function rejectsWith(promise: Promise<unknown>, code: ErrorCode): Promise<GatehouseError> {
  let caught: unknown;
  await assert.rejects(promise, (err: unknown) => ((caught = err), err instanceof GatehouseError && err.code === code));
  return caught as GatehouseError;
}

async function waitFor(condition: () => boolean | Promise<boolean>, what: string, timeout = 10_000): Promise<void> {
  const deadline = Date.now() + timeout;
  while (!(await condition())) {
    if (Date.now() > deadline) assert.fail(`timed out after ${timeout} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Follows a store from `from`, keeping every change and resync. */
function follow(store: EtcdStore, from: number) {
  const changes: StoreChange[] = [];
  const resyncs: StoreResync[] = [];
  const controller = new AbortController();
  store.watch(from, { onChanges: (c) => changes.push(...c), onResync: (r) => resyncs.push(r) }, controller.signal);
  return { changes, resyncs, stop: () => controller.abort() };
}

/** Raw etcd: every key (as text) under `keyPrefix`. */
async function rawKeys(endpoint: string, keyPrefix: string): Promise<string[]> {
  const key = Buffer.from(keyPrefix);
  const end = Buffer.from(key);
  end[end.length - 1]! += 1;
  const r = await request(`${endpoint}/v3/kv/range`, { method: 'POST', body: JSON.stringify({ key: key.toString('base64'), range_end: end.toString('base64'), keys_only: true }) });
  const body = (await r.body.json()) as { kvs?: Array<{ key: string }> };
  return (body.kvs ?? []).map((kv) => Buffer.from(kv.key, 'base64').toString());
}

/** Raw etcd: every key (as text) under `keyPrefix`, with the lease it is attached to ('' for none). */
async function rawLeases(endpoint: string, keyPrefix: string): Promise<Array<[string, string]>> {
  const key = Buffer.from(keyPrefix);
  const end = Buffer.from(key);
  end[end.length - 1]! += 1;
  const r = await request(`${endpoint}/v3/kv/range`, { method: 'POST', body: JSON.stringify({ key: key.toString('base64'), range_end: end.toString('base64') }) });
  const body = (await r.body.json()) as { kvs?: Array<{ key: string; lease?: string }> };
  return (body.kvs ?? []).map((kv) => [Buffer.from(kv.key, 'base64').toString(), kv.lease ?? '']);
}

/** etcd's count of the leases it granted. */
async function leasesGranted(endpoint: string): Promise<number> {
  const text = await (await request(`${endpoint}/metrics`)).body.text();
  const granted = /^etcd_debugging_lease_granted_total (\d+)$/m.exec(text)?.[1];
  assert.ok(granted !== undefined, 'etcd reports etcd_debugging_lease_granted_total');
  return Number(granted);
}

describe('etcd store', () => {
  let n = 0;
  const stores: EtcdStore[] = [];
  /** A store on the shared etcd, under a prefix of its own. */
  async function open(options: Partial<EtcdStoreOptions> = {}, cluster: EtcdCluster = etcd): Promise<EtcdStore> {
    const store = await openEtcdStore({ endpoints: cluster.endpoints, prefix: `/t${++n}/`, requestTimeout: 2000, ...options });
    stores.push(store);
    return store;
  }
  after(async () => {
    for (const s of stores) await s.close().catch(() => undefined);
  });

  it('checks its options and names the known ones', async () => {
    await assert.rejects(openEtcdStore({ endpoints: etcd.endpoints, prefx: '/x/' } as never), /unknown etcd store option "prefx".*prefix/);
    await assert.rejects(openEtcdStore({ endpoints: [] }), TypeError);
    await assert.rejects(openEtcdStore({ endpoints: ['127.0.0.1:2379'] }), /not a URL|http\(s\)/);
    await assert.rejects(openEtcdStore({ endpoints: ['http://127.0.0.1:2379/v3'] }), /no path/);
    await assert.rejects(openEtcdStore({ endpoints: etcd.endpoints, requestTimeout: 0 }), TypeError);
    await assert.rejects(openEtcdStore({ endpoints: etcd.endpoints, tls: { cert: '/nonexistent/c.pem' } }), (err: unknown) => err instanceof GatehouseError && /c\.pem/.test(err.message));
    const store = await openStore({ etcd: { endpoints: etcd.endpoints, prefix: '/opened/' } }, tmp.dir);
    try {
      assert.equal(store.name, 'etcd');
      assert.equal(await store.healthy(), true);
    } finally {
      await store.close();
    }
  });

  it('the configuration checks the etcd section as the store will use it', async () => {
    const problems = async (etcdYaml: string) => {
      const text = `server:\n  authHost: gate.example.com\nstore:\n  etcd: ${etcdYaml}\n`;
      const r = await loadConfigText(text, join(tmp.dir, 'gatehouse.yaml'));
      return r.ok ? [] : r.problems.map((p) => p.message);
    };
    assert.deepEqual(await problems(`{ endpoints: [${etcd.endpoints[0]}] }`), []);
    assert.match((await problems('{ endpoints: [http://10.0.0.1:2379/v3] }')).join('\n'), /http\(s\):\/\/host:port, with no path/);
    assert.match((await problems('{ endpoints: [] }')).join('\n'), /endpoints/);
    assert.match((await problems(`{ endpoints: [${etcd.endpoints[0]}], tls: { cert: ${tmp.dir} } }`)).join('\n'), /cert and key go together/);
    assert.match((await problems(`{ endpoints: [${etcd.endpoints[0]}], prefx: /a/ }`)).join('\n'), /prefix/);
  });

  it('keeps a record at PREFIX KIND/ID, the id as raw UTF-8, and an expiring one in the expiry index while it lives', async () => {
    const store = await open({ sweepInterval: 0 });
    await store.put('user', 'a/é@example.com', { x: 1 });
    await store.put('session', 's1', 1, { expiresAt: 4_102_444_800_000 });
    assert.deepEqual(await rawKeys(etcd.endpoints[0]!, store.prefix), [
      `${store.prefix}!x/0004102444800000/session/s1`,
      `${store.prefix}session/s1`,
      `${store.prefix}user/a/é@example.com`,
    ]);
    // replaced with another expiry, then without one, then deleted: the index follows, nothing is left for a sweep
    await store.put('session', 's1', 2, { expiresAt: 4_102_444_800_001 });
    assert.ok((await rawKeys(etcd.endpoints[0]!, store.prefix)).includes(`${store.prefix}!x/0004102444800001/session/s1`));
    await store.put('session', 's1', 3);
    await store.put('session', 's2', 3, { expiresAt: 4_102_444_800_000 });
    await store.delete('session', 's2');
    assert.deepEqual(await rawKeys(etcd.endpoints[0]!, `${store.prefix}!`), []);
  });

  it('sweeps by itself, and processes sweeping together delete each expired record once', async () => {
    const first = await open({ sweepInterval: 20 });
    const second = await openEtcdStore({ endpoints: etcd.endpoints, prefix: first.prefix, sweepInterval: 20 });
    stores.push(second);
    const from = await first.revision();
    const watcher = follow(first, from);
    const expiresAt = Date.now() + 100;
    for (let i = 0; i < 50; i++) await first.put('k', `r${String(i).padStart(2, '0')}`, i, { expiresAt });
    await first.put('k', 'kept', 1);
    await waitFor(() => watcher.changes.filter((c) => !('value' in c)).length === 50, 'fifty deletions');
    await new Promise((resolve) => setTimeout(resolve, 100));
    const deletions = watcher.changes.filter((c) => !('value' in c));
    assert.equal(new Set(deletions.map((c) => c.id)).size, 50, 'each record deleted once');
    assert.equal(deletions.length, 50);
    assert.deepEqual((await first.list('k')).map((r) => r.id), ['kept']);
    assert.deepEqual(await rawKeys(etcd.endpoints[0]!, `${first.prefix}!`), [], 'the index is empty');
    watcher.stop();
  });

  it('a watch is one long etcd watch stream, whatever the request deadline', async () => {
    const watchStreams = async () => {
      const text = await (await request(`${etcd.endpoints[0]}/metrics`)).body.text();
      return Number(/^grpc_server_started_total\{grpc_method="Watch",grpc_service="etcdserverpb\.Watch"[^}]*\} (\d+)$/m.exec(text)?.[1]);
    };
    const store = await open({ requestTimeout: 150 });
    const before = await watchStreams();
    const watcher = follow(store, await store.revision());
    await new Promise((resolve) => setTimeout(resolve, 800));
    await store.put('k', 'a', 1);
    await waitFor(() => watcher.changes.length === 1, 'the change');
    assert.equal((await watchStreams()) - before, 1, 'one stream, not one per deadline');
    watcher.stop();
  });

  it('attaches an expiring record and its index key to a lease, so etcd deletes them itself with no store left to sweep', { timeout: 30_000 }, async () => {
    const endpoint = etcd.endpoints[0]!;
    const store = await open();
    const expiresAt = Date.now() + 2000;
    await store.put('handoff', 'gone', 1, { expiresAt });
    await store.put('handoff', 'kept', 1, { expiresAt });
    await store.transact([{ op: 'put', kind: 'handoff', id: 'tx', value: 1, options: { expiresAt } }]);
    await store.put('handoff', 'kept', 2); // without expiresAt: detached from the lease, permanent again
    const before = new Map(await rawLeases(endpoint, store.prefix));
    const lease = before.get(`${store.prefix}handoff/gone`)!;
    assert.match(lease, /^[1-9]\d*$/, 'the record has a lease');
    assert.deepEqual([...before], [
      [`${store.prefix}!x/${String(expiresAt).padStart(16, '0')}/handoff/gone`, lease],
      [`${store.prefix}!x/${String(expiresAt).padStart(16, '0')}/handoff/tx`, lease],
      [`${store.prefix}handoff/gone`, lease],
      [`${store.prefix}handoff/kept`, ''],
      [`${store.prefix}handoff/tx`, lease],
    ], 'record and index key share one lease; the record put again without expiresAt has none');
    // no store is left to sweep (none runs on this prefix; every store of this suite is closed)
    for (const s of stores) await s.close().catch(() => undefined);
    const started = Date.now();
    await waitFor(async () => (await rawLeases(endpoint, store.prefix)).length === 1, 'etcd to delete the leased keys', 10_000);
    assert.ok(Date.now() - expiresAt < 5000, `deleted ${Date.now() - expiresAt} ms after expiresAt`);
    assert.ok(Date.now() - started >= 1000, 'not before expiry');
    assert.deepEqual(await rawLeases(endpoint, store.prefix), [[`${store.prefix}handoff/kept`, '']], 'the detached record stays after the lease ended');
    const reader = await open({ prefix: store.prefix });
    assert.equal((await reader.get('handoff', 'kept'))?.value, 2);
    assert.equal(await reader.get('handoff', 'gone'), undefined);
  });

  it('grants one lease per bucket of expiry time, shared by many records, and grants anew when etcd lost it', async () => {
    const endpoint = etcd.endpoints[0]!;
    const store = await open({ sweepInterval: 0 });
    const granted = await leasesGranted(endpoint);
    const base = Date.now() + 60_000;
    await Promise.all(Array.from({ length: 100 }, (_, i) => store.put('presence', `p${i}`, i, { expiresAt: base + i * 10 })));
    const leases = new Set((await rawLeases(endpoint, store.prefix)).map(([, lease]) => lease));
    const grants = (await leasesGranted(endpoint)) - granted;
    assert.ok(grants >= 1 && grants <= 2, `${grants} lease grants for 100 puts`);
    assert.ok(leases.size <= 2 && !leases.has(''), `${leases.size} leases`);
    // revoked behind the store's back: its records go, and the next put grants another lease instead of failing
    for (const id of leases) await request(`${endpoint}/v3/lease/revoke`, { method: 'POST', body: JSON.stringify({ ID: id }) }).then((r) => r.body.text());
    assert.deepEqual(await rawLeases(endpoint, store.prefix), []);
    const again = await store.put('presence', 'p0', 'again', { expiresAt: base });
    assert.equal((await store.get('presence', 'p0'))?.revision, again.revision);
    const [[, lease]] = (await rawLeases(endpoint, `${store.prefix}presence/`)) as [[string, string]];
    assert.ok(lease !== '' && !leases.has(lease), 'a new lease');
  });

  it('a put whose lease cannot be granted fails with ERR_STORE_UNAVAILABLE and changes nothing', async () => {
    const store = await open({ sweepInterval: 0 });
    // an endpoint that refuses connections: the grant (the first call of the put) fails at once
    const refused = await openEtcdStore({ endpoints: ['http://127.0.0.1:9'], prefix: store.prefix, requestTimeout: 1000 });
    stores.push(refused);
    const err = await rejectsWith(refused.put('k', 'a', 1, { expiresAt: Date.now() + 60_000 }), 'ERR_STORE_UNAVAILABLE');
    assert.match(err.message, /lease/);
    assert.equal(await store.get('k', 'a'), undefined);
  });

  it('kinds() skips over every record of a kind', async () => {
    const store = await open();
    for (const kind of ['b', 'a-b', 'a', 'a.c', 'Z', '_u']) for (const id of ['1', '2', 'z/y']) await store.put(kind, id, id);
    assert.deepEqual(await store.kinds(), ['Z', '_u', 'a', 'a-b', 'a.c', 'b']);
  });
});

describe('etcd store: a three-member cluster', () => {
  const dir = tempDir('gatehouse-etcd3-');
  let cluster: EtcdCluster;
  before(async () => {
    cluster = await startEtcd({ dir: dir.dir, members: 3 });
  });
  after(async () => {
    await cluster?.close();
    dir.cleanup();
  });

  it('goes on working, watch included, when the member it talks to is killed', { timeout: 60_000 }, async () => {
    // the default deadline: an election after losing the leader can take a second round (a split vote): the 3 s deadline this test had was too short once here
    const store = await openEtcdStore({ endpoints: cluster.endpoints, prefix: '/ha/', retryDelay: 200 });
    try {
      const watcher = follow(store, await store.revision());
      const first = await store.put('k', 'before', 1);
      await waitFor(() => watcher.changes.length === 1, 'the first change');
      await cluster.members[0]!.kill(); // the first endpoint: where calls and the watch went
      const written: number[] = [first.revision];
      for (let i = 0; i < 5; i++) written.push((await store.put('k', `after${i}`, i)).revision);
      assert.equal((await store.get('k', 'after4'))?.value, 4);
      assert.equal((await store.list('k')).length, 6);
      assert.equal(await store.healthy(), true);
      await waitFor(() => watcher.changes.length === 6, 'every change, through another member');
      assert.deepEqual(watcher.changes.map((c) => c.revision), written, 'each change once, in order');
      assert.deepEqual(watcher.resyncs, []);
      watcher.stop();
    } finally {
      await store.close();
      if (!cluster.members[0]!.running) await cluster.members[0]!.start();
    }
  });

  it('without a quorum, calls reject by their deadline and healthy() is false; with it back, all goes on', { timeout: 60_000 }, async () => {
    const store = await openEtcdStore({ endpoints: cluster.endpoints, prefix: '/quorum/', requestTimeout: 1500, retryDelay: 200 });
    try {
      const watcher = follow(store, await store.revision());
      await store.put('k', 'a', 1);
      await waitFor(() => watcher.changes.length === 1, 'the first change');
      await cluster.members[1]!.kill();
      await cluster.members[2]!.kill();
      const started = Date.now();
      await rejectsWith(store.get('k', 'a'), 'ERR_STORE_UNAVAILABLE');
      await rejectsWith(store.put('k', 'b', 2), 'ERR_STORE_UNAVAILABLE');
      assert.equal(await store.healthy(), false);
      // three calls, each bounded by its 1.5 s deadline; the slack is for a loaded machine, the failure guarded
      // against is a call that waits for the quorum to come back
      assert.ok(Date.now() - started < 3 * 1500 + 3000, `rejected within ${Date.now() - started} ms`);
      await Promise.all([cluster.members[1]!.start({ wait: false }), cluster.members[2]!.start({ wait: false })]);
      await waitFor(() => store.healthy(), 'the quorum to be back', 20_000);
      const c = await store.put('k', 'c', 3);
      await waitFor(() => watcher.changes.some((x) => x.id === 'c'), 'the watch to go on');
      assert.equal(watcher.changes.at(-1)!.revision, c.revision);
      assert.deepEqual(watcher.resyncs, []);
      // the put that was refused may or may not have been applied: either way, each change came once, in order
      const revisions = watcher.changes.map((x) => x.revision);
      assert.deepEqual(revisions, [...new Set(revisions)].sort((x, y) => x - y));
      watcher.stop();
    } finally {
      await store.close();
    }
  });

  it('writes made while the leader is killed all go through, each once, with no conflict and no 503', { timeout: 60_000 }, async () => {
    const store = await openEtcdStore({ endpoints: cluster.endpoints, prefix: '/election/', requestTimeout: 5000 });
    try {
      const watcher = follow(store, await store.revision());
      const leader = await cluster.leader();
      assert.ok(leader, 'a leader to kill');
      const failures: string[] = [];
      const written: string[] = [];
      let writing = true;
      // login states: created only when absent, with a lease, as sign-in writes them
      const writers = Array.from({ length: 4 }, async (_, w) => {
        for (let n = 0; writing; n++) {
          const id = `w${w}-${n}`;
          try {
            await store.put('login', id, { w, n }, { ifRevision: 0, expiresAt: Date.now() + 600_000 });
            written.push(id);
          } catch (err) {
            failures.push(`${id}: ${(err as Error).message}`);
          }
          await new Promise((r) => setTimeout(r, 20));
        }
      });
      try {
        await waitFor(() => written.length >= 8, 'writes before the kill');
        const killed = written.length;
        await leader.kill();
        await waitFor(() => written.length >= killed + 20, 'writes after the kill', 20_000);
      } finally {
        writing = false;
        await Promise.all(writers);
      }
      assert.deepEqual(failures, []);
      const stored = await store.list('login');
      assert.deepEqual(stored.map((r) => r.id).sort(), [...written].sort());
      for (const r of stored) assert.equal(`w${(r.value as { w: number }).w}-${(r.value as { n: number }).n}`, r.id);
      await waitFor(() => watcher.changes.length === written.length, 'every creation watched');
      assert.equal(new Set(watcher.changes.map((c) => c.id)).size, written.length, 'each creation once');
      watcher.stop();
    } finally {
      await store.close();
      for (const m of cluster.members) if (!m.running) await m.start();
    }
  });
});

describe('etcd store: a write whose answer is lost', () => {
  const dir = tempDir('gatehouse-etcd-lost-');
  let server: EtcdCluster;
  let proxy: Server;
  /** What the proxy does with the next transaction that puts something: answer it, apply it and lose the answer, or hold it unsent. */
  let next: 'pass' | 'lose-answer' | 'hold' = 'pass';
  /** Hold every request from the next transaction that puts something on (etcd gone silent). */
  let silent: 'no' | 'armed' | 'yes' = 'no';
  const held: IncomingMessage[] = [];
  before(async () => {
    server = await startEtcd({ dir: dir.dir });
    const upstream = new URL(server.endpoints[0]!);
    proxy = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        if (silent === 'armed' && req.url === '/v3/kv/txn' && body.includes('request_put')) silent = 'yes';
        if (silent === 'yes') return void held.push(req);
        const mode = req.url === '/v3/kv/txn' && body.includes('request_put') ? next : 'pass';
        if (mode !== 'pass') next = 'pass';
        if (mode === 'hold') return void held.push(req);
        const out = httpRequest({ host: upstream.hostname, port: upstream.port, path: req.url, method: req.method, headers: req.headers }, (answer) => {
          if (mode === 'lose-answer') return void (answer.resume(), req.socket.destroy());
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        });
        out.on('error', () => res.destroy());
        out.end(body);
      });
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  });
  after(async () => {
    proxy?.closeAllConnections();
    await new Promise((resolve) => proxy?.close(resolve));
    await server?.close();
    dir.cleanup();
  });

  it('a write whose answer is lost and whose outcome cannot be read back fails saying it may or may not have been applied', { timeout: 30_000 }, async () => {
    const endpoint = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
    const store = await openEtcdStore({ endpoints: [endpoint], prefix: '/lost-silent/', requestTimeout: 3000 });
    try {
      silent = 'armed';
      const err = await rejectsWith(store.put('login', 'state2', { nonce: 'n2' }, { ifRevision: 0 }), 'ERR_STORE_UNAVAILABLE');
      assert.equal(silent, 'yes', 'the proxy held the transaction');
      assert.equal((err as StoreUnavailableError).outcome, 'unknown');
      assert.match(err.message, /may or may not have been applied/);
    } finally {
      silent = 'no';
      await store.close();
    }
  });

  for (const mode of ['lose-answer', 'hold'] as const) {
    const what = mode === 'lose-answer' ? 'applied, its answer lost' : 'held by a member that never answers';
    it(`a create-if-absent ${what} is written once and reported written, not as a conflict or an outage`, { timeout: 30_000 }, async () => {
      const endpoint = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
      const store = await openEtcdStore({ endpoints: [endpoint], prefix: `/lost-${mode}/`, requestTimeout: 4000 });
      try {
        next = mode;
        const started = Date.now();
        const put = await store.put('login', 'state1', { nonce: 'n1' }, { ifRevision: 0, expiresAt: Date.now() + 60_000 });
        assert.equal(next, 'pass', 'the proxy saw the transaction');
        assert.ok(Date.now() - started < 4000, 'within the deadline');
        const got = await store.get('login', 'state1');
        assert.deepEqual(got?.value, { nonce: 'n1' });
        assert.equal(got?.revision, put.revision);
        const raw = await request(`${server.endpoints[0]}/v3/kv/range`, { method: 'POST', body: JSON.stringify({ key: Buffer.from(`/lost-${mode}/login/state1`).toString('base64') }) });
        const kvs = ((await raw.body.json()) as { kvs?: Array<{ version?: string }> }).kvs ?? [];
        assert.equal(kvs[0]?.version, '1', 'written once');
      } finally {
        await store.close();
      }
    });
  }
});

describe('etcd store: outages', () => {
  const dir = tempDir('gatehouse-etcd-down-');
  let server: EtcdCluster;
  before(async () => {
    server = await startEtcd({ dir: dir.dir });
  });
  after(async () => {
    await server?.close();
    dir.cleanup();
  });

  it('rejects reads and writes with ERR_STORE_UNAVAILABLE at once while etcd is down, and its watch catches up when it is back', { timeout: 60_000 }, async () => {
    const options = { endpoints: server.endpoints, prefix: '/down/', requestTimeout: 2000, retryDelay: 300 };
    const store = await openEtcdStore(options);
    const writer = await openEtcdStore(options);
    try {
      const watcher = follow(store, await store.revision());
      const a = await store.put('k', 'a', 1);
      await waitFor(() => watcher.changes.length === 1, 'the first change');

      await server.members[0]!.stop();
      const started = Date.now();
      for (const call of [() => store.get('k', 'a'), () => store.list('k'), () => store.revision(), () => store.kinds(), () => store.sweep()]) {
        await rejectsWith(call(), 'ERR_STORE_UNAVAILABLE');
      }
      const refused = await rejectsWith(store.put('k', 'b', 2), 'ERR_STORE_UNAVAILABLE');
      assert.match(refused.message, /could not write k\/b/);
      await rejectsWith(store.transact([{ op: 'delete', kind: 'k', id: 'a' }]), 'ERR_STORE_UNAVAILABLE');
      assert.equal(await store.healthy(), false);
      assert.ok(Date.now() - started < 2000, `rejected within ${Date.now() - started} ms`);

      await server.members[0]!.start();
      // written by another connection while the watch is still waiting to watch again: it must arrive all the same
      const b = await writer.put('k', 'b', 2);
      const gone = await writer.transact([{ op: 'delete', kind: 'k', id: 'a' }]).then(() => writer.revision());
      assert.equal(await store.healthy(), true);
      await waitFor(() => watcher.changes.length === 3, 'the changes made while the watch was away');
      assert.deepEqual(watcher.changes.map((c) => [c.id, c.revision, 'value' in c]), [
        ['a', a.revision, true],
        ['b', b.revision, true],
        ['a', gone, false],
      ]);
      assert.deepEqual(watcher.resyncs, []);
      watcher.stop();
    } finally {
      await store.close();
      await writer.close();
    }
  });

  it('a watch whose changes were compacted while etcd was away is told to resync', { timeout: 60_000 }, async () => {
    const store = await openEtcdStore({ endpoints: server.endpoints, prefix: '/quiet/', retryDelay: 200 });
    const other = await openEtcdStore({ endpoints: server.endpoints, prefix: '/busy/' });
    try {
      const mine = await store.put('k', 'a', 1);
      const watcher = follow(store, mine.revision);
      await other.put('k', 'x', 1); // not under the watched prefix: the watch stays at `mine`
      await other.put('k', 'x', 2);
      await other.compact();
      await server.members[0]!.stop();
      await server.members[0]!.start();
      await waitFor(() => watcher.resyncs.length === 1, 'a resync');
      assert.deepEqual(watcher.resyncs, [{ fromRevision: mine.revision, reason: 'compacted' }]);
      assert.deepEqual(watcher.changes, []);
    } finally {
      await store.close();
      await other.close();
    }
  });

  it('a watch that finds etcd replaced by one at a lower revision is told to resync', { timeout: 60_000 }, async () => {
    const replaced = tempDir('gatehouse-etcd-new-');
    const first = await startEtcd({ dir: replaced.dir });
    const store = await openEtcdStore({ endpoints: first.endpoints, prefix: '/r/', retryDelay: 200 });
    try {
      for (let i = 0; i < 20; i++) await store.put('k', `r${i}`, i);
      const at = await store.revision();
      const watcher = follow(store, at);
      await new Promise((resolve) => setTimeout(resolve, 100));
      // the same address, an empty data folder: as after restoring an older snapshot
      await first.members[0]!.kill();
      rmSync(first.members[0]!.dataDir, { recursive: true, force: true });
      await first.members[0]!.start();
      await waitFor(() => watcher.resyncs.length === 1, 'a resync');
      assert.deepEqual(watcher.resyncs, [{ fromRevision: at, reason: 'ahead' }]);
    } finally {
      await store.close();
      await first.close();
      replaced.cleanup();
    }
  });
});

describe('etcd store: TLS with client certificates', () => {
  const dir = tempDir('gatehouse-etcd-tls-');
  let ca: TestCa;
  let secure: EtcdCluster;
  before(async () => {
    ca = new TestCa(dir.dir);
    secure = await startEtcd({ dir: dir.dir, ca });
  });
  after(async () => {
    await secure?.close();
    dir.cleanup();
  });

  it('works with the configured CA, certificate and key (relative to the config folder), and fails clearly without them', { timeout: 30_000 }, async () => {
    assert.match(secure.endpoints[0]!, /^https:/);
    const { ca: caFile, cert, key } = secure.client!;
    const relative = (file: string) => file.slice(dir.dir.length + 1);
    const store = await openStore({ etcd: { endpoints: secure.endpoints, prefix: '/tls/', tls: { ca: relative(caFile), cert: relative(cert), key: relative(key) } } }, dir.dir);
    try {
      const watcher = follow(store as EtcdStore, await store.revision());
      const put = await store.put('k', 'a', { secret: 'sealed' });
      assert.deepEqual(await store.get('k', 'a'), put);
      await waitFor(() => watcher.changes.length === 1, 'the change');
      assert.equal(await store.healthy(), true);
      watcher.stop();
    } finally {
      await store.close();
    }

    const noCert = await openEtcdStore({ endpoints: secure.endpoints, tls: { ca: caFile }, requestTimeout: 2000 });
    const untrusted = await openEtcdStore({ endpoints: secure.endpoints, tls: { cert, key }, requestTimeout: 2000 });
    try {
      await rejectsWith(noCert.get('k', 'a'), 'ERR_STORE_UNAVAILABLE');
      assert.equal(await noCert.healthy(), false);
      const err = await rejectsWith(untrusted.put('k', 'b', 1), 'ERR_STORE_UNAVAILABLE');
      assert.match(err.message, /certificate/i);
    } finally {
      await noCert.close();
      await untrusted.close();
    }
    // and plain HTTP is not answered at all
    const agent = new Agent();
    await assert.rejects(request(secure.endpoints[0]!.replace('https:', 'http:') + '/health', { dispatcher: agent, signal: AbortSignal.timeout(2000) }).then((r) => r.body.text()));
    await agent.close();
  });
});
