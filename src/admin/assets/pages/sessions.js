// My sessions and tokens (/sessions): revoke either; create a personal token (its secret is shown once).
import { DURATION_PATTERN, api, badge, button, confirmButton, empty, field, form, h, listOf, live, page, replace, secretBox, seg, showNotice, table, time } from '../lib.js';

/** Token rows with a Revoke button; `onRevoked` reloads the list. */
export function tokenRows(tokens, onRevoked) {
  return tokens.map((t) => ({
    attrs: { 'data-testid': 'token-row', 'data-id': t.id, 'data-name': t.name ?? '', 'data-user': t.user ?? '' },
    cells: [
      t.name ?? '',
      badge(t.kind ?? 'personal'),
      t.user ?? '',
      time(t.created),
      time(t.expires, 'never'),
      button('Revoke', { class: 'danger', 'data-testid': 'revoke-token' }, async () => {
        await api('DELETE', `/tokens/${seg(t.id)}`);
        showNotice(`Token ${t.name ?? t.id} revoked.`);
        await onRevoked();
      }),
    ],
  }));
}

export const TOKEN_COLUMNS = ['Name', 'Kind', 'User', 'Created', 'Expires', ''];

export async function sessionsPage() {
  const sessions = live({ 'data-testid': 'sessions' }, async (reload) => {
    const list = listOf(await api('GET', '/sessions'), 'sessions');
    if (!list.length) return empty('No open session.');
    return table(
      'sessions-table',
      ['Session', 'Started', 'Last seen', 'Expires', ''],
      list.map((s) => ({
        attrs: { 'data-testid': 'session-row', 'data-id': s.id, 'data-current': s.current ? 'true' : 'false' },
        cells: [
          s.current ? badge('this browser', 'ok') : h('code', { title: s.id }, String(s.id).slice(0, 8)),
          time(s.created),
          time(s.lastSeen),
          time(s.expires),
          s.current
            ? confirmButton('Revoke', { class: 'danger', 'data-testid': 'revoke-session' }, 'This signs you out here.', async () => {
                await api('DELETE', `/sessions/${seg(s.id)}`);
                location.href = '/.gatehouse/login?return=' + encodeURIComponent(location.origin + '/');
              })
            : button('Revoke', { class: 'danger', 'data-testid': 'revoke-session' }, async () => {
                await api('DELETE', `/sessions/${seg(s.id)}`);
                showNotice('Session revoked: that browser is signed out.');
                await reload();
              }),
        ],
      })),
    );
  });

  const tokens = live({ 'data-testid': 'tokens' }, async (reload) => {
    const list = listOf(await api('GET', '/tokens'), 'tokens');
    return list.length ? table('tokens-table', TOKEN_COLUMNS, tokenRows(list, reload)) : empty('No token.');
  });

  const secret = h('div', { 'aria-live': 'polite' });
  const create = form(
    { 'data-testid': 'token-form', class: 'form' },
    [
      h('h3', {}, 'New personal token'),
      h(
        'div',
        { class: 'row' },
        field('Name', { name: 'name', required: true, maxlength: '100', placeholder: 'laptop scripts', 'data-testid': 'token-name' }),
        field('Valid for', { name: 'ttl', required: true, value: '30d', pattern: DURATION_PATTERN, 'data-testid': 'token-ttl' }, { hint: 'e.g. 12h, 30d' }),
      ),
      h('div', { class: 'actions' }, h('button', { type: 'submit', 'data-testid': 'token-submit' }, 'Create token')),
    ],
    async (v, el) => {
      const answer = await api('POST', '/tokens', { name: v.name, ttl: v.ttl });
      replace(secret, secretBox(answer.token, `Token “${answer.record?.name ?? v.name}”`));
      el.reset();
      await tokens.reload();
    },
  );

  await Promise.all([sessions.reload(), tokens.reload()]);
  return page(
    'page-sessions',
    'Sessions and tokens',
    h('section', { class: 'card', 'data-testid': 'sessions-section' }, h('h2', {}, 'My sessions'), h('p', { class: 'muted' }, 'Each browser signed in as you. Revoking one signs it out of every site at once.'), sessions.el),
    h(
      'section',
      { class: 'card', id: 'tokens', 'data-testid': 'tokens-section' },
      h('h2', {}, 'My tokens'),
      h('p', { class: 'muted' }, 'For scripts and the CLI: send ', h('code', {}, 'Authorization: Bearer gh_…'), '.'),
      tokens.el,
      create,
      secret,
    ),
  );
}
