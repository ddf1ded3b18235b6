import { randomBytes } from 'node:crypto';

/**
 * Time-ordered ids (the ULID layout): 10 characters of millisecond timestamp and 16 of randomness,
 * in Crockford's base32, 26 characters that sort in string order by creation time. Ids made in the
 * same millisecond by one process increment the random part, so they stay in creation order; ids
 * from different processes differ by 80 random bits. They are unique, not secret: never a token.
 */
const alphabet = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const timeLength = 10;
const randomLength = 16;
const maxTime = 2 ** 48 - 1;

let lastTime = -1;
const lastRandom = new Uint8Array(randomLength);

function fillRandom(): void {
  const bytes = randomBytes(randomLength);
  for (let i = 0; i < randomLength; i++) lastRandom[i] = bytes[i]! & 31;
}

/** Adds one to the random part; false when it overflowed. */
function incrementRandom(): boolean {
  for (let i = randomLength - 1; i >= 0; i--) {
    if (lastRandom[i]! < 31) {
      lastRandom[i]! += 1;
      return true;
    }
    lastRandom[i] = 0;
  }
  return false;
}

export function newId(): string {
  let time = Date.now();
  if (time > lastTime) fillRandom();
  else if (incrementRandom()) time = lastTime;
  else {
    time = lastTime + 1;
    fillRandom();
  }
  if (time > maxTime) throw new RangeError('the clock is past the year 10889');
  lastTime = time;
  let text = '';
  for (let i = 0, t = time; i < timeLength; i++, t = Math.floor(t / 32)) text = alphabet[t % 32]! + text;
  for (const digit of lastRandom) text += alphabet[digit]!;
  return text;
}

/** The creation time (ms since the epoch) of an id made by `newId`, or `undefined` for anything else. */
export function idTime(id: string): number | undefined {
  if (id.length !== timeLength + randomLength) return undefined;
  let time = 0;
  for (let i = 0; i < id.length; i++) {
    const digit = alphabet.indexOf(id[i]!);
    if (digit < 0) return undefined;
    if (i < timeLength) time = time * 32 + digit;
  }
  return time <= maxTime ? time : undefined;
}
