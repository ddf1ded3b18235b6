/**
 * People and roles in the store, end to end: a real OpenID provider, an in-process Gatehouse, and the directory
 * changed through `g.services.directory` (as the JSON API will). Store memberships grant routes from the next
 * request on, removing one refuses the next request, and disabling a user ends their open session at once.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { signInOverHttp, startSignInWorld, type SignInWorld, type WebClient } from '../harness/index.ts';
import type { Directory } from '../../src/directory/index.ts';

const BOB = { email: 'bob@example.com', password: 'bob-password' };
const CAROL = { email: 'carol@example.com', password: 'carol-password' };
const ROOT = { email: 'root@example.com' };
const ALICE = { email: 'alice@example.com' }; // admin of role viewers

describe('directory end to end', () => {
  let w: SignInWorld;
  let directory: Directory;
  const app = () => w.main.url('app.corp.test', '/dashboard');

  before(async () => {
    w = await startSignInWorld({
      users: [BOB, CAROL],
      identity: { admins: ['root@example.com'] },
      routes: [{ name: 'app', host: 'app.corp.test' }],
      roles: [{ name: 'viewers', grants: ['app'], admins: ['alice@example.com'] }],
    });
    directory = w.main.gh!.g.services.directory;
  });
  after(async () => {
    await w?.close();
  });

  async function get(client: WebClient, headers: Record<string, string> = {}) {
    return client.request(app(), { headers: { accept: 'application/json', ...headers } });
  }

  it('a store membership grants the route on the next request; removing it refuses the next one', async () => {
    const bob = w.client();
    const { last } = await signInOverHttp(bob, app(), BOB);
    assert.equal(last.status, 403, 'signed in, and no role grants the route yet');
    assert.equal(last.code, 'ERR_POLICY_DENIED');
    const user = await directory.user(BOB.email);
    assert.equal(typeof user?.firstSeen, 'number', 'the sign-in recorded the user');

    await directory.addMember('viewers', BOB.email, { actor: ALICE });
    const allowed = await get(bob);
    assert.equal(allowed.status, 200, allowed.body.slice(0, 200));

    await directory.removeMember('viewers', BOB.email, ALICE);
    const refused = await get(bob);
    assert.equal(refused.status, 403);
    assert.equal(refused.code, 'ERR_POLICY_DENIED');
  });

  it('a disabled user’s open session is refused on the next request, and they cannot sign in again', async () => {
    const carol = w.client();
    await directory.addMember('viewers', CAROL.email, { actor: ROOT });
    const { last } = await signInOverHttp(carol, app(), CAROL);
    assert.equal(last.status, 200, last.body.slice(0, 200));
    const seen = w.echo.received.length;

    const revoked = await directory.disable(CAROL.email, ROOT);
    assert.equal(revoked.sessions, 1);
    const next = await get(carol);
    assert.ok(next.status === 401 || next.status === 403, `refused: ${next.status}`);
    assert.ok(next.code === 'ERR_NOT_SIGNED_IN' || next.code === 'ERR_USER_DISABLED', String(next.code));
    assert.equal(w.echo.received.length, seen, 'nothing reached the backend');

    // a credential that outlived the revocation (made after it, as by another worker) is refused by the flag itself
    const { token } = await w.main.gh!.g.services.sessions.issueToken(CAROL.email, 'late', 3600_000, 'cli');
    const flagged = await get(w.client(), { authorization: `Bearer ${token}` });
    assert.equal(flagged.status, 403);
    assert.equal(flagged.code, 'ERR_USER_DISABLED');

    const again = await signInOverHttp(w.client(), app(), CAROL);
    assert.equal(again.last.code, 'ERR_USER_DISABLED', 'sign-in refuses a disabled user');

    await directory.enable(CAROL.email, ROOT);
    const back = await get(w.client(), { authorization: `Bearer ${token}` });
    assert.equal(back.status, 200, 'enabled again');
  });

  it('a service account reaches the route with its API token through a store membership', async () => {
    await directory.createServiceAccount('deployer', ROOT);
    const { token } = await directory.issueServiceToken('deployer', ROOT, { tokenName: 'ci', ttlMs: 3600_000 });
    const client = w.client();
    const before = await get(client, { authorization: `Bearer ${token}` });
    assert.equal(before.code, 'ERR_POLICY_DENIED');
    await directory.addMember('viewers', 'deployer@service.gatehouse', { actor: ALICE });
    assert.equal((await get(client, { authorization: `Bearer ${token}` })).status, 200);
    await directory.deleteServiceAccount('deployer', ROOT);
    assert.equal((await get(client, { authorization: `Bearer ${token}` })).status, 401);
  });
});
