// Roles (/roles) and one role (/roles/NAME): members with expiry; its admins and root add and remove members,
// root adds and removes role admins.
import {
  DURATION_PATTERN,
  api,
  badge,
  button,
  empty,
  field,
  form,
  h,
  listOf,
  live,
  localToIso,
  page,
  personOf,
  section,
  seg,
  showNotice,
  table,
  time,
} from '../lib.js';

function codes(list) {
  return (list ?? []).length ? h('span', { class: 'codes' }, list.map((g, i) => [i ? ', ' : '', h('code', {}, g)])) : h('span', { class: 'muted' }, '—');
}

function people(list) {
  const ps = (list ?? []).map(personOf);
  return ps.length ? ps.map((p, i) => [i ? ', ' : '', p.user]) : h('span', { class: 'muted' }, '—');
}

function mine(role) {
  return [role.held ? badge('I hold it', 'ok') : null, role.held && role.manage ? ' ' : null, role.manage ? badge('I manage it') : null];
}

export async function rolesPage() {
  const roles = listOf(await api('GET', '/roles'), 'roles');
  return page(
    'page-roles',
    'Roles',
    h('p', { class: 'lead' }, 'A role grants routes (or some permissions of a route) to its members. Its admins add and remove members.'),
    roles.length
      ? table(
          'roles-table',
          ['Role', 'Description', 'Grants', 'Admins', 'Me'],
          roles.map((r) => ({
            attrs: { 'data-testid': 'role-row', 'data-role': r.name, 'data-held': r.held ? 'true' : 'false', 'data-manage': r.manage ? 'true' : 'false' },
            cells: [h('a', { href: `/roles/${seg(r.name)}` }, r.name), r.description ?? '', codes(r.grants), people(r.admins), mine(r)],
          })),
        )
      : empty('No role is configured.'),
  );
}

export async function rolePage(ctx) {
  const name = ctx.params.name;
  const roles = listOf(await api('GET', '/roles'), 'roles');
  const role = roles.find((r) => r.name === name);
  if (!role) {
    return page('page-role-missing', 'No such role', h('p', {}, `There is no role “${name}”. `, h('a', { href: '/roles' }, 'All roles')));
  }
  const root = ctx.me.admin?.root === true;
  const manage = role.manage === true || root;

  const members = live({ 'data-testid': 'members' }, async (reload) => {
    const list = listOf(await api('GET', `/roles/${seg(name)}/members`), 'members');
    if (!list.length) return empty('No members.');
    const columns = ['Member', 'Until', 'Added', 'Added by', 'Source'];
    if (manage) columns.push('');
    return table(
      'members-table',
      columns,
      list.map((m) => {
        const config = m.source === 'config';
        const cells = [m.user, time(m.expires, 'no end'), time(m.added), m.addedBy ?? '', config ? badge('configuration', 'config') : h('span', { class: 'muted' }, 'dashboard')];
        if (manage) {
          cells.push(
            config
              ? ''
              : button('Remove', { class: 'danger', 'data-testid': 'remove-member', 'aria-label': `Remove ${m.user} from ${name}` }, async () => {
                  await api('DELETE', `/roles/${seg(name)}/members/${seg(m.user)}`);
                  showNotice(`${m.user} removed from ${name}.`);
                  await reload();
                  if (m.user === ctx.me.email) await ctx.reloadMe();
                }),
          );
        }
        return { attrs: { 'data-testid': 'member-row', 'data-user': m.user, 'data-source': m.source ?? 'store', 'data-expires': m.expires ?? '' }, cells };
      }),
    );
  });

  const addMember = manage
    ? form(
        { 'data-testid': 'add-member-form', class: 'form' },
        [
          h('h3', {}, 'Add a member'),
          h(
            'div',
            { class: 'row' },
            field('Email', { name: 'email', type: 'email', required: true, autocomplete: 'off', placeholder: 'bob@example.com', 'data-testid': 'member-email' }),
            field('For (optional)', { name: 'duration', placeholder: '7d', pattern: DURATION_PATTERN, 'data-testid': 'member-duration' }, { hint: 'e.g. 8h or 7d' }),
            field('Or until (optional)', { name: 'expires', type: 'datetime-local', 'data-testid': 'member-expires' }, { hint: 'your local time' }),
          ),
          h('p', { class: 'hint' }, 'Leave both empty for a membership without end.'),
          h('div', { class: 'actions' }, h('button', { type: 'submit', 'data-testid': 'add-member' }, 'Add member')),
        ],
        async (v, el) => {
          if (v.duration && v.expires) throw new Error('Give a duration or an end time, not both.');
          const body = {};
          if (v.duration) body.duration = v.duration;
          const expires = localToIso(v.expires);
          if (expires) body.expires = expires;
          const email = v.email.toLowerCase();
          await api('PUT', `/roles/${seg(name)}/members/${seg(email)}`, body);
          showNotice(`${email} added to ${name}.`);
          el.reset();
          await members.reload();
          if (email === ctx.me.email) await ctx.reloadMe();
        },
      )
    : null;

  const adminsPart = live({ 'data-testid': 'role-admins' }, async (reload) => {
    const fresh = listOf(await api('GET', '/roles'), 'roles').find((r) => r.name === name) ?? role;
    const admins = (fresh.admins ?? []).map(personOf);
    const list = admins.length
      ? h(
          'ul',
          { class: 'people' },
          admins.map((a) =>
            h(
              'li',
              { 'data-testid': 'admin-row', 'data-user': a.user, 'data-source': a.source ?? '' },
              h('span', {}, a.user),
              a.source === 'config' ? [' ', badge('configuration', 'config')] : null,
              root && a.source !== 'config'
                ? [
                    ' ',
                    button('Remove', { class: 'danger small', 'data-testid': 'remove-admin', 'aria-label': `Remove ${a.user} as admin of ${name}` }, async () => {
                      await api('DELETE', `/roles/${seg(name)}/admins/${seg(a.user)}`);
                      showNotice(`${a.user} no longer manages ${name}.`);
                      await reload();
                    }),
                  ]
                : null,
            ),
          ),
        )
      : empty('No admins: only root administrators manage it.');
    const add = root
      ? form(
          { 'data-testid': 'add-admin-form', class: 'form' },
          [
            h('div', { class: 'row' }, field('New admin’s email', { name: 'email', type: 'email', required: true, autocomplete: 'off', 'data-testid': 'admin-email' })),
            h('div', { class: 'actions' }, h('button', { type: 'submit', 'data-testid': 'add-admin' }, 'Add admin')),
          ],
          async (v) => {
            const email = v.email.toLowerCase();
            await api('PUT', `/roles/${seg(name)}/admins/${seg(email)}`, {});
            showNotice(`${email} now manages ${name}.`);
            await reload();
          },
        )
      : null;
    return [list, add];
  });

  await Promise.all([members.reload(), adminsPart.reload()]);
  const el = page(
    'page-role',
    `Role ${name}`,
    h(
      'dl',
      { class: 'facts card', 'data-testid': 'role-facts' },
      h('dt', {}, 'Description'),
      h('dd', {}, role.description || h('span', { class: 'muted' }, '—')),
      h('dt', {}, 'Grants'),
      h('dd', {}, codes(role.grants)),
      h('dt', {}, 'IdP groups'),
      h('dd', {}, codes(role.groups)),
      h('dt', {}, 'Me'),
      h('dd', {}, role.held || role.manage ? mine(role) : h('span', { class: 'muted' }, 'not a member'), ' ', !role.held ? h('a', { href: `/request-access?role=${seg(name)}`, 'data-testid': 'request-this-role' }, 'Ask for it') : null),
    ),
    section('members-section', 'Members', members.el, addMember),
    section('admins-section', 'Admins', adminsPart.el),
  );
  el.dataset.role = name;
  return el;
}
