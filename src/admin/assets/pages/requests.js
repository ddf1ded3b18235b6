// Access requests (/requests): the pending ones I may decide (approve, optionally for a time; decline), and mine.
import { DURATION_PATTERN, api, button, duration, empty, h, listOf, live, page, section, seg, showNotice, table, time } from '../lib.js';
import { REQUEST_COLUMNS, requestRows } from './access.js';

let approveIds = 0;

function decideRow(r, reload) {
  const id = `approve-${++approveIds}`;
  const length = h('input', {
    id,
    name: 'duration',
    class: 'narrow',
    placeholder: r.duration ? duration(r.duration) : 'no end',
    pattern: DURATION_PATTERN,
    'aria-label': `Duration for ${r.user} in ${r.role}`,
    'data-testid': 'approve-duration',
  });
  const approve = button('Approve', { class: 'primary', 'data-testid': 'approve' }, async () => {
    if (!length.checkValidity()) {
      length.reportValidity();
      return;
    }
    const body = length.value.trim() ? { duration: length.value.trim() } : {};
    await api('POST', `/access-requests/${seg(r.id)}/approve`, body);
    showNotice(`${r.user} now holds ${r.role}.`);
    await reload();
  });
  const decline = button('Decline', { class: 'danger', 'data-testid': 'decline' }, async () => {
    await api('POST', `/access-requests/${seg(r.id)}/decline`, {});
    showNotice(`Declined ${r.user}’s request for ${r.role}.`);
    await reload();
  });
  return {
    attrs: { 'data-testid': 'decide-row', 'data-id': r.id, 'data-user': r.user, 'data-role': r.role },
    cells: [
      r.user,
      h('a', { href: `/roles/${seg(r.role)}` }, r.role),
      r.reason ?? '',
      duration(r.duration, 'no end'),
      time(r.created),
      h('div', { class: 'row decide' }, length, approve, decline),
    ],
  };
}

export async function requestsPage() {
  const body = live({ 'data-testid': 'requests' }, async (reload) => {
    const answer = await api('GET', '/access-requests');
    const toDecide = listOf(answer?.toDecide);
    const mine = listOf(answer?.mine);
    return [
      section(
        'to-decide',
        'Waiting for my decision',
        toDecide.length
          ? table(
              'to-decide-table',
              ['User', 'Role', 'Reason', 'Asked for', 'Asked', 'Decide'],
              toDecide.map((r) => decideRow(r, reload)),
            )
          : empty('Nothing to decide.'),
        toDecide.length ? h('p', { class: 'hint' }, 'Leave the duration empty to grant what was asked for; enter one (e.g. 8h) to grant less or more.') : null,
      ),
      section('mine', 'My requests', mine.length ? table('my-requests-table', REQUEST_COLUMNS, requestRows(mine)) : empty('You have asked for nothing.')),
    ];
  });
  await body.reload();
  return page('page-requests', 'Access requests', body.el);
}
