export { tempDir } from './tmp.ts';
export { TestCa, type CertFiles } from './certs.ts';
export { startEcho, startHttpsEcho, deadPort, type Backend, type Received } from './backends.ts';
export { startGatehouse, type RunningGatehouse } from './gatehouse.ts';
export { curl, type CurlResult } from './curl.ts';
export { startServe, runCli, listeningPort, type ServeProcess } from './serve-process.ts';
export { startBackend, echoJson, waitFor, frontDoor, send, headerValues, rawExchange, type ScriptedBackend, type SeenRequest, type BackendHandler, type Answer, type RawAnswer } from './wire.ts';
export { parseRawResponse, destroyProbes, connectPlain, connectTls, readToEnd, exchange, openTunnel, startSentinel, startFileServer, type RawResponse, type TlsProbeOptions, type Sentinel, type FileServer } from './probes.ts';
export { startIdp, loginInBrowser, type RunningIdp, type IdpOptions, type IdpUser, type IdpClient, type IdpEvent } from './idp.ts';
