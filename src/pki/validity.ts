import { GatehouseError } from '../core/index.ts';

/** How long a certificate is valid: a number of days from now, or explicit dates (past ones too). */
export interface ValidityOptions {
  readonly validityDays?: number;
  readonly notBefore?: Date;
  readonly notAfter?: Date;
}

export interface Validity {
  readonly notBefore: Date;
  readonly notAfter: Date;
}

const day = 86_400_000;
/** New certificates start a minute in the past, so a peer whose clock lags a little accepts them. */
const backdate = 60_000;

function checkDate(value: unknown, what: string): Date | undefined {
  if (value === undefined) return undefined;
  if (!(value instanceof Date) || Number.isNaN(value.getTime())) throw new GatehouseError('ERR_USAGE', `${what} must be a valid Date`);
  return value;
}

/**
 * Explicit dates win. With only `notAfter`, the certificate starts now (backdated a minute),
 * or `validityDays` before `notAfter` when that is already past, which is how tests issue
 * expired certificates. With only `notBefore`, it lasts `validityDays` from then.
 */
export function resolveValidity(options: ValidityOptions, defaultDays: number, now = Date.now()): Validity {
  const days = options.validityDays ?? defaultDays;
  if (typeof days !== 'number' || !Number.isFinite(days) || days <= 0) {
    throw new GatehouseError('ERR_USAGE', `validityDays must be a positive number of days, not ${String(options.validityDays)}`);
  }
  const notBefore = checkDate(options.notBefore, 'notBefore');
  const notAfter = checkDate(options.notAfter, 'notAfter');
  let start: number;
  let end: number;
  if (notBefore && notAfter) [start, end] = [notBefore.getTime(), notAfter.getTime()];
  else if (notBefore) [start, end] = [notBefore.getTime(), notBefore.getTime() + days * day];
  else if (notAfter) {
    end = notAfter.getTime();
    start = now - backdate < end ? now - backdate : end - days * day;
  } else [start, end] = [now - backdate, now + days * day];
  if (end <= start) throw new GatehouseError('ERR_USAGE', 'notAfter must be later than notBefore');
  return { notBefore: new Date(start), notAfter: new Date(end) };
}
