/**
 * Connectors: the hub inside Gatehouse (a `Dialer` over the connectors' HTTP/2 sessions, enrollment, presence)
 * and the agent beside a backend (`gatehouse connect`). `protocol/` holds the pure parts both sides share.
 */
export { ConnectorHub, type ConnectorHubOptions, type ConnectorListing, type Enrollment } from './hub.ts';
export { PeerRelay, NoLocalSession, RELAY_REASON_HEADER, type PeerRelayOptions } from './peer-relay.ts';
export { ConnectorAgent, type AgentOptions } from './agent.ts';
export { ConnectorCredentials, type Credentials, type ConnectorCallOptions } from './agent-credentials.ts';
export { checkConnectorCertificate, type CertificateVerdict } from './certificate-check.ts';
export { ENROLLMENT_KIND, ENROLLMENT_TTL_MS, PRESENCE_KIND, type ConnectorPresence, type EnrollmentRecord } from './records.ts';
export { parseTarget, backoffDelay, formatWorker, parseWorker, UPGRADE_PROTOCOL, type ConnectorTarget, type WorkerSlot } from './protocol/index.ts';
