export { Gatehouse, loadState, type GatehouseOptions, type ReloadResult, type Addresses } from './gatehouse.ts';
export { buildState, withPublicPort, StateBuildError, type AppState, type BuildProblem, type Services } from './state.ts';
export { serve, watchFile, type ServeOptions } from './serve.ts';
