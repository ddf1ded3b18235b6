// My sessions, open tunnels and tokens (/sessions): revoke or close any; create a personal token (its secret is shown once).
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

/** A byte count for people: 0 B, 12.3 KiB, 4.5 MiB… */
function bytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = Number(n) || 0;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${units[i]}`;
}

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

  const tunnels = live({ 'data-testid': 'tunnels' }, async (reload) => {
    const list = listOf(await api('GET', '/tunnels'), 'tunnels');
    if (!list.length) return empty('No open tunnel.');
    return table(
      'tunnels-table',
      ['Route', 'Destination', 'From', 'Since', 'Sent', 'Received', ''],
      list.map((t) => ({
        attrs: { 'data-testid': 'tunnel-row', 'data-id': t.id, 'data-route': t.route ?? '' },
        cells: [
          t.route ?? '',
          h('code', {}, t.host ?? ''),
          t.client ?? '',
          time(t.since),
          bytes(t.bytesIn),
          bytes(t.bytesOut),
          button('Close', { class: 'danger', 'data-testid': 'close-tunnel' }, async () => {
            await api('DELETE', `/tunnels/${seg(t.id)}`);
            showNotice(`Tunnel to ${t.host ?? t.route} closed.`);
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

  await Promise.all([sessions.reload(), tunnels.reload(), tokens.reload()]);
  return page(
    'page-sessions',
    'Sessions and tokens',
    h('section', { class: 'card', 'data-testid': 'sessions-section' }, h('h2', {}, 'My sessions'), h('p', { class: 'muted' }, 'Each browser signed in as you. Revoking one signs it out of every site at once.'), sessions.el),
    h(
      'section',
      { class: 'card', id: 'tunnels', 'data-testid': 'tunnels-section' },
      h('h2', {}, 'Tunnels'),
      h('p', { class: 'muted' }, 'TCP connections open through ', h('code', {}, 'gatehouse tunnel'), ' (SSH and the like). Closing one ends it at once.'),
      tunnels.el,
    ),
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
