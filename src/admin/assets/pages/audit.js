// The audit log (/audit, root): newest first, filtered by actor, action, target and time; "Load more" pages on
// with `next` (`?limit=N` sets the page size); the download asks for JSON lines and offers them as a file.
import { api, apiLines, busy, empty, field, form, h, localToIso, page, replace, showNotice, time } from '../lib.js';

const PAGE_SIZE = 50;
const FILTERS = ['actor', 'action', 'target'];

function json(value) {
  return value === undefined || value === null ? null : h('pre', { class: 'json' }, JSON.stringify(value, null, 2));
}

function auditRow(r) {
  const has = (v) => v !== undefined && v !== null;
  const changes = has(r.before) || has(r.after);
  return h(
    'tr',
    { 'data-testid': 'audit-row', 'data-id': r.id ?? '', 'data-action': r.action ?? '', 'data-actor': r.actor ?? '', 'data-target': r.target ?? '' },
    h('td', { 'data-label': 'Time' }, time(r.time)),
    h('td', { 'data-label': 'Actor' }, r.actor ?? ''),
    h('td', { 'data-label': 'Action' }, h('code', {}, r.action ?? '')),
    h('td', { 'data-label': 'Target' }, h('code', { class: 'wrap' }, r.target ?? '')),
    h('td', { 'data-label': 'From' }, r.from ?? h('span', { class: 'muted' }, '—')),
    h(
      'td',
      { 'data-label': 'Change' },
      changes ? h('details', {}, h('summary', {}, 'before / after'), has(r.before) ? [h('h4', {}, 'Before'), json(r.before)] : null, has(r.after) ? [h('h4', {}, 'After'), json(r.after)] : null) : h('span', { class: 'muted' }, '—'),
    ),
  );
}

/** The query string of the filters (`since` as ISO), plus extra parameters. */
function query(filters, extra = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries({ ...filters, ...extra })) if (v) q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : '';
}

export async function auditPage(ctx) {
  // filters live in the page's own query string, so a filtered view can be reloaded and shared
  const filters = {};
  for (const k of [...FILTERS, 'since']) {
    const v = ctx.query.get(k);
    if (v) filters[k] = v;
  }
  const limit = Math.min(500, Math.max(1, Number.parseInt(ctx.query.get('limit') ?? '', 10) || PAGE_SIZE));
  const tbody = h('tbody', {});
  const more = h('div', { class: 'actions' });
  const count = h('p', { class: 'muted', 'data-testid': 'audit-count', 'aria-live': 'polite' });
  let shown = 0;

  const load = async (before) => {
    const answer = await api('GET', `/audit${query(filters, { limit, before })}`);
    const records = answer?.records ?? [];
    for (const r of records) tbody.append(auditRow(r));
    shown += records.length;
    count.textContent = `${shown} record${shown === 1 ? '' : 's'} shown${answer?.next ? '; there are more' : ''}.`;
    replace(
      more,
      answer?.next
        ? h('button', { type: 'button', class: 'secondary', 'data-testid': 'audit-more', onclick: () => busy(more, () => load(answer.next)) }, 'Load more')
        : null,
    );
  };

  const filterForm = form(
    { 'data-testid': 'audit-filters', class: 'form filters' },
    [
      h(
        'div',
        { class: 'row' },
        field('Actor', { name: 'actor', type: 'search', value: filters.actor ?? '', placeholder: 'alice@example.com', 'data-testid': 'audit-actor' }),
        field('Action', { name: 'action', type: 'search', value: filters.action ?? '', placeholder: 'membership.add', 'data-testid': 'audit-action' }),
        field('Target', { name: 'target', type: 'search', value: filters.target ?? '', placeholder: 'membership:sre/bob@example.com', 'data-testid': 'audit-target' }),
        field('Since', { name: 'since', type: 'datetime-local', value: isoToLocal(filters.since), 'data-testid': 'audit-since' }, { hint: 'your local time' }),
      ),
      h(
        'div',
        { class: 'actions' },
        h('button', { type: 'submit', 'data-testid': 'audit-apply' }, 'Filter'),
        Object.keys(filters).length ? h('a', { href: '/audit', class: 'button-link', 'data-testid': 'audit-clear' }, 'Clear filters') : null,
        h('button', { type: 'button', class: 'secondary', 'data-testid': 'audit-download', onclick: (event) => busy(event.currentTarget.parentElement, () => download(filters)) }, 'Download JSON lines'),
      ),
    ],
    async (v) => {
      const next = {};
      for (const k of FILTERS) if (v[k]) next[k] = v[k];
      const since = localToIso(v.since);
      if (since) next.since = since;
      await ctx.navigate(`/audit${query(next)}`);
    },
  );

  await load(undefined);
  return page(
    'page-audit',
    'Audit log',
    filterForm,
    h(
      'div',
      { class: 'table-wrap' },
      h(
        'table',
        { class: 'stack', 'data-testid': 'audit-table' },
        h('thead', {}, h('tr', {}, ['Time', 'Actor', 'Action', 'Target', 'From', 'Change'].map((c) => h('th', { scope: 'col' }, c)))),
        tbody,
      ),
    ),
    tbody.childElementCount ? null : empty('No record matches.'),
    count,
    more,
  );
}

/** Every matching record as JSON lines, saved as a file (a link cannot carry the Accept header). */
async function download(filters) {
  const blob = await apiLines(`/audit${query(filters)}`);
  const url = URL.createObjectURL(blob);
  const a = h('a', { href: '#', download: `gatehouse-audit-${new Date().toISOString().slice(0, 19).replace(/:/g, '')}.jsonl`, class: 'hidden' });
  a.href = url; // a blob: URL made here, not data from the server
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
  showNotice('The audit log was downloaded as JSON lines.');
}

function isoToLocal(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}
