export type {
  Allow,
  AuthMode,
  CertificateFacts,
  CertificateStatus,
  CertificateUserFacts,
  Consideration,
  Decision,
  Deny,
  Explanation,
  Facts,
  RouteRules,
  UserFacts,
} from './decision.ts';
export { compilePolicy, locationCovers } from './compiled-policy.ts';
export type {
  CompiledGrant,
  CompiledLocation,
  CompiledPolicy,
  CompiledRole,
  CompiledRoute,
  PermissionGrant,
  PolicyRole,
  PolicyRoute,
  RoleGrants,
  RouteGrant,
} from './compiled-policy.ts';
export { evaluate, explain, subjectMatches } from './evaluate.ts';
