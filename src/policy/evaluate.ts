import type { ErrorCode } from '../core/index.ts';
import type { CertificateFacts, CertificateStatus, Decision, Facts, RouteRules } from './decision.ts';

const certificateDenial: Record<Exclude<CertificateStatus, 'valid'>, { code: ErrorCode; reason: string }> = {
  missing: { code: 'ERR_CERT_MISSING', reason: 'this route needs a client certificate and none was presented' },
  untrusted: { code: 'ERR_CERT_UNTRUSTED', reason: 'the client certificate was not issued by a trusted authority' },
  expired: { code: 'ERR_CERT_EXPIRED', reason: 'the client certificate has expired' },
  'not-yet-valid': { code: 'ERR_CERT_NOT_YET_VALID', reason: 'the client certificate is not valid yet' },
  revoked: { code: 'ERR_CERT_REVOKED', reason: 'the client certificate has been revoked' },
  invalid: { code: 'ERR_CERT_INVALID', reason: 'the client certificate is not valid' },
};

function deny(code: ErrorCode, reason: string): Decision {
  return { allow: false, code, reason };
}

function formatSubjectRule(rule: Readonly<Record<string, string | readonly string[]>>): string {
  return Object.entries(rule)
    .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join('|') : v}`)
    .join(', ');
}

/** Every field named in the rule must have one of the listed values in the certificate's subject. */
export function subjectMatches(
  rule: Readonly<Record<string, string | readonly string[]>>,
  subject: Readonly<Record<string, readonly string[]>> | undefined,
): boolean {
  if (!subject) return false;
  for (const field in rule) {
    const wanted = rule[field]!;
    const have = subject[field];
    if (!have) return false;
    const ok = typeof wanted === 'string' ? have.includes(wanted) : wanted.some((w) => have.includes(w));
    if (!ok) return false;
  }
  return true;
}

function certificateRule(route: RouteRules, cert: CertificateFacts): Decision {
  const allow = route.allow;
  if (allow?.certificateSubject) {
    if (subjectMatches(allow.certificateSubject, cert.subject)) {
      return { allow: true, rule: `allow.certificateSubject ${formatSubjectRule(allow.certificateSubject)}` };
    }
  }
  if (cert.user && allow) {
    if (allow.users.includes(cert.user)) return { allow: true, rule: `allow.users ${cert.user}` };
    const domain = cert.user.slice(cert.user.lastIndexOf('@') + 1);
    if (allow.domains.includes(domain)) return { allow: true, rule: `allow.domains ${domain}` };
  }
  if (allow?.certificateSubject) {
    return deny(
      'ERR_CERT_SUBJECT_MISMATCH',
      `the certificate subject ${cert.subjectDn ?? '(empty)'} does not match ${formatSubjectRule(allow.certificateSubject)}`,
    );
  }
  return deny('ERR_POLICY_DENIED', `no rule of route ${route.name} allows this certificate`);
}

/** The decision for one request to a route (SPEC "Decision"). Deny is the default. */
export function evaluate(facts: Facts): Decision {
  const { route, certificate } = facts;
  switch (route.auth) {
    case 'public':
      return { allow: true, rule: 'auth: public' };
    case 'certificate': {
      if (certificate.status !== 'valid') {
        const d = certificateDenial[certificate.status];
        return deny(d.code, certificate.detail ? `${d.reason} (${certificate.detail})` : d.reason);
      }
      return certificateRule(route, certificate);
    }
    case 'login':
    case 'login+certificate':
      return deny('ERR_LOGIN_NOT_CONFIGURED', `route ${route.name} needs sign-in, and sign-in is not configured`);
  }
}
