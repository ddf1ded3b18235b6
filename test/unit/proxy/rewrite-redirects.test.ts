import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { rewriteResponseHeaders, rewriteUrl } from '../../../src/proxy/index.ts';

const origin = 'https://app.corp.test:8443';
/** what an upstream http://10.0.0.3:3000 with aliases grafana and grafana.internal is called (RouteTable's upstreamNames) */
const names: ReadonlySet<string> = new Set(['10.0.0.3:3000', 'grafana', 'grafana.internal']);
/** an upstream on a default port: http://app.internal */
const defaultPortNames: ReadonlySet<string> = new Set(['app.internal', 'app.internal:80']);

describe('rewriteUrl', () => {
  it('maps an absolute URL naming the upstream to the public origin, path and query kept', () => {
    assert.equal(rewriteUrl('http://10.0.0.3:3000/login?next=/x#top', names, origin), `${origin}/login?next=/x#top`);
    assert.equal(rewriteUrl('HTTP://10.0.0.3:3000/A', names, origin), `${origin}/A`);
    assert.equal(rewriteUrl('http://10.0.0.3:3000', names, origin), `${origin}/`);
    assert.equal(rewriteUrl('http://10.0.0.3:3000?x=1', names, origin), `${origin}?x=1`);
    assert.equal(rewriteUrl('  http://10.0.0.3:3000/x ', names, origin), `${origin}/x`);
  });

  it('maps a URL naming an alias, in any case', () => {
    assert.equal(rewriteUrl('http://grafana/d/1', names, origin), `${origin}/d/1`);
    assert.equal(rewriteUrl('https://GRAFANA.internal/d/1', names, origin), `${origin}/d/1`);
  });

  it('maps a protocol-relative URL', () => {
    assert.equal(rewriteUrl('//10.0.0.3:3000/x', names, origin), `${origin}/x`);
    assert.equal(rewriteUrl('//grafana/x', names, origin), `${origin}/x`);
  });

  it('leaves relative URLs and other hosts alone', () => {
    for (const url of ['/x', 'x/y', '?q=1', '#f', 'http://10.0.0.3:3001/x', 'http://10.0.0.30:3000/x', 'https://evil.test/', '//evil.test/x',
      'http://grafana.evil.test/', 'http://evil.test/http://grafana/', 'mailto:grafana', 'ftp://grafana/x', 'http://10.0.0.3/x']) {
      assert.equal(rewriteUrl(url, names, origin), undefined, url);
    }
  });

  it('treats an explicit default port like no port', () => {
    assert.equal(rewriteUrl('http://app.internal/x', defaultPortNames, origin), `${origin}/x`);
    assert.equal(rewriteUrl('http://app.internal:80/x', defaultPortNames, origin), `${origin}/x`);
    assert.equal(rewriteUrl('http://app.internal:8080/x', defaultPortNames, origin), undefined);
    // an alias is a bare host name: its default-port forms are the same place
    assert.equal(rewriteUrl('http://grafana:80/x', names, origin), `${origin}/x`);
    assert.equal(rewriteUrl('https://grafana:443/x', names, origin), `${origin}/x`);
    assert.equal(rewriteUrl('http://grafana:8080/x', names, origin), undefined);
  });

  it('drops user information naming the upstream', () => {
    assert.equal(rewriteUrl('http://user:pw@10.0.0.3:3000/x', names, origin), `${origin}/x`);
  });
});

/** The raw headers after rewriting. */
function rewritten(raw: string[]): string[] {
  const copy = [...raw];
  rewriteResponseHeaders(copy, names, 'app.corp.test:8443');
  return copy;
}

describe('rewriteResponseHeaders', () => {
  it('rewrites Location and Content-Location in any header case', () => {
    assert.deepEqual(
      rewritten(['Location', 'http://10.0.0.3:3000/a', 'content-location', 'http://grafana/b', 'X-Other', 'http://10.0.0.3:3000/c']),
      ['Location', `${origin}/a`, 'content-location', `${origin}/b`, 'X-Other', 'http://10.0.0.3:3000/c'],
    );
  });

  it('leaves a Location for another host alone', () => {
    assert.deepEqual(rewritten(['location', 'https://idp.example.com/auth?redirect_uri=http://grafana/']), [
      'location',
      'https://idp.example.com/auth?redirect_uri=http://grafana/',
    ]);
  });

  it('rewrites the URL of a Refresh header, keeping its quotes and spacing', () => {
    const cases: [string, string][] = [
      ['0; url=http://10.0.0.3:3000/r', `0; url=${origin}/r`],
      ['5;URL=http://grafana/r', `5;URL=${origin}/r`],
      ["0; url='http://grafana/r'", `0; url='${origin}/r'`],
      ['0 ; url = "http://grafana.internal/r?x=1"', `0 ; url = "${origin}/r?x=1"`],
      ['1.5, url=//grafana/r', `1.5, url=${origin}/r`],
    ];
    for (const [from, to] of cases) assert.deepEqual(rewritten(['Refresh', from]), ['Refresh', to], from);
    for (const untouched of ['5', '0; url=/relative', '0; url=https://evil.test/']) {
      assert.deepEqual(rewritten(['refresh', untouched]), ['refresh', untouched], untouched);
    }
  });

  it('maps a Set-Cookie Domain naming the upstream to the public host (no port), with or without a leading dot, in any case', () => {
    assert.deepEqual(
      rewritten([
        'Set-Cookie', 'a=1; Domain=grafana.internal; Path=/',
        'set-cookie', 'b=2; path=/; domain=.GRAFANA.Internal; HttpOnly',
        'Set-Cookie', 'c=3; DOMAIN = 10.0.0.3; Secure',
      ]),
      [
        'Set-Cookie', 'a=1; Domain=app.corp.test; Path=/',
        'set-cookie', 'b=2; path=/; domain=app.corp.test; HttpOnly',
        'Set-Cookie', 'c=3; DOMAIN = app.corp.test; Secure',
      ],
    );
  });

  it('leaves cookies for other domains and cookies without Domain alone', () => {
    const raw = [
      'Set-Cookie', 'a=1; Domain=other.example; Path=/',
      'Set-Cookie', 'b=2; Domain=.internal; Path=/',
      'Set-Cookie', 'c=3; Path=/; HttpOnly',
      'Set-Cookie', 'domain=grafana; Path=/',
    ];
    assert.deepEqual(rewritten(raw), raw);
  });
});
