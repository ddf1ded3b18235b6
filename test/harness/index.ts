export { tempDir } from './tmp.ts';
export { TestCa, type CertFiles } from './certs.ts';
export { startEcho, startHttpsEcho, deadPort, type Backend, type Received } from './backends.ts';
export { startGatehouse, type RunningGatehouse } from './gatehouse.ts';
export { curl, type CurlResult } from './curl.ts';
