import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { idTime, newId } from '../../src/store/index.ts';

describe('newId', () => {
  it('is 26 characters of Crockford base32 carrying the time it was made', () => {
    const before = Date.now();
    const id = newId();
    const after = Date.now();
    assert.match(id, /^[0-9A-HJKMNP-TV-Z]{26}$/);
    const time = idTime(id)!;
    assert.ok(time >= before && time <= after, `${time} is not between ${before} and ${after}`);
  });

  it('sorts in the order ids were made, within a millisecond too, and never repeats', () => {
    const ids = Array.from({ length: 20_000 }, () => newId());
    assert.deepEqual([...ids].sort(), ids);
    assert.equal(new Set(ids).size, ids.length);
    const times = new Set(ids.map((id) => idTime(id)));
    assert.ok(times.size < ids.length, 'some ids shared a millisecond');
  });

  it('sorts across milliseconds by time first', async () => {
    const first = newId();
    const start = Date.now();
    while (Date.now() <= start + 1) await new Promise((resolve) => setTimeout(resolve, 1));
    const second = newId();
    assert.ok(first < second);
    assert.ok(idTime(second)! > idTime(first)!);
  });

  it('idTime knows nothing of other strings', () => {
    assert.equal(idTime('not-an-id'), undefined);
    assert.equal(idTime('0123456789ABCDEFGHJKMNPQRU'), undefined); // U is not in the alphabet
    assert.equal(idTime('ZZZZZZZZZZ0000000000000000'), undefined); // past 48 bits
    assert.equal(idTime('00000000100000000000000000'), 32);
  });
});
