// Users (/users, root): everyone who signed in or was disabled; disable (ends sessions and tokens) and enable.
import { api, badge, confirmButton, empty, h, listOf, live, page, seg, showNotice, table, time } from '../lib.js';

export async function usersPage(ctx) {
  const users = live({ 'data-testid': 'users' }, async (reload) => {
    const list = listOf(await api('GET', '/users'), 'users').sort((a, b) => a.email.localeCompare(b.email));
    if (!list.length) return empty('Nobody has signed in yet.');
    return table(
      'users-table',
      ['User', 'First seen', 'Last seen', 'Roles', 'State', ''],
      list.map((u) => ({
        attrs: { 'data-testid': 'user-row', 'data-user': u.email, 'data-disabled': u.disabled ? 'true' : 'false' },
        cells: [
          u.email,
          time(u.firstSeen, 'never'),
          time(u.lastSeen, 'never'),
          (u.roles ?? []).length ? (u.roles ?? []).map((r, i) => [i ? ', ' : '', h('a', { href: `/roles/${seg(r)}` }, r)]) : h('span', { class: 'muted' }, '—'),
          u.disabled ? badge('disabled', 'bad') : badge('active', 'ok'),
          u.email === ctx.me.email
            ? h('span', { class: 'muted', 'data-testid': 'self' }, 'you')
            : u.disabled
            ? confirmButton('Enable', { class: 'secondary', 'data-testid': 'enable-user' }, `Let ${u.email} sign in again?`, async () => {
                await api('POST', `/users/${seg(u.email)}/enable`, {});
                showNotice(`${u.email} is enabled.`);
                await reload();
              })
            : confirmButton('Disable', { class: 'danger', 'data-testid': 'disable-user' }, `Sign ${u.email} out everywhere and revoke their tokens?`, async () => {
                const answer = await api('POST', `/users/${seg(u.email)}/disable`, {});
                const r = answer?.revoked;
                showNotice(r ? `${u.email} is disabled: ${r.sessions ?? 0} session(s) and ${r.tokens ?? 0} token(s) revoked.` : `${u.email} is disabled.`);
                await reload();
              }),
        ],
      })),
    );
  });
  await users.reload();
  return page('page-users', 'Users', h('p', { class: 'lead' }, 'Disabling a user ends their sessions and tokens at once and refuses their next sign-in.'), users.el);
}
