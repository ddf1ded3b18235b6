// Durations, sizes and listen addresses as the config file spells them, and how bad ones are reported.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { configOf, minimal, problemsOf, yaml } from './helpers.ts';

const route = (...upstream: string[]) =>
  minimal + yaml('routes:', '  - name: a', '    host: a.example.com', '    to: http://a', '    upstream:', ...upstream.map((l) => `      ${l}`));

test('durations: compound, fractional and millisecond forms', async () => {
  const c = await configOf(route('timeouts: { connect: 250ms, send: 1h30m, read: 1.5s }'));
  assert.deepEqual(c.routes[0]!.upstream.timeouts, { connect: 250, send: 5_400_000, read: 1500 });
  const d = await configOf(minimal + yaml('identity:', '  session: { ttl: 1d, idle: 0s }'));
  assert.deepEqual(d.identity.session, { ttl: 86_400_000, idle: 0 });
});

test('durations: a bare number, a quoted number and an unknown unit are refused at their value', async () => {
  assert.deepEqual(await problemsOf(route('timeouts: { connect: 90, send: "90", read: 5x }')), [
    '8:28: routes[0].upstream.timeouts.connect: expected a duration such as 2s, got 90',
    '8:38: routes[0].upstream.timeouts.send: "90" is not a duration (use e.g. 90s, 2m, 12h, 1h30m, 250ms)',
    '8:50: routes[0].upstream.timeouts.read: "5x" is not a duration (use e.g. 90s, 2m, 12h, 1h30m, 250ms)',
  ]);
});

test('sizes: units are powers of 1024, with optional B/iB, or a number of bytes', async () => {
  const cases: [string, number][] = [
    ['10m', 10_485_760],
    ['512k', 524_288],
    ['1g', 1_073_741_824],
    ['1.5k', 1536],
    ['10MiB', 10_485_760],
    ['4096', 4096],
    ['0', 0],
  ];
  for (const [text, bytes] of cases) {
    const c = await configOf(route(`maxBodySize: ${text}`));
    assert.equal(c.routes[0]!.upstream.maxBodySize, bytes, text);
  }
});

test('sizes: negative, fractional and unknown units are refused', async () => {
  assert.deepEqual(await problemsOf(route('maxBodySize: -1')), ['8:20: routes[0].upstream.maxBodySize: must be at least 0']);
  assert.deepEqual(await problemsOf(route('maxBodySize: 1.5')), [
    '8:20: routes[0].upstream.maxBodySize: expected a size such as 512k, 10m, 1g, or a number of bytes, got 1.5',
  ]);
  assert.deepEqual(await problemsOf(route('maxBodySize: 10x')), [
    '8:20: routes[0].upstream.maxBodySize: "10x" is not a size (use e.g. 512k, 10m, 1g)',
  ]);
});

test('listen addresses: :PORT means all interfaces, IPv6 in brackets, port 0', async () => {
  const c = await configOf(
    yaml('server:', '  authHost: gate.example.com', '  https: ":8443"', '  http: "[::1]:8080"', '  metrics: 127.0.0.1:0'),
  );
  assert.deepEqual(c.server.https, { host: '0.0.0.0', port: 8443 });
  assert.deepEqual(c.server.http, { host: '::1', port: 8080 });
  assert.deepEqual(c.server.metrics, { host: '127.0.0.1', port: 0 });
});

test('listen addresses: out-of-range port, bare port, missing port are refused', async () => {
  assert.deepEqual(
    await problemsOf(
      yaml('server:', '  authHost: gate.example.com', '  https: 0.0.0.0:70000', '  http: 80', '  metrics: localhost', '  forwardProxy: "[::1]"'),
    ),
    [
      '3:10: server.https: "0.0.0.0:70000" is not a listen address (use HOST:PORT, e.g. 0.0.0.0:443)',
      '4:9: server.http: expected HOST:PORT to listen on, e.g. 0.0.0.0:443, got 80',
      '5:12: server.metrics: "localhost" is not a listen address (use HOST:PORT, e.g. 0.0.0.0:443)',
      '6:17: server.forwardProxy: "[::1]" is not a listen address (use HOST:PORT, e.g. 0.0.0.0:443)',
    ],
  );
});

test('workers: auto or a number from 1 to 64', async () => {
  assert.equal((await configOf(yaml('server:', '  authHost: gate.example.com', '  workers: 4'))).server.workers, 4);
  assert.deepEqual(await problemsOf(yaml('server:', '  authHost: gate.example.com', '  workers: many')), [
    '3:12: server.workers: expected "auto" or a number, got "many"',
  ]);
  assert.deepEqual(await problemsOf(yaml('server:', '  authHost: gate.example.com', '  workers: 100')), [
    '3:12: server.workers: must be at most 64',
  ]);
});
