// Service accounts (/service-accounts, root): NAME@service.gatehouse identities that hold roles like users.
// Create, list, issue a token (shown once), revoke their tokens, delete.
import { DURATION_PATTERN, api, confirmButton, empty, field, form, h, listOf, live, page, replace, secretBox, section, seg, showNotice, table, time } from '../lib.js';
import { TOKEN_COLUMNS, tokenRows } from './sessions.js';

const SERVICE_DOMAIN = '@service.gatehouse';

export async function serviceAccountsPage() {
  const secret = h('div', { 'aria-live': 'polite', 'data-testid': 'service-token-region' });

  const tokens = live({ 'data-testid': 'service-tokens' }, async (reload) => {
    const list = listOf(await api('GET', '/tokens?all=true'), 'tokens').filter((t) => String(t.user ?? '').endsWith(SERVICE_DOMAIN));
    return list.length ? table('service-tokens-table', TOKEN_COLUMNS, tokenRows(list, reload)) : empty('No service-account token.');
  });

  const issueForm = (account) =>
    form(
      { 'data-testid': 'issue-token-form', class: 'form inline-form', 'data-name': account.name },
      [
        field('Token name', { name: 'name', required: true, maxlength: '100', value: 'ci', 'data-testid': 'sa-token-name' }),
        field('Valid for', { name: 'ttl', required: true, value: '90d', pattern: DURATION_PATTERN, 'data-testid': 'sa-token-ttl' }),
        h('div', { class: 'actions' }, h('button', { type: 'submit', 'data-testid': 'sa-token-submit' }, 'Issue')),
      ],
      async (v, el) => {
        const answer = await api('POST', '/tokens', { name: v.name, ttl: v.ttl, account: account.name });
        replace(secret, secretBox(answer.token, `Token “${v.name}” for ${account.identity ?? account.name + SERVICE_DOMAIN}`));
        el.remove();
        await tokens.reload();
        secret.scrollIntoView({ block: 'nearest' });
      },
    );

  const accounts = live({ 'data-testid': 'service-accounts' }, async (reload) => {
    const list = listOf(await api('GET', '/service-accounts'), 'serviceAccounts');
    if (!list.length) return empty('No service account.');
    return table(
      'service-accounts-table',
      ['Name', 'Identity', 'Description', 'Roles', 'Created', 'Created by', ''],
      list.map((a) => {
        const slot = h('div', { class: 'issue-slot' });
        const issue = h('button', { type: 'button', class: 'secondary', 'data-testid': 'issue-token' }, 'Issue token');
        issue.addEventListener('click', () => {
          if (slot.firstChild) {
            slot.replaceChildren();
            return;
          }
          replace(slot, issueForm(a));
          slot.querySelector('input')?.focus();
        });
        return {
          attrs: { 'data-testid': 'service-account-row', 'data-name': a.name },
          cells: [
            a.name,
            h('code', {}, a.identity ?? `${a.name}${SERVICE_DOMAIN}`),
            a.description ?? '',
            (a.roles ?? []).length ? a.roles.map((r, i) => [i ? ', ' : '', h('a', { href: `/roles/${seg(r)}` }, r)]) : h('span', { class: 'muted' }, '—'),
            time(a.created),
            a.createdBy ?? '',
            h(
              'div',
              { class: 'row-actions' },
              issue,
              ' ',
              confirmButton('Delete', { class: 'danger', 'data-testid': 'delete-service-account' }, `Delete ${a.name} and revoke its tokens?`, async () => {
                await api('DELETE', `/service-accounts/${seg(a.name)}`);
                showNotice(`Service account ${a.name} deleted.`);
                await Promise.all([reload(), tokens.reload()]);
              }),
              slot,
            ),
          ],
        };
      }),
    );
  });

  const create = form(
    { 'data-testid': 'service-account-form', class: 'form' },
    [
      h('h3', {}, 'New service account'),
      h(
        'div',
        { class: 'row' },
        field('Name', { name: 'name', required: true, pattern: '[a-z0-9](?:[a-z0-9\\-]{0,62}[a-z0-9])?', placeholder: 'deployer', 'data-testid': 'sa-name' }, {
          hint: 'lower-case letters, digits and -',
        }),
        field('Description (optional)', { name: 'description', maxlength: '200', 'data-testid': 'sa-description' }),
      ),
      h('div', { class: 'actions' }, h('button', { type: 'submit', 'data-testid': 'sa-create' }, 'Create')),
    ],
    async (v, el) => {
      const body = { name: v.name };
      if (v.description) body.description = v.description;
      await api('POST', '/service-accounts', body);
      showNotice(`Service account ${v.name} created: give it roles on a role’s page (member ${v.name}${SERVICE_DOMAIN}).`);
      el.reset();
      await accounts.reload();
    },
  );

  await Promise.all([accounts.reload(), tokens.reload()]);
  return page(
    'page-service-accounts',
    'Service accounts',
    h('p', { class: 'lead' }, 'Identities for scripts and CI: ', h('code', {}, `NAME${SERVICE_DOMAIN}`), '. Add them to roles like users; they reach routes with their tokens.'),
    section('service-accounts-section', 'Accounts', accounts.el, create),
    secret,
    section('service-tokens-section', 'Their tokens', tokens.el),
  );
}
