import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { dnFields } from '../../../src/authn/index.ts';

function certWithSubject(subject: string): X509Certificate {
  const pem = execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', '/dev/null', '-days', '1', '-utf8', '-multivalue-rdn', '-subj', subject],
    { stdio: ['ignore', 'pipe', 'ignore'] },
  ).toString();
  return new X509Certificate(pem);
}

describe('dnFields', () => {
  it('reads escaped values and multi-valued RDNs as the certificate holds them', () => {
    const cert = certWithSubject('/CN=a+UID=u1/O=Example, Inc./OU=R&D "x"/OU=ops');
    assert.deepEqual({ ...dnFields(cert.subject) }, { CN: ['a'], UID: ['u1'], O: ['Example, Inc.'], OU: ['R&D "x"', 'ops'] });
  });

  it('keeps plus signs, semicolons and backslashes that are part of a value', () => {
    const cert = certWithSubject('/CN=a\\+b;c\\\\d/OU=x = y');
    assert.deepEqual({ ...dnFields(cert.subject) }, { CN: ['a+b;c\\d'], OU: ['x = y'] });
  });

  it('reads UTF-8 values', () => {
    const cert = certWithSubject('/CN=Zoë Ærø/O=Café');
    assert.deepEqual({ ...dnFields(cert.subject) }, { CN: ['Zoë Ærø'], O: ['Café'] });
  });
});
