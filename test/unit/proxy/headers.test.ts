import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { clientResponseHeaders, upstreamRequestHeaders } from '../../../src/proxy/index.ts';

const base = { hostHeader: 'app.internal:8080', clientIp: '203.0.113.7', publicHost: 'app.corp.test:8443', requestId: 'req-1', trusted: false };

/** Every value of header `name` (any case), in order. */
function values(raw: readonly string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.toLowerCase() === name) out.push(raw[i + 1]!);
  return out;
}

function names(raw: readonly string[]): string[] {
  return raw.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
}

const spoofing = [
  'X-Forwarded-For', '198.51.100.1',
  'x-forwarded-for', '198.51.100.2',
  'X-Forwarded-Proto', 'http',
  'X-Forwarded-Host', 'evil.test',
  'X-Forwarded-Port', '80',
  'Forwarded', 'for=198.51.100.1;proto=http',
  'X-Real-IP', '198.51.100.1',
  'X-Request-Id', 'client-chosen',
];

describe('upstreamRequestHeaders', () => {
  it('sets Host first and exactly once, whatever the client sent', () => {
    const out = upstreamRequestHeaders(['Host', 'app.corp.test:8443', 'host', 'evil.test', 'Accept', '*/*'], base);
    assert.deepEqual(out.slice(0, 2), ['Host', 'app.internal:8080']);
    assert.deepEqual(values(out, 'host'), ['app.internal:8080']);
    assert.deepEqual(values(out, 'accept'), ['*/*']);
  });

  it('removes hop-by-hop headers and the headers the Connection header names', () => {
    const out = upstreamRequestHeaders(
      [
        'Host', 'x',
        'Connection', 'keep-alive, X-Secret-Hop',
        'connection', 'Another-Hop',
        'Keep-Alive', 'timeout=5',
        'Proxy-Connection', 'keep-alive',
        'Proxy-Authorization', 'Basic Zm9vOmJhcg==',
        'TE', 'trailers',
        'Trailer', 'X-Checksum',
        'Transfer-Encoding', 'chunked',
        'Upgrade', 'h2c',
        'HTTP2-Settings', 'AAMAAABkAAQCAAAAAAIAAAAA',
        'X-Secret-Hop', '1',
        'another-hop', '2',
        'Authorization', 'Bearer t',
        'Cookie', 'a=1',
      ],
      base,
    );
    const sent = names(out);
    for (const gone of ['connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade',
      'http2-settings', 'x-secret-hop', 'another-hop']) {
      assert.ok(!sent.includes(gone), `${gone} must not be sent upstream`);
    }
    assert.deepEqual(values(out, 'authorization'), ['Bearer t']);
    assert.deepEqual(values(out, 'cookie'), ['a=1']);
  });

  it('never lets the Connection header strip the message framing or the Host', () => {
    const out = upstreamRequestHeaders(['Host', 'x', 'Connection', 'Content-Length, Host', 'Content-Length', '5'], base);
    assert.deepEqual(values(out, 'content-length'), ['5']);
    assert.deepEqual(values(out, 'host'), ['app.internal:8080']);
  });

  it('strips every client-sent X-Gatehouse-* header, in any case', () => {
    const out = upstreamRequestHeaders(
      ['Host', 'x', 'X-Gatehouse-User', 'root@example.com', 'x-gatehouse-roles', 'admin', 'X-GATEHOUSE-JWT-ASSERTION', 'e30.e30.', 'x-GateHouse-Device', '01',
        'X-Gatehousex', 'kept'],
      { ...base, trusted: true },
    );
    assert.deepEqual(names(out).filter((n) => n.startsWith('x-gatehouse-')), []);
    assert.deepEqual(values(out, 'x-gatehousex'), ['kept']);
  });

  it('adds Gatehouse\'s own identity headers after stripping the client\'s', () => {
    const out = upstreamRequestHeaders(['Host', 'x', 'X-Gatehouse-User', 'root@example.com'], { ...base, extra: ['X-Gatehouse-User', 'alice@example.com'] });
    assert.deepEqual(values(out, 'x-gatehouse-user'), ['alice@example.com']);
  });

  it('drops spoofable forwarding headers from an untrusted peer and sets its own', () => {
    const out = upstreamRequestHeaders(['Host', 'x', ...spoofing], base);
    assert.deepEqual(values(out, 'x-forwarded-for'), ['203.0.113.7']);
    assert.deepEqual(values(out, 'x-forwarded-proto'), ['https']);
    assert.deepEqual(values(out, 'x-forwarded-host'), ['app.corp.test:8443']);
    assert.deepEqual(values(out, 'x-request-id'), ['req-1']);
    for (const gone of ['forwarded', 'x-real-ip', 'x-forwarded-port']) assert.deepEqual(values(out, gone), [], gone);
  });

  it('keeps a trusted proxy\'s forwarding headers and appends the peer to X-Forwarded-For', () => {
    const out = upstreamRequestHeaders(['Host', 'x', ...spoofing], { ...base, trusted: true });
    assert.deepEqual(values(out, 'x-forwarded-for'), ['198.51.100.1, 198.51.100.2, 203.0.113.7']);
    assert.deepEqual(values(out, 'x-forwarded-proto'), ['http']);
    assert.deepEqual(values(out, 'x-forwarded-host'), ['evil.test']);
    assert.deepEqual(values(out, 'x-forwarded-port'), ['80']);
    assert.deepEqual(values(out, 'forwarded'), ['for=198.51.100.1;proto=http']);
    assert.deepEqual(values(out, 'x-real-ip'), ['198.51.100.1']);
    // the request id is always Gatehouse's own
    assert.deepEqual(values(out, 'x-request-id'), ['req-1']);
  });

  it('sends Connection: Upgrade and the Upgrade header only for an upgrade', () => {
    const out = upstreamRequestHeaders(['Host', 'x', 'Connection', 'Upgrade', 'Upgrade', 'websocket', 'Sec-WebSocket-Key', 'k'], { ...base, upgrade: 'websocket' });
    assert.deepEqual(values(out, 'connection'), ['Upgrade']);
    assert.deepEqual(values(out, 'upgrade'), ['websocket']);
    assert.deepEqual(values(out, 'sec-websocket-key'), ['k']);
  });
});

describe('clientResponseHeaders', () => {
  it('drops hop-by-hop headers, a forged x-gatehouse-error and the upstream\'s request id', () => {
    const out = clientResponseHeaders(
      ['Content-Type', 'text/plain', 'Connection', 'close, X-Hop', 'X-Hop', '1', 'Keep-Alive', 'timeout=5', 'Transfer-Encoding', 'chunked',
        'X-Gatehouse-Error', 'ERR_POLICY_DENIED', 'x-request-id', 'upstream-id', 'Set-Cookie', 'a=1', 'Set-Cookie', 'b=2'],
      'req-1',
    );
    assert.deepEqual(out, ['Content-Type', 'text/plain', 'Set-Cookie', 'a=1', 'Set-Cookie', 'b=2', 'x-request-id', 'req-1']);
  });
});
