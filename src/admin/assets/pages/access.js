// "My access" (/) and "Request access" (/request-access?route=NAME, linked from Gatehouse's 403 page).
import { DURATION_PATTERN, api, badge, duration, empty, field, form, h, listOf, page, replace, section, seg, showNotice, table, time } from '../lib.js';

/** A route from `GET /me` (`RouteAccess`): `{name, host, url, auth, access: full|partial, rule?, permissions?}`. */
function routeOf(r) {
  if (typeof r === 'string') return { name: r, permissions: [], partial: false };
  const permissions = (r.permissions ?? []).map((p) => (typeof p === 'string' ? p : p?.name)).filter(Boolean);
  const url = r.url ?? (r.host && !r.host.includes('*') ? `https://${r.host}/` : undefined);
  const partial = r.access !== undefined ? r.access === 'partial' : permissions.length > 0;
  return { name: r.name, host: r.host, url, auth: r.auth, rule: r.rule, permissions, partial };
}

/** An approval for a time whose time has passed. */
function ended(expires) {
  return Date.parse(expires) <= Date.now();
}

function statusBadge(status) {
  return badge(status, status === 'approved' ? 'ok' : status === 'declined' ? 'bad' : 'wait');
}

/** Rows of access requests (mine): role, reason, status, asked, decided. */
export function requestRows(requests) {
  return requests.map((r) => ({
    attrs: { 'data-testid': 'request-row', 'data-id': r.id, 'data-role': r.role, 'data-status': r.status },
    cells: [
      h('a', { href: `/roles/${seg(r.role)}` }, r.role),
      r.reason ?? '',
      duration(r.duration, 'no end'),
      statusBadge(r.status),
      time(r.created),
      r.decidedBy ? [time(r.decidedAt), ' by ', r.decidedBy, r.expires ? [ended(r.expires) ? ' · ended ' : ' · until ', time(r.expires)] : null] : h('span', { class: 'muted' }, 'not yet'),
    ],
  }));
}

export const REQUEST_COLUMNS = ['Role', 'Reason', 'Asked for', 'Status', 'Asked', 'Decided'];

export async function accessPage(ctx) {
  const [me, requests] = await Promise.all([ctx.reloadMe(), api('GET', '/access-requests')]);
  const routes = listOf(me.routes, 'routes').map(routeOf).sort((a, b) => a.name.localeCompare(b.name));
  const managed = me.admin?.roles ?? [];
  const mine = listOf(requests?.mine);
  const toDecide = listOf(requests?.toDecide);
  return page(
    'page-access',
    'My access',
    h('p', { class: 'lead' }, 'Signed in as ', h('strong', { 'data-testid': 'me-email' }, me.email), '.'),
    toDecide.length
      ? h('p', { class: 'callout', 'data-testid': 'to-decide-callout' }, `${toDecide.length} access request${toDecide.length === 1 ? '' : 's'} waiting for you: `, h('a', { href: '/requests' }, 'decide'))
      : null,
    section(
      'my-routes',
      'Sites I can reach',
      routes.length
        ? h(
            'ul',
            { class: 'routes' },
            routes.map((r) =>
              h(
                'li',
                { 'data-testid': 'route-row', 'data-route': r.name, 'data-partial': r.partial ? 'true' : 'false' },
                r.url ? h('a', { href: r.url, rel: 'noopener' }, r.name) : h('span', { class: 'route-name' }, r.name),
                r.host && !r.url ? [' ', h('code', {}, r.host)] : null,
                r.partial
                  ? h('span', { class: 'perms' }, ' — only: ', r.permissions.map((p, i) => [i ? ', ' : '', h('code', { 'data-testid': 'route-permission' }, p)]))
                  : null,
                r.rule ? h('span', { class: 'perms' }, ` — ${r.rule}`) : null,
                r.auth && r.auth !== 'login' ? [' ', badge(r.auth)] : null,
              ),
            ),
          )
        : empty('No site yet. Ask for a role that grants one.'),
      h('p', {}, h('a', { href: '/request-access', 'data-testid': 'request-access-link' }, 'Request access to a role')),
    ),
    section(
      'my-roles',
      'My roles',
      (me.roles ?? []).length
        ? h(
            'ul',
            { class: 'inline-list' },
            me.roles.map((role) => h('li', { 'data-testid': 'my-role', 'data-role': role }, h('a', { href: `/roles/${seg(role)}` }, role))),
          )
        : empty('You hold no role.'),
      managed.length
        ? [
            h('h3', {}, 'Roles I manage'),
            h(
              'ul',
              { class: 'inline-list' },
              managed.map((role) => h('li', { 'data-testid': 'managed-role', 'data-role': role }, h('a', { href: `/roles/${seg(role)}` }, role))),
            ),
          ]
        : null,
    ),
    section(
      'my-requests',
      'My access requests',
      mine.length ? table('my-requests-table', REQUEST_COLUMNS, requestRows(mine)) : empty('You have asked for nothing yet.'),
    ),
    section(
      'my-credentials',
      'Sessions and tokens',
      h(
        'p',
        {},
        h('a', { href: '/sessions', 'data-testid': 'sessions-link' }, 'My sessions'),
        ' · ',
        h('a', { href: '/sessions#tokens', 'data-testid': 'tokens-link' }, 'My tokens'),
      ),
    ),
  );
}

/** The roles that grant a route: `grants` holds `NAME` or `NAME:permission`. */
export function rolesGranting(roles, route) {
  return roles.filter((r) => (r.grants ?? []).some((g) => g === route || g.startsWith(`${route}:`)));
}

export async function requestAccessPage(ctx) {
  const route = ctx.query.get('route') ?? '';
  const [rolesAnswer, requests] = await Promise.all([api('GET', '/roles'), api('GET', '/access-requests')]);
  const all = listOf(rolesAnswer, 'roles');
  const wanted = ctx.query.get('role') ?? '';
  const candidates = route ? rolesGranting(all, route) : wanted ? all.filter((r) => r.name === wanted) : all;
  const result = h('div', { 'data-testid': 'request-result-region', 'aria-live': 'polite' });
  const pending = listOf(requests?.mine).filter((r) => r.status === 'pending' && candidates.some((c) => c.name === r.role));

  const showRequest = (req) =>
    replace(
      result,
      h(
        'div',
        { class: 'card result', 'data-testid': 'request-result', 'data-id': req.id, 'data-status': req.status },
        h('h2', {}, 'Your request'),
        h(
          'dl',
          { class: 'facts' },
          h('dt', {}, 'Role'),
          h('dd', {}, req.role),
          h('dt', {}, 'Status'),
          h('dd', { 'data-testid': 'request-status' }, statusBadge(req.status)),
          h('dt', {}, 'Asked'),
          h('dd', {}, time(req.created)),
          h('dt', {}, 'For'),
          h('dd', {}, duration(req.duration, 'no end')),
        ),
        req.status === 'pending'
          ? h('p', { class: 'muted' }, 'An admin of the role will decide; the answer shows here and on ', h('a', { href: '/' }, 'My access'), '.')
          : null,
        h(
          'button',
          {
            type: 'button',
            class: 'secondary',
            'data-testid': 'request-check',
            onclick: async () => {
              const latest = listOf((await api('GET', '/access-requests'))?.mine).find((r) => r.id === req.id);
              if (latest) showRequest(latest);
            },
          },
          'Check status',
        ),
      ),
    );

  const roleRows = candidates.map((r) => ({
    attrs: { 'data-testid': 'grant-role-row', 'data-role': r.name, 'data-held': r.held ? 'true' : 'false' },
    cells: [
      h('a', { href: `/roles/${seg(r.name)}` }, r.name),
      r.description ?? '',
      h('span', {}, (r.grants ?? []).map((g, i) => [i ? ', ' : '', h('code', {}, g)])),
      r.held ? badge('held', 'ok') : '',
    ],
  }));
  const choosable = candidates.filter((r) => !r.held);

  const requestForm = choosable.length
    ? form(
        { 'data-testid': 'request-form', class: 'card form' },
        [
          h('h2', {}, 'Ask for a role'),
          field('Role', { name: 'role', required: true, 'data-testid': 'request-role' }, {
            control: 'select',
            options: [
              ...(choosable.length > 1 ? [{ value: '', label: 'Choose a role…' }] : []),
              ...choosable.map((r, i) => ({ value: r.name, label: r.description ? `${r.name} — ${r.description}` : r.name, selected: choosable.length === 1 && i === 0 })),
            ],
          }),
          field('Reason', { name: 'reason', required: true, rows: '3', maxlength: '1000', 'data-testid': 'request-reason' }, { control: 'textarea', hint: 'What you need it for; the role’s admins read this.' }),
          field('For how long (optional)', { name: 'duration', placeholder: '8h', pattern: DURATION_PATTERN, 'data-testid': 'request-duration' }, { hint: 'e.g. 8h or 7d; empty: no end' }),
          h('div', { class: 'actions' }, h('button', { type: 'submit', 'data-testid': 'request-submit' }, 'Ask for access')),
        ],
        async (v, el) => {
          const body = { role: v.role, reason: v.reason };
          if (v.duration) body.duration = v.duration;
          const answer = await api('POST', '/access-requests', body);
          showRequest(answer?.request ?? answer);
          el.reset();
          showNotice('Your request was sent.');
        },
      )
    : null;

  if (pending[0]) showRequest(pending[0]);

  return page(
    'page-request-access',
    route ? `Request access to ${route}` : 'Request access',
    route ? h('p', { class: 'lead' }, 'These roles grant ', h('code', { 'data-testid': 'requested-route' }, route), ':') : h('p', { class: 'lead' }, 'Roles you can ask for:'),
    candidates.length
      ? table('grant-roles', ['Role', 'Description', 'Grants', ''], roleRows)
      : h('p', { class: 'callout', 'data-testid': 'no-roles' }, route ? `No role grants ${route}. Ask an administrator.` : 'There are no roles.'),
    candidates.length && !choosable.length ? h('p', { class: 'muted', 'data-testid': 'all-held' }, 'You already hold every role that grants it.') : null,
    requestForm,
    result,
  );
}
