export type { AuthMode, CertificateFacts, CertificateStatus, Decision, Facts, RouteRules } from './decision.ts';
export { evaluate, subjectMatches } from './evaluate.ts';
