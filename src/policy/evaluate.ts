import type { ErrorCode } from '../core/index.ts';
import { compiledRouteOf, formatSubjectRule, locationCovers, type CompiledRoute } from './compiled-policy.ts';
import type { Allow, CertificateFacts, CertificateStatus, Consideration, Decision, Deny, Explanation, Facts } from './decision.ts';

const certificateDenial: Record<Exclude<CertificateStatus, 'valid'>, { code: ErrorCode; reason: string }> = {
  missing: { code: 'ERR_CERT_MISSING', reason: 'this route needs a client certificate and none was presented' },
  untrusted: { code: 'ERR_CERT_UNTRUSTED', reason: 'the client certificate was not issued by a trusted authority' },
  expired: { code: 'ERR_CERT_EXPIRED', reason: 'the client certificate has expired' },
  'not-yet-valid': { code: 'ERR_CERT_NOT_YET_VALID', reason: 'the client certificate is not valid yet' },
  revoked: { code: 'ERR_CERT_REVOKED', reason: 'the client certificate has been revoked' },
  invalid: { code: 'ERR_CERT_INVALID', reason: 'the client certificate is not valid' },
};

const PUBLIC: Allow = Object.freeze({ allow: true, rule: 'auth: public' });
const ROOT_ADMIN: Allow = Object.freeze({ allow: true, rule: 'root admin' });
const NO_ADMINS: ReadonlySet<string> = new Set();
const NO_ROLES: readonly string[] = [];

type Trace = Consideration[] | undefined;

function deny(code: ErrorCode, reason: string): Deny {
  return { allow: false, code, reason };
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

function domainOf(email: string): string {
  return email.slice(email.lastIndexOf('@') + 1);
}

/** A certificate denial, or undefined when the certificate is valid. */
function certificateProblem(cert: CertificateFacts, t: Trace): Deny | undefined {
  t?.push({ rule: `certificate ${cert.status}`, matched: cert.status === 'valid' });
  if (cert.status === 'valid') return undefined;
  const d = certificateDenial[cert.status];
  return deny(d.code, cert.detail ? `${d.reason} (${cert.detail})` : d.reason);
}

/**
 * The person-based rules, in order: root admin, allow.users, allow.domains, allow.roles, allow.certificateSubject
 * (only when `cert` is given), role grants. Returns the allow decision, `true` when the user holds grants on
 * the route but none covers this request, or `false` when nothing applies.
 */
function personRules(
  route: CompiledRoute,
  f: Facts,
  email: string,
  roles: readonly string[],
  cert: CertificateFacts | undefined,
  t: Trace,
): Allow | boolean {
  const admin = (f.admins ?? NO_ADMINS).has(email);
  t?.push({ rule: ROOT_ADMIN.rule, matched: admin });
  if (admin) return ROOT_ADMIN;
  if (route.allowUsers.size > 0) {
    const a = route.allowUsers.get(email);
    t?.push({ rule: `allow.users ${[...route.allowUsers.keys()].join(', ')}`, matched: a !== undefined });
    if (a) return a;
  }
  if (route.allowDomains.size > 0) {
    const a = route.allowDomains.get(domainOf(email));
    t?.push({ rule: `allow.domains ${[...route.allowDomains.keys()].join(', ')}`, matched: a !== undefined });
    if (a) return a;
  }
  if (route.allowRoles.size > 0) {
    let found: Allow | undefined;
    for (let i = 0; i < roles.length && !found; i++) found = route.allowRoles.get(roles[i]!);
    t?.push({ rule: `allow.roles ${[...route.allowRoles.keys()].join(', ')}`, matched: found !== undefined });
    if (found) return found;
  }
  if (cert && route.certificateSubject) {
    const ok = subjectMatches(route.certificateSubject, cert.subject);
    t?.push({ rule: route.certificateSubjectDecision!.rule, matched: ok });
    if (ok) return route.certificateSubjectDecision!;
  }
  if (route.grants.size === 0) return false;
  let held = false;
  let method: string | undefined;
  for (let i = 0; i < roles.length; i++) {
    const g = route.grants.get(roles[i]!);
    if (!g) continue;
    held = true;
    t?.push({ rule: g.whole?.decision.rule ?? `role ${roles[i]} grants ${route.name}`, matched: g.whole !== undefined });
    if (g.whole) return g.whole.decision;
    method ??= f.method.toUpperCase();
    for (const p of g.permissions) {
      for (let k = 0; k < p.locations.length; k++) {
        const covered = locationCovers(p.locations[k]!, method, f.path);
        t?.push({ rule: p.decisions[k]!.rule, matched: covered });
        if (covered) return p.decisions[k]!;
      }
    }
  }
  return held;
}

/** The denial for a user who holds permission grants on the route, none of which covers this request. */
function permissionDenied(route: CompiledRoute, f: Facts, who: string, roles: readonly string[]): Deny {
  const held: string[] = [];
  for (const r of roles) {
    for (const p of route.grants.get(r)?.permissions ?? []) {
      held.push(`${p.route}:${p.permission} (${p.locations.map((l) => l.text).join(', ')}) through role ${r}`);
    }
  }
  return deny(
    'ERR_PERMISSION_DENIED',
    `${who} holds ${held.join('; ')}, which does not cover ${f.method.toUpperCase()} ${f.path}`,
  );
}

function policyDenied(route: CompiledRoute, who: string): Deny {
  return deny('ERR_POLICY_DENIED', `no rule or role grants route ${route.name} to ${who}`);
}

/** `auth: certificate`: the certificate's subject, then the user it was issued to (when known). */
function certificateRoute(route: CompiledRoute, f: Facts, t: Trace): Decision {
  const cert = f.certificate;
  const problem = certificateProblem(cert, t);
  if (problem) return problem;
  const certUser = cert.user;
  const known = f.certificateUser;
  // a disabled user's certificate opens nothing, whatever its subject
  if (certUser && known?.disabled) {
    t?.push({ rule: `user ${certUser.toLowerCase()} enabled`, matched: false });
    return deny('ERR_USER_DISABLED', `${certUser.toLowerCase()}, to whom the client certificate was issued, is disabled`);
  }
  if (route.certificateSubject) {
    const ok = subjectMatches(route.certificateSubject, cert.subject);
    t?.push({ rule: route.certificateSubjectDecision!.rule, matched: ok });
    if (ok) return route.certificateSubjectDecision!;
  }
  if (certUser) {
    const email = certUser.toLowerCase();
    const roles = known?.roles ?? NO_ROLES;
    const r = personRules(route, f, email, roles, undefined, t);
    if (typeof r === 'object') return r;
    if (r) return permissionDenied(route, f, email, roles);
  }
  if (route.certificateSubject) {
    return deny(
      'ERR_CERT_SUBJECT_MISMATCH',
      `the certificate subject ${cert.subjectDn ?? '(empty)'} does not match ${formatSubjectRule(route.certificateSubject)}`,
    );
  }
  if (certUser) return policyDenied(route, certUser.toLowerCase());
  return deny('ERR_POLICY_DENIED', `no rule of route ${route.name} allows this certificate`);
}

/** `auth: login` and `auth: login+certificate`. */
function loginRoute(route: CompiledRoute, f: Facts, t: Trace): Decision {
  const both = route.auth === 'login+certificate';
  t?.push({ rule: 'sign-in configured', matched: f.loginAvailable });
  if (!f.loginAvailable) {
    return deny('ERR_LOGIN_NOT_CONFIGURED', `route ${route.name} needs sign-in, and sign-in is not configured`);
  }
  // a missing or bad certificate cannot be mended by signing in: say so before sending anyone to the IdP
  if (both) {
    const problem = certificateProblem(f.certificate, t);
    if (problem) return problem;
  }
  const user = f.user;
  t?.push({ rule: 'signed in', matched: user !== undefined });
  if (!user) return deny('ERR_NOT_SIGNED_IN', `route ${route.name} needs sign-in`);
  const email = user.email.toLowerCase();
  t?.push({ rule: `user ${email} enabled`, matched: !user.disabled });
  if (user.disabled) return deny('ERR_USER_DISABLED', `${email} is disabled`);
  if (both && f.certificate.user !== undefined) {
    const owner = f.certificate.user.toLowerCase();
    t?.push({ rule: `certificate issued to ${email}`, matched: owner === email });
    if (owner !== email) {
      return deny('ERR_CERT_WRONG_USER', `the client certificate was issued to ${owner}, and ${email} is signed in`);
    }
  }
  const r = personRules(route, f, email, user.roles, both ? f.certificate : undefined, t);
  if (typeof r === 'object') return r;
  return r ? permissionDenied(route, f, email, user.roles) : policyDenied(route, email);
}

function decide(f: Facts, t: Trace): Decision {
  const route = compiledRouteOf(f.route);
  switch (route.auth) {
    case 'public':
      t?.push({ rule: PUBLIC.rule, matched: true });
      return PUBLIC;
    case 'certificate':
      return certificateRoute(route, f, t);
    case 'login':
    case 'login+certificate':
      return loginRoute(route, f, t);
    default:
      // an auth mode this version does not know: deny by default
      return deny('ERR_POLICY_DENIED', `route ${route.name} has an unknown auth mode`);
  }
}

/**
 * The decision for one request to a route (SPEC "Decision"). Deny is the default; every denial names its
 * reason. `facts.path` must already be normalised: the proxy normalises once and forwards that same path.
 */
export function evaluate(facts: Facts): Decision {
  return decide(facts, undefined);
}

/** The same decision, with the rules considered on the way, in order (for `gatehouse explain`). */
export function explain(facts: Facts): Explanation {
  const considered: Consideration[] = [];
  const decision = decide(facts, considered);
  return { decision, considered };
}
