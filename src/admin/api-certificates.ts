/**
 * Device certificates from the internal CA: everyone lists, asks for and revokes their own; root admins list and
 * revoke anyone's (connector certificates included) and may issue for another person. Without a CSR the key is
 * generated here and handed back once, in a PKCS#12 with a one-time password; Gatehouse keeps neither. Server
 * certificates (Gatehouse's own, for its hosts) are not part of this API: `gatehouse ca list` shows them.
 *
 * The CA writes the audit records of issuing and revoking itself (`certificate.issue`, `certificate.revoke`).
 */
import { z } from 'zod';
import { GatehouseError } from '../core/index.ts';
import { SERVICE_DOMAIN } from '../directory/index.ts';
import { MAX_DAYS, type CertificateRecord, type InternalCa } from '../ca/index.ts';
import { created, defineRoute, emailInput, ok, param, wantsAll, type ApiCall, type ApiRoute } from './api-call.ts';
import { certificateJson } from './api-shapes.ts';

/** Room for an RSA-4096 CSR and then some, well inside the 16 KiB body limit. */
const MAX_CSR_CHARS = 10_000;

function isServiceAccount(email: string): boolean {
  return email.endsWith(`@${SERVICE_DOMAIN}`);
}

/** The CA service with a CA ready to sign, or `ERR_CA_NOT_INITIALISED`. */
function signingCa(call: ApiCall): InternalCa {
  const ca = call.o.ca;
  const info = ca?.info();
  if (!ca || !info) throw new GatehouseError('ERR_CA_NOT_INITIALISED', 'there is no internal CA yet: an operator creates it with `gatehouse ca init -c FILE`');
  if (info.state === 'pending') {
    throw new GatehouseError('ERR_CA_NOT_INITIALISED', 'the internal CA is an intermediate waiting for its signed certificate: an operator finishes it with `gatehouse ca init -c FILE --import-cert CRT`');
  }
  return ca;
}

/** Whose certificate a POST issues: the caller's own, or (root only) another person's. */
function holderOf(call: ApiCall, user: string | undefined): string {
  const holder = user === undefined ? call.me : user.toLowerCase();
  if (holder !== call.me && !call.root) throw new GatehouseError('ERR_FORBIDDEN', 'only root admins may issue certificates for someone else');
  if (isServiceAccount(holder)) {
    throw new GatehouseError('ERR_FORBIDDEN', 'device certificates are for people: a service account calls with API tokens');
  }
  if (call.o.directory.isDisabled(holder)) throw new GatehouseError('ERR_FORBIDDEN', `${holder} is disabled: enable them first`);
  return holder;
}

/** The certificate `serial` (any spelling) when the caller may see it: their own device's, or any for root. */
async function visibleCertificate(call: ApiCall, ca: InternalCa, serial: string): Promise<CertificateRecord | undefined> {
  const found = await ca.get(serial);
  if (!found || found.kind === 'server' || found.kind === 'instance') return undefined;
  return call.root || found.user === call.me ? found : undefined;
}

export const CERTIFICATE_ROUTES: readonly ApiRoute[] = [
  defineRoute({
    method: 'GET',
    path: '/certificates',
    who: 'own-or-root',
    summary: 'my device certificates, revoked ones too, until they expire (?all=true: every device and connector certificate, root only)',
    handle: async (call) => {
      const all = wantsAll(call, 'certificates');
      const ca = call.o.ca;
      const records = !ca ? [] : all ? (await ca.list()).filter((r) => r.kind !== 'server' && r.kind !== 'instance') : await ca.list({ user: call.me, kind: 'device' });
      return ok({ certificates: records.sort((a, b) => b.issued - a.issued || (a.serial < b.serial ? -1 : 1)).map(certificateJson) });
    },
  }),
  defineRoute({
    method: 'POST',
    path: '/certificates',
    who: 'own-or-root',
    summary: 'issue a device certificate for my CSR, or with a new key as a PKCS#12 whose password is shown once; root may name another user',
    body: z.strictObject({
      device: z.string().trim().min(1).max(64),
      csr: z.string().min(1).max(MAX_CSR_CHARS).optional(),
      days: z.number().int().min(1).max(MAX_DAYS).optional(),
      user: emailInput.optional(),
    }),
    handle: async (call, body) => {
      const holder = holderOf(call, body.user);
      const ca = signingCa(call);
      const issued = await ca.issue({
        user: holder,
        device: body.device,
        issuedBy: call.me,
        ...(body.csr !== undefined ? { csrPem: body.csr } : {}),
        ...(body.days !== undefined ? { days: body.days } : {}),
      });
      const answer = { record: certificateJson(issued.record), certificate: issued.certPem, chain: issued.chainPem };
      if (!issued.p12 || issued.p12Password === undefined) return created(answer);
      return created({ ...answer, p12: issued.p12.toString('base64'), password: issued.p12Password });
    },
  }),
  defineRoute({
    method: 'POST',
    path: '/certificates/{serial}/revoke',
    who: 'own-or-root',
    summary: 'revoke a certificate: every connection presenting it is refused from then on',
    body: z.strictObject({ reason: z.string().max(200).optional() }),
    handle: async (call, body) => {
      const serial = param(call, 'serial');
      const ca = call.o.ca;
      const found = ca && (await visibleCertificate(call, ca, serial));
      if (!ca || !found) throw new GatehouseError('ERR_NOT_FOUND', `there is no certificate ${serial}`);
      const { record } = await ca.revoke(found.serial, call.me, body.reason);
      return ok({ certificate: certificateJson(record) });
    },
  }),
];
