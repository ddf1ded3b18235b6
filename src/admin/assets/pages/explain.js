// Explain (/explain): would this user be let through to this URL, and why. Root asks for anyone; others for themselves.
import { api, field, form, h, page, replace } from '../lib.js';

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'CONNECT'];

function fact(label, value, testid) {
  return value === undefined || value === null || value === '' ? null : [h('dt', {}, label), h('dd', { 'data-testid': testid }, h('code', {}, String(value)))];
}

function verdict(answer) {
  const considered = answer.considered ?? [];
  return h(
    'div',
    { class: ['card', 'result', answer.allow ? 'result-allow' : 'result-deny'], 'data-testid': 'explain-result', 'data-allow': answer.allow ? 'true' : 'false' },
    h('h2', { 'data-testid': 'explain-verdict' }, answer.allow ? '✓ Allowed' : '✗ Denied'),
    h(
      'dl',
      { class: 'facts' },
      fact('Route', answer.route, 'explain-route'),
      fact('Request', answer.method || answer.path ? `${answer.method ?? ''} ${answer.path ?? ''}`.trim() : undefined, 'explain-request'),
      fact('Rule', answer.rule, 'explain-rule'),
      fact('Code', answer.code, 'explain-code'),
      answer.reason ? [h('dt', {}, 'Reason'), h('dd', { 'data-testid': 'explain-reason' }, answer.reason)] : null,
    ),
    considered.length
      ? [
          h('h3', {}, 'Rules considered, in order'),
          h(
            'ol',
            { class: 'considered' },
            considered.map((c) =>
              h(
                'li',
                { 'data-testid': 'considered-rule', 'data-matched': c.matched ? 'true' : 'false', class: c.matched ? 'matched' : 'unmatched' },
                h('span', { class: 'mark', 'aria-hidden': 'true' }, c.matched ? '✓' : '·'),
                h('span', { class: 'visually-hidden' }, c.matched ? 'matched: ' : 'did not match: '),
                h('code', {}, c.rule ?? String(c)),
              ),
            ),
          ),
        ]
      : null,
  );
}

export async function explainPage(ctx) {
  const root = ctx.me.admin?.root === true;
  const result = h('div', { 'aria-live': 'polite', 'data-testid': 'explain-result-region' });
  const explain = form(
    { 'data-testid': 'explain-form', class: 'form card' },
    [
      h(
        'div',
        { class: 'row' },
        root
          ? field('User', { name: 'user', type: 'email', placeholder: ctx.me.email, autocomplete: 'off', value: ctx.query.get('user') ?? '', 'data-testid': 'explain-user' }, { hint: 'empty: yourself' })
          : null,
        field('Method', { name: 'method', 'data-testid': 'explain-method' }, { control: 'select', options: METHODS.map((m) => ({ value: m, selected: m === (ctx.query.get('method') ?? 'GET') })) }),
        field('URL', { name: 'url', type: 'url', required: true, placeholder: 'https://grafana.corp.example.com/d/abc', value: ctx.query.get('url') ?? '', 'data-testid': 'explain-url', class: 'wide' }),
      ),
      h('div', { class: 'actions' }, h('button', { type: 'submit', 'data-testid': 'explain-submit' }, 'Explain')),
    ],
    async (v) => {
      const body = { method: v.method || 'GET', url: v.url };
      if (root && v.user) body.user = v.user.toLowerCase();
      replace(result);
      const answer = await api('POST', '/explain', body);
      replace(result, verdict(answer));
    },
  );
  return page(
    'page-explain',
    'Explain a decision',
    h('p', { class: 'lead' }, root ? 'Would this user be let through to this URL, and why?' : 'Would you be let through to this URL, and why?'),
    explain,
    result,
  );
}
