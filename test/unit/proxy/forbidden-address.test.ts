import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isForbiddenAddress } from '../../../src/proxy/index.ts';

describe('isForbiddenAddress', () => {
  it('forbids IPv4 loopback, unspecified and link-local', () => {
    for (const a of ['127.0.0.1', '127.0.0.53', '127.255.255.254', '0.0.0.0', '0.1.2.3', '169.254.0.1', '169.254.169.254']) {
      assert.equal(isForbiddenAddress(a), true, a);
    }
  });

  it('forbids IPv6 loopback, unspecified and link-local (fe80::/10) in any notation', () => {
    for (const a of ['::1', '0::1', '0:0::1', '0:0:0:0:0:0:0:1', '0000:0000:0000:0000:0000:0000:0000:0001', '::', '::0', '0:0:0:0:0:0:0:0',
      'fe80::1', 'FE80::1', 'fe80::1%eth0', 'fe9a::1', 'febf:ffff::1']) {
      assert.equal(isForbiddenAddress(a), true, a);
    }
  });

  it('forbids IPv4-mapped loopback and link-local in dotted and hex forms', () => {
    for (const a of ['::ffff:127.0.0.1', '::FFFF:127.0.0.1', '0:0:0:0:0:ffff:127.0.0.1', '::ffff:7f00:1', '::ffff:7f00:0001', '0:0:0:0:0:ffff:7f00:1',
      '::ffff:0.0.0.0', '::ffff:0:0', '::ffff:169.254.169.254', '::ffff:a9fe:a9fe']) {
      assert.equal(isForbiddenAddress(a), true, a);
    }
  });

  it('allows private and public addresses', () => {
    for (const a of ['10.0.0.1', '10.255.255.255', '172.16.0.1', '192.168.1.1', '8.8.8.8', '1.1.1.1', '126.255.255.255', '128.0.0.1', '169.253.0.1',
      '169.255.0.1', '2001:db8::1', '2606:4700::1111', 'fd00::1', 'fec0::1', 'fe7f::1', '::2', '::ffff:10.0.0.1', '::ffff:a00:1', '::ffff:808:808']) {
      assert.equal(isForbiddenAddress(a), false, a);
    }
  });

  it('forbids anything that is not an IP address (it cannot be checked)', () => {
    for (const a of ['', 'localhost', '127.1', '2130706433', '0x7f000001', 'not-an-ip']) assert.equal(isForbiddenAddress(a), true, a);
  });
});
