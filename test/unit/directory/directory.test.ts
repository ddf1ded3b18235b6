import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { Keyring, SessionBook } from '../../../src/authn/index.ts';
import { GatehouseError, type ErrorCode } from '../../../src/core/index.ts';
import { DIRECTORY_MIRROR_KINDS, Directory, type AuditRecord, type DirectorySettings, type Membership } from '../../../src/directory/index.ts';
import { StoreMirror, openSqliteStore, type SqliteStore } from '../../../src/store/index.ts';
import { tempDir } from '../../harness/tmp.ts';

const tmp = tempDir('gatehouse-directory-');
const opened: Array<{ store: SqliteStore; mirror: StoreMirror }> = [];
after(async () => {
  for (const o of opened) {
    o.mirror.close();
    await o.store.close().catch(() => undefined);
  }
  tmp.cleanup();
});

const ROOT = { email: 'root@example.com', from: '192.0.2.1' };
const ALICE = { email: 'alice@example.com' }; // admin of sre (config)
const DANA = { email: 'dana@example.com' }; // admin of db (config)
const EVE = { email: 'eve@example.com' }; // nobody
const SETTINGS: DirectorySettings = {
  admins: ['root@example.com'],
  roles: [
    { name: 'sre', members: ['bob@example.com'], admins: ['alice@example.com'] },
    { name: 'db', members: [], admins: ['dana@example.com'] },
  ],
};
const hour = 3600_000;
let counter = 0;

async function world(settings: DirectorySettings = SETTINGS) {
  const store = await openSqliteStore(join(tmp.dir, `db${++counter}`, 'gatehouse.db'));
  const mirror = new StoreMirror(store, ['session', 'token', ...DIRECTORY_MIRROR_KINDS]);
  opened.push({ store, mirror });
  await mirror.start();
  const sessions = new SessionBook(store, mirror, Keyring.fromSecret(Buffer.alloc(32, 3)), { ttlMs: 12 * hour, idleMs: 2 * hour });
  const directory = new Directory({ store, mirror, sessions, settings });
  return { store, mirror, sessions, directory };
}

async function refused(promise: Promise<unknown>, code: ErrorCode): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof GatehouseError, String(err));
    assert.equal(err.code, code, err.message);
    return true;
  });
}

/** Polls `check` every 25 ms for up to `ms`. */
async function eventually(check: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`not true within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('Directory: who may change memberships', () => {
  it('a role admin adds and removes members of their own role; the hot path sees it at once', async () => {
    const { directory } = await world();
    assert.deepEqual(directory.rolesFromStore('carol@example.com'), []);
    const m = await directory.addMember('sre', 'Carol@Example.com', { actor: ALICE });
    assert.deepEqual({ role: m.role, user: m.user, addedBy: m.addedBy }, { role: 'sre', user: 'carol@example.com', addedBy: 'alice@example.com' });
    assert.deepEqual(directory.rolesFromStore('CAROL@example.com'), ['sre']);
    assert.deepEqual((await directory.members('sre')).map((x) => x.user), ['carol@example.com']);
    assert.equal(await directory.removeMember('sre', 'carol@example.com', ALICE), true);
    assert.deepEqual(directory.rolesFromStore('carol@example.com'), []);
    assert.equal(await directory.removeMember('sre', 'carol@example.com', ALICE), false, 'removing again changes nothing');
  });

  it('a role admin cannot touch another role, make role admins, disable users or create service accounts', async () => {
    const { directory } = await world();
    await refused(directory.addMember('db', 'carol@example.com', { actor: ALICE }), 'ERR_FORBIDDEN');
    await directory.addMember('db', 'carol@example.com', { actor: DANA });
    await refused(directory.removeMember('db', 'carol@example.com', ALICE), 'ERR_FORBIDDEN');
    await refused(directory.addRoleAdmin('sre', 'carol@example.com', ALICE), 'ERR_FORBIDDEN');
    await refused(directory.addRoleAdmin('db', 'alice@example.com', ALICE), 'ERR_FORBIDDEN');
    await refused(directory.disable('bob@example.com', ALICE), 'ERR_FORBIDDEN');
    await refused(directory.createServiceAccount('ci', ALICE), 'ERR_FORBIDDEN');
    assert.deepEqual(directory.rolesFromStore('carol@example.com'), ['db'], 'the refused removal changed nothing');
    assert.equal(directory.mayManage('sre', ALICE.email), true);
    assert.equal(directory.mayManage('db', ALICE.email), false);
    assert.deepEqual(directory.managedRoles(ALICE.email), ['sre']);
  });

  it('everyone else is refused; an unknown role is not found', async () => {
    const { directory } = await world();
    await refused(directory.addMember('sre', 'eve@example.com', { actor: EVE }), 'ERR_FORBIDDEN');
    await refused(directory.removeMember('sre', 'bob@example.com', EVE), 'ERR_FORBIDDEN');
    await refused(directory.addMember('nope', 'eve@example.com', { actor: ROOT }), 'ERR_NOT_FOUND');
    await refused(directory.addMember('nope', 'eve@example.com', { actor: ALICE }), 'ERR_NOT_FOUND');
    await refused(directory.addMember('sre', 'not an email', { actor: ROOT }), 'ERR_BAD_REQUEST');
    await refused(directory.addMember('sre', 'eve@example.com', { actor: ROOT, expires: Date.now() - 1 }), 'ERR_BAD_REQUEST');
    assert.deepEqual(directory.managedRoles(EVE.email), []);
  });

  it('a root admin changes any role and makes role admins, who can then manage that role only', async () => {
    const { directory } = await world();
    await directory.addMember('db', 'eve@example.com', { actor: ROOT });
    assert.deepEqual(directory.rolesFromStore('eve@example.com'), ['db']);
    assert.deepEqual(await directory.addRoleAdmin('db', 'carol@example.com', ROOT), { user: 'carol@example.com', source: 'store' });
    assert.deepEqual(await directory.roleAdmins('db'), [
      { user: 'dana@example.com', source: 'config' },
      { user: 'carol@example.com', source: 'store' },
    ]);
    await directory.addMember('db', 'frank@example.com', { actor: { email: 'carol@example.com' } });
    await refused(directory.addMember('sre', 'frank@example.com', { actor: { email: 'carol@example.com' } }), 'ERR_FORBIDDEN');
    await refused(directory.removeRoleAdmin('db', 'dana@example.com', ROOT), 'ERR_CONFLICT');
    assert.equal(await directory.removeRoleAdmin('db', 'carol@example.com', ROOT), true);
    await refused(directory.addMember('db', 'gina@example.com', { actor: { email: 'carol@example.com' } }), 'ERR_FORBIDDEN');
  });

  it('a membership with an expiry ends by itself', async () => {
    const { directory, store } = await world();
    await directory.addMember('sre', 'temp@example.com', { actor: ALICE, expires: Date.now() + 300 });
    assert.deepEqual(directory.rolesFromStore('temp@example.com'), ['sre']);
    assert.ok((await directory.members('sre')).some((m) => m.user === 'temp@example.com' && typeof m.expires === 'number'));
    await eventually(() => directory.rolesFromStore('temp@example.com').length === 0);
    assert.equal(await store.get('membership', 'sre/temp@example.com'), undefined);
    assert.deepEqual(await directory.members('sre'), []);
  });
});

describe('Directory: seeding from the configuration', () => {
  it('writes config members once, marked as config, and removes them when the configuration drops them', async () => {
    const { directory } = await world();
    assert.deepEqual(await directory.seed(), { added: 1, removed: 0 });
    const members = await directory.members('sre');
    assert.deepEqual(
      members.map((m: Membership) => ({ user: m.user, source: m.source, addedBy: m.addedBy })),
      [{ user: 'bob@example.com', source: 'config', addedBy: 'config' }],
    );
    const audits = (await directory.audit()).length;
    assert.deepEqual(await directory.seed(), { added: 0, removed: 0 }, 'idempotent');
    assert.equal((await directory.audit()).length, audits, 'a second seed writes nothing');
    assert.deepEqual(directory.rolesFromStore('bob@example.com'), ['sre']);
    await refused(directory.removeMember('sre', 'bob@example.com', ROOT), 'ERR_CONFLICT');
    await refused(directory.addMember('sre', 'bob@example.com', { actor: ROOT, expires: Date.now() + hour }), 'ERR_CONFLICT');

    // a store membership of someone the configuration now lists becomes a config one
    await directory.addMember('db', 'carol@example.com', { actor: ROOT, expires: Date.now() + hour });
    directory.configure({ ...SETTINGS, roles: [{ name: 'sre', members: [], admins: [] }, { name: 'db', members: ['carol@example.com'], admins: [] }] });
    assert.deepEqual(await directory.seed(), { added: 1, removed: 1 });
    assert.deepEqual(directory.rolesFromStore('bob@example.com'), []);
    const carol = (await directory.members('db'))[0]!;
    assert.equal(carol.source, 'config');
    assert.equal(carol.expires, undefined);
  });
});

describe('Directory: access requests', () => {
  it('is listed for the role’s admins and root, approved for a limited time, and cannot be decided twice', async () => {
    const { directory } = await world();
    const req = await directory.requestAccess({ email: 'Carol@example.com' }, 'sre', '  on call this week ', hour);
    assert.equal(req.status, 'pending');
    assert.equal(req.reason, 'on call this week');
    assert.equal(req.user, 'carol@example.com');
    assert.equal((await directory.requestAccess({ email: 'carol@example.com' }, 'sre', 'again')).id, req.id, 'one pending request per role');
    assert.deepEqual((await directory.pendingFor(ALICE)).map((r) => r.id), [req.id]);
    assert.deepEqual((await directory.pendingFor(ROOT)).map((r) => r.id), [req.id]);
    assert.deepEqual(await directory.pendingFor(DANA), []);
    assert.deepEqual(await directory.pendingFor(EVE), []);
    await refused(directory.approve(req.id, DANA), 'ERR_FORBIDDEN');
    await refused(directory.approve(req.id, { email: 'carol@example.com' }), 'ERR_FORBIDDEN');

    const before = Date.now();
    const approved = await directory.approve(req.id, ALICE, 2 * hour);
    assert.equal(approved.status, 'approved');
    assert.equal(approved.decidedBy, 'alice@example.com');
    assert.ok(approved.expires! >= before + 2 * hour && approved.expires! <= Date.now() + 2 * hour);
    assert.deepEqual(directory.rolesFromStore('carol@example.com'), ['sre']);
    const m = directory.membershipsOf('carol@example.com')[0]!;
    assert.equal(m.expires, approved.expires);
    assert.equal(m.request, req.id);
    await refused(directory.approve(req.id, ALICE), 'ERR_CONFLICT');
    await refused(directory.decline(req.id, ROOT), 'ERR_CONFLICT');
    assert.deepEqual(await directory.pendingFor(ALICE), []);
    assert.deepEqual((await directory.requestsOf('carol@example.com')).map((r) => r.status), ['approved']);
  });

  it('uses the requested duration when the approver gives none; declined requests grant nothing', async () => {
    const { directory } = await world();
    const a = await directory.requestAccess({ email: 'carol@example.com' }, 'db', 'migration', 500);
    await directory.approve(a.id, ROOT);
    assert.deepEqual(directory.rolesFromStore('carol@example.com'), ['db']);
    await eventually(() => directory.rolesFromStore('carol@example.com').length === 0);

    const b = await directory.requestAccess({ email: 'erin@example.com' }, 'sre', 'curious');
    const declined = await directory.decline(b.id, ALICE);
    assert.equal(declined.status, 'declined');
    assert.equal(declined.decidedBy, 'alice@example.com');
    assert.deepEqual(directory.rolesFromStore('erin@example.com'), []);
    assert.deepEqual((await directory.requestsOf('erin@example.com')).map((r) => r.status), ['declined']);
    await refused(directory.requestAccess({ email: 'erin@example.com' }, 'nope', 'x'), 'ERR_NOT_FOUND');
    await refused(directory.requestAccess({ email: 'erin@example.com' }, 'sre', '   '), 'ERR_BAD_REQUEST');
    await refused(directory.approve('01NOSUCHREQUEST', ROOT), 'ERR_NOT_FOUND');
  });
});

describe('Directory: users', () => {
  it('records sign-ins: created once with first and last seen, audited once', async () => {
    const { directory } = await world();
    const first = await directory.recordSignIn('Carol@Example.com', '198.51.100.7');
    assert.equal(first.email, 'carol@example.com');
    assert.equal(first.disabled, false);
    assert.equal(first.firstSeen, first.lastSeen);
    await new Promise((r) => setTimeout(r, 5));
    const second = await directory.recordSignIn('carol@example.com');
    assert.equal(second.firstSeen, first.firstSeen);
    assert.ok(second.lastSeen! > first.lastSeen!);
    const audit = await directory.audit();
    assert.deepEqual(
      audit.map((a) => [a.action, a.actor, a.from]),
      [['user.create', 'carol@example.com', '198.51.100.7']],
    );
    await refused(directory.recordSignIn('ci@service.gatehouse'), 'ERR_DOMAIN_NOT_ALLOWED');
  });

  it('writes last-seen behind, at most once a minute', async () => {
    const { directory } = await world();
    const u = await directory.recordSignIn('carol@example.com');
    directory.touch('carol@example.com', u.lastSeen! + 30_000);
    directory.touch('carol@example.com', u.lastSeen! + 61_000);
    await eventually(async () => (await directory.user('carol@example.com'))?.lastSeen === u.lastSeen! + 61_000);
  });

  it('disabling revokes every session and token at once; enabling lets the user in again', async () => {
    const { directory, sessions } = await world();
    await directory.recordSignIn('bob@example.com');
    const s1 = await sessions.create('Bob@example.com', [], undefined);
    const s2 = await sessions.create('bob@example.com', ['g'], undefined);
    const other = await sessions.create('carol@example.com', [], undefined);
    const t = await sessions.issueToken('bob@example.com', 'laptop', hour, 'cli');
    await refused(directory.disable('bob@example.com', ALICE), 'ERR_FORBIDDEN');
    await refused(directory.disable('root@example.com', ROOT), 'ERR_CONFLICT');

    assert.deepEqual(await directory.disable('bob@example.com', ROOT), { sessions: 2, tokens: 1, certificates: 0 });
    assert.equal(directory.isDisabled('BOB@example.com'), true);
    assert.equal(await sessions.find(s1.secret), undefined);
    assert.equal(await sessions.find(s2.secret), undefined);
    assert.equal(await sessions.findToken(t.token), undefined);
    assert.ok(await sessions.find(other.secret), 'other users keep their sessions');
    assert.equal((await directory.recordSignIn('bob@example.com')).disabled, true, 'sign-in sees the flag');
    await refused(directory.requestAccess({ email: 'bob@example.com' }, 'sre', 'please'), 'ERR_USER_DISABLED');

    await refused(directory.enable('bob@example.com', ALICE), 'ERR_FORBIDDEN');
    const enabled = await directory.enable('bob@example.com', ROOT);
    assert.equal(enabled?.disabled, false);
    assert.equal(enabled?.disabledBy, undefined);
    assert.equal(directory.isDisabled('bob@example.com'), false);
  });

  it('a user never seen can be disabled in advance', async () => {
    const { directory } = await world();
    await directory.disable('mallory@example.com', ROOT);
    assert.equal(directory.isDisabled('mallory@example.com'), true);
    const u = await directory.recordSignIn('mallory@example.com');
    assert.equal(u.disabled, true);
    assert.equal(typeof u.firstSeen, 'number');
  });
});

describe('Directory: service accounts', () => {
  it('root creates one; it holds roles through memberships and uses API tokens; deleting it ends both', async () => {
    const { directory, sessions } = await world();
    await refused(directory.addMember('sre', 'ci@service.gatehouse', { actor: ROOT }), 'ERR_NOT_FOUND');
    assert.equal(directory.isDisabled('ci@service.gatehouse'), true, 'an unknown service identity opens nothing');
    const sa = await directory.createServiceAccount('ci', ROOT, { description: 'deploys' });
    assert.equal(sa.identity, 'ci@service.gatehouse');
    await refused(directory.createServiceAccount('ci', ROOT), 'ERR_CONFLICT');
    await refused(directory.createServiceAccount('Bad Name', ROOT), 'ERR_BAD_REQUEST');
    assert.equal(directory.isDisabled('ci@service.gatehouse'), false);
    await directory.addMember('sre', 'ci@service.gatehouse', { actor: ALICE });
    assert.deepEqual(directory.rolesFromStore('ci@service.gatehouse'), ['sre']);

    await refused(directory.issueServiceToken('ci', ALICE, { tokenName: 'deploy', ttlMs: hour }), 'ERR_FORBIDDEN');
    const { token, record } = await directory.issueServiceToken('ci', ROOT, { tokenName: 'deploy', ttlMs: hour });
    assert.equal(record.kind, 'api');
    assert.equal((await sessions.findToken(token))?.user, 'ci@service.gatehouse');
    assert.deepEqual((await directory.serviceAccounts()).map((s) => s.name), ['ci']);

    assert.equal(await directory.deleteServiceAccount('ci', ROOT), true);
    assert.equal(await sessions.findToken(token), undefined);
    assert.deepEqual(directory.rolesFromStore('ci@service.gatehouse'), []);
    assert.equal(directory.isDisabled('ci@service.gatehouse'), true);
    assert.equal(await directory.deleteServiceAccount('ci', ROOT), false);
  });
});

describe('Directory: audit', () => {
  it('records every change with actor, origin, before and after, newest first', async () => {
    const { directory } = await world();
    const t0 = Date.now();
    await directory.addMember('sre', 'carol@example.com', { actor: ROOT });
    await directory.addMember('sre', 'carol@example.com', { actor: ALICE, expires: Date.now() + hour });
    await directory.removeMember('sre', 'carol@example.com', ALICE);
    const audit = await directory.audit();
    assert.deepEqual(
      audit.map((a) => [a.action, a.actor, a.target]),
      [
        ['membership.remove', 'alice@example.com', 'membership:sre/carol@example.com'],
        ['membership.add', 'alice@example.com', 'membership:sre/carol@example.com'],
        ['membership.add', 'root@example.com', 'membership:sre/carol@example.com'],
      ],
    );
    const [removed, replaced, added] = audit as [(typeof audit)[0], (typeof audit)[0], (typeof audit)[0]];
    assert.equal(added.from, '192.0.2.1');
    assert.equal(added.before, undefined);
    assert.equal((added.after as Membership).addedBy, 'root@example.com');
    assert.equal((replaced.before as Membership).addedBy, 'root@example.com');
    assert.equal(typeof (replaced.after as Membership).expires, 'number');
    assert.equal((removed.before as Membership).addedBy, 'alice@example.com');
    assert.equal(removed.after, undefined);
    assert.ok(added.time >= t0 && removed.time >= added.time);

    assert.equal((await directory.audit(undefined, 2)).length, 2);
    assert.deepEqual((await directory.audit(undefined, 2, audit[1]!.id)).map((a) => a.id), [audit[2]!.id], 'pages on');
    assert.deepEqual(await directory.audit(Date.now() + 1000), [], 'nothing newer than since');
  });

  it('appends records for changes made elsewhere (sessions, personal tokens), refusing a disabled actor', async () => {
    const { directory, sessions } = await world();
    const issued = await sessions.issueToken('carol@example.com', 'laptop', hour, 'api');
    const written = await directory.appendAudit(
      { email: 'Carol@example.com', from: '192.0.2.7' },
      { action: 'token.issue', kind: 'token', id: issued.record.id, after: issued.record },
    );
    await directory.appendAudit(ROOT, { action: 'token.revoke', kind: 'token', id: issued.record.id, before: issued.record });
    const [revoked, added] = (await directory.audit()) as [AuditRecord, AuditRecord];
    assert.deepEqual(added, written);
    assert.deepEqual([added.actor, added.from, added.action, added.target], ['carol@example.com', '192.0.2.7', 'token.issue', `token:${issued.record.id}`]);
    assert.equal(added.before, undefined);
    assert.deepEqual(added.after, issued.record);
    assert.deepEqual([revoked.actor, revoked.action], ['root@example.com', 'token.revoke']);
    assert.deepEqual(revoked.before, issued.record);
    assert.equal(revoked.after, undefined);

    await refused(directory.appendAudit(EVE, { action: 'Token issue', kind: 'token', id: 'x' }), 'ERR_BAD_REQUEST');
    await refused(directory.appendAudit(EVE, { action: 'token.issue', kind: 'token', id: '' }), 'ERR_BAD_REQUEST');
    await refused(directory.appendAudit({ email: 'not an email' }, { action: 'token.issue', kind: 'token', id: 'x' }), 'ERR_BAD_REQUEST');
    await directory.disable(EVE.email, ROOT);
    await refused(directory.appendAudit(EVE, { action: 'session.revoke', kind: 'session', id: 'x' }), 'ERR_USER_DISABLED');
    assert.equal((await directory.audit()).filter((a) => a.action === 'session.revoke').length, 0, 'nothing written for refusals');
  });
});

describe('Directory: tokens', () => {
  it('lists the live tokens of one user, or of everyone', async () => {
    const { directory, sessions } = await world();
    const a = await sessions.issueToken('carol@example.com', 'one', hour, 'api');
    const b = await sessions.issueToken('dave@example.com', 'two', hour, 'cli');
    const gone = await sessions.issueToken('dave@example.com', 'three', hour, 'cli');
    await sessions.revokeToken(gone.record.id);
    assert.deepEqual((await directory.tokensOf('CAROL@example.com')).map((t) => t.id), [a.record.id]);
    assert.deepEqual((await directory.tokensOf()).map((t) => t.id).sort(), [a.record.id, b.record.id].sort());
  });
});
