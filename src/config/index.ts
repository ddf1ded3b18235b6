export { configSchema } from './schema.ts';
export type { Config, ConfigInput, RouteConfig, RoleConfig, UpstreamConfig } from './schema.ts';
export { loadConfig, loadConfigText, locateProblems } from './load.ts';
export type { LoadOptions, LoadResult } from './load.ts';
export type { Problem, PathProblem } from './problem.ts';
export { formatProblems } from './check.ts';
export { configJsonSchema } from './json-schema.ts';
export type { ConfigPath } from './path.ts';
