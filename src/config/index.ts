export { configSchema } from './schema.ts';
export type { Config, ConfigInput, RouteConfig, RoleConfig, UpstreamConfig } from './schema.ts';
export { loadConfig, loadConfigText } from './load.ts';
export type { LoadOptions, LoadResult } from './load.ts';
export type { Problem } from './problem.ts';
export { formatProblems } from './check.ts';
export { configJsonSchema } from './json-schema.ts';
