import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { configSchema } from '../../../src/config/index.ts';
import { parseHost, RouteTable } from '../../../src/proxy/index.ts';

type RouteInput = Record<string, unknown> & { name: string; host: string };

/** A route table compiled from route entries as they would appear in the file (schema defaults applied). */
function table(...routes: RouteInput[]): RouteTable {
  const config = configSchema.parse({ server: { authHost: 'gate.test' }, routes: routes.map((r) => ({ auth: 'public', ...r })) });
  return new RouteTable(config.routes);
}

function winner(t: RouteTable, host: string): string | undefined {
  return t.match(host)?.route.name;
}

describe('RouteTable', () => {
  it('prefers an exact host over any pattern, whatever the order in the file', () => {
    const t = table(
      { name: 'wild', host: '*.corp.test', to: 'http://10.0.0.1' },
      { name: 'exact', host: 'app.corp.test', to: 'http://10.0.0.2' },
    );
    assert.equal(winner(t, 'app.corp.test'), 'exact');
    assert.equal(t.match('app.corp.test')!.target!.hostname, '10.0.0.2');
    assert.equal(winner(t, 'other.corp.test'), 'wild');
  });

  it('picks the most specific pattern, whatever the order in the file', () => {
    const t = table(
      { name: 'any', host: '*.corp.test', to: 'http://10.0.0.1' },
      { name: 'apps', host: 'app-*.corp.test', to: 'http://10.0.0.2' },
      { name: 'two', host: '*-*.corp.test', to: 'http://10.0.0.3' },
    );
    assert.equal(winner(t, 'app-7.corp.test'), 'apps');
    assert.equal(winner(t, 'x-7.corp.test'), 'two');
    assert.equal(winner(t, 'x.corp.test'), 'any');
  });

  it('never lets * cross a dot', () => {
    const t = table({ name: 'wild', host: '*.corp.test', to: 'http://10.0.0.1' });
    assert.equal(winner(t, 'a.corp.test'), 'wild');
    assert.equal(winner(t, 'a.b.corp.test'), undefined);
    assert.equal(winner(t, '.corp.test'), undefined);
    assert.equal(winner(t, 'corp.test'), undefined);
    assert.equal(winner(t, 'a_b.corp.test'), undefined);
    // the dots of the pattern are literal dots
    assert.equal(winner(t, 'axcorp.test'), undefined);
    assert.equal(winner(t, 'a.corpxtest'), undefined);
  });

  it('splits *-* greedily: my-server-8081 → my-server and 8081', () => {
    const t = table({ name: 'ports', host: '*-*.corp.test', to: 'http://{1}.internal:{2}/base', upstream: { hostHeader: '{1}:{2}' } });
    const m = t.match('my-server-8081.corp.test')!;
    assert.equal(m.route.name, 'ports');
    assert.equal(m.target!.hostname, 'my-server.internal');
    assert.equal(m.target!.port, 8081);
    assert.equal(m.target!.basePath, '/base');
    assert.equal(m.hostHeader, 'my-server:8081');
    assert.ok(m.upstreamNames.has('my-server.internal:8081'));
  });

  it('falls through to the next pattern when the template gives no valid upstream for this host', () => {
    const t = table(
      { name: 'ports', host: '*-*.corp.test', to: 'http://{1}:{2}' },
      { name: 'any', host: '*.corp.test', to: 'http://10.0.0.9' },
    );
    assert.equal(winner(t, 'web-8080.corp.test'), 'ports');
    assert.equal(t.match('web-8080.corp.test')!.target!.port, 8080);
    assert.equal(winner(t, 'web-admin.corp.test'), 'any', 'a non-numeric port');
    assert.equal(winner(t, 'web-99999.corp.test'), 'any', 'a port above 65535');
    assert.equal(winner(t, 'web-0.corp.test'), 'any', 'port 0');
    // asked again (the table caches per host): the same answer
    assert.equal(winner(t, 'web-admin.corp.test'), 'any');
    assert.equal(t.match('web-8080.corp.test')!.target!.port, 8080);
  });

  it('answers undefined when no pattern fits and the template fails', () => {
    const t = table({ name: 'ports', host: '*-*.corp.test', to: 'http://{1}:{2}' });
    assert.equal(t.match('web-admin.corp.test'), undefined);
  });

  it('finds a route by alias as a destination, and only there', () => {
    const t = table({ name: 'grafana', host: 'grafana.corp.test', aliases: ['grafana', 'grafana.internal'], to: 'http://10.0.0.3:3000' });
    assert.equal(t.match('grafana'), undefined, 'an alias is not a route host');
    assert.equal(t.matchAlias('grafana')!.route.name, 'grafana');
    assert.deepEqual(
      [t.matchDestination('grafana.internal')?.byAlias, t.matchDestination('grafana.corp.test')?.byAlias, t.matchDestination('nope')],
      [true, false, undefined],
    );
    const names = t.matchAlias('grafana')!.upstreamNames;
    for (const n of ['10.0.0.3:3000', 'grafana', 'grafana.internal']) assert.ok(names.has(n), n);
  });

  it('matches hosts and aliases written in upper case in the file, for a client that writes any case', () => {
    const t = table(
      { name: 'exact', host: 'App.Corp.TEST', aliases: ['Legacy-App'], to: 'http://10.0.0.2' },
      { name: 'wild', host: '*.Wild.Test', to: 'http://{1}.internal' },
    );
    const host = (value: string) => parseHost(value)!.host;
    assert.equal(winner(t, host('APP.corp.test:8443')), 'exact');
    assert.equal(winner(t, host('app.corp.test.')), 'exact', 'a trailing dot');
    assert.equal(t.matchDestination(host('LEGACY-APP'))?.match.route.name, 'exact');
    const m = t.match(host('Web.WILD.test'))!;
    assert.equal(m.route.name, 'wild');
    assert.equal(m.target!.hostname, 'web.internal');
  });

  it('derives the default Host header and names used for redirect rewriting from the upstream URL', () => {
    const t = table(
      { name: 'a', host: 'a.corp.test', to: 'http://app.internal' },
      { name: 'b', host: 'b.corp.test', to: 'https://app.internal:8443/sub/' },
    );
    const a = t.match('a.corp.test')!;
    assert.equal(a.target!.authority, 'app.internal');
    assert.equal(a.target!.port, 80);
    assert.ok(a.upstreamNames.has('app.internal') && a.upstreamNames.has('app.internal:80'));
    const b = t.match('b.corp.test')!;
    assert.equal(b.target!.authority, 'app.internal:8443');
    assert.equal(b.target!.basePath, '/sub');
    assert.equal(b.target!.protocol, 'https:');
  });
});

describe('parseHost', () => {
  it('lower-cases, splits the port, and refuses what is not a host', () => {
    assert.deepEqual(parseHost('App.Corp.Test:8443'), { host: 'app.corp.test', port: 8443 });
    assert.deepEqual(parseHost('[::1]:443'), { host: '[::1]', port: 443 });
    for (const bad of [undefined, '', 'a b', 'a/b', 'a@b', 'a:0', 'a:65536', 'a:', 'a:x', '-a.test', 'a..b', 'a,b']) {
      assert.equal(parseHost(bad), undefined, String(bad));
    }
  });
});
