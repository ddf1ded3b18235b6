/** The embedded demo: sample backends and the files and configuration `gatehouse demo` runs on. */
export {
  startSampleBackends,
  startEchoApp,
  startRedirectApp,
  startWebSocketEcho,
  type SampleBackend,
  type SampleBackends,
  type SampleBackendName,
} from './backends.ts';
export {
  prepareDemoFiles,
  writeDemoConfig,
  demoRoutes,
  routeHost,
  authHost,
  demoOrganisation,
  demoUsers,
  demoIdpOptions,
  type DemoFiles,
  type DemoRoute,
  type DemoUser,
} from './setup.ts';
export { startIdp, type RunningIdp, type IdpOptions, type IdpUser, type IdpClient, type IdpEvent } from './idp.ts';
