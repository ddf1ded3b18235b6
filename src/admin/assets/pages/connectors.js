// Connectors (/connectors, root): the connectors of the configuration with their live sessions (one per connector
// process and Gatehouse worker), and a one-time enrollment token for each, shown once with the exact
// `gatehouse connect` command line that uses it.
import { api, badge, button, empty, h, listOf, live, page, replace, seg, table, time } from '../lib.js';

/** The token and the command that uses it, shown this once, with copy buttons. */
function enrollmentBox(answer) {
  const copied = h('span', { class: 'hint', 'aria-live': 'polite' });
  const copyButton = (text, testid, input) => {
    const b = h('button', { type: 'button', class: 'secondary', 'data-testid': testid }, 'Copy');
    b.addEventListener('click', async () => {
      try {
        await navigator.clipboard.writeText(text);
        copied.textContent = 'Copied.';
      } catch {
        input.select();
        copied.textContent = 'Selected: press Ctrl+C (⌘C) to copy.';
      }
    });
    return b;
  };
  const command = h('textarea', { readonly: true, rows: '3', class: 'pem', spellcheck: 'false', 'aria-label': 'Command line', 'data-testid': 'enrollment-command', value: answer.command });
  const token = h('input', { type: 'text', readonly: true, class: 'secret', 'aria-label': 'Enrollment token', 'data-testid': 'enrollment-token', value: answer.token });
  return h(
    'div',
    { class: 'secret-box', 'data-testid': 'enrollment' },
    h(
      'p',
      {},
      h('strong', {}, `An enrollment token for ${answer.name}: copy it now.`),
      ' It is shown only once, works once, and expires at ',
      time(answer.expires),
      '; Gatehouse keeps only a hash of it.',
    ),
    h('p', {}, 'Run this beside the backend, with ', h('code', {}, '--to'), ' set to the backend’s address (http://HOST:PORT, https://HOST:PORT or HOST:PORT):'),
    h('div', { class: 'row' }, command, copyButton(answer.command, 'copy-command', command)),
    h('p', { class: 'password-label' }, 'The token alone'),
    h('div', { class: 'row' }, token, copyButton(answer.token, 'copy-token', token)),
    copied,
    h('p', { class: 'hint' }, 'The connector keeps its key and certificate in its --state folder: restart it with the same folder and no token.'),
  );
}

function sessionsOf(c) {
  if (!c.sessions.length) return h('span', { class: 'muted' }, '—');
  return h(
    'ul',
    { class: 'plain', 'data-testid': 'connector-sessions' },
    c.sessions.map((s) =>
      h(
        'li',
        { 'data-testid': 'connector-session', 'data-worker': s.worker },
        h('code', {}, s.address),
        ` → ${s.target}, ${s.instance ? `instance ${s.instance}, ` : ''}worker ${s.worker}, since `,
        time(s.since),
        `, ${s.streams} stream${s.streams === 1 ? '' : 's'}, version ${s.version}`,
      ),
    ),
  );
}

export async function connectorsPage() {
  const result = h('div', { 'aria-live': 'polite' });
  const list = live({ 'data-testid': 'connectors' }, async () => {
    const connectors = listOf(await api('GET', '/connectors'), 'connectors');
    if (!connectors.length) return empty('No connector is configured: add one under connectors: in the configuration file.');
    return table(
      'connectors-table',
      ['Connector', 'State', 'Sessions', ''],
      connectors.map((c) => ({
        attrs: { 'data-testid': 'connector-row', 'data-connector': c.name, 'data-sessions': String(c.sessions.length) },
        cells: [
          h('strong', {}, c.name),
          c.sessions.length ? badge('connected', 'ok') : badge('not connected', 'wait'),
          sessionsOf(c),
          button('Enrollment token', { class: 'secondary', 'data-testid': 'create-enrollment' }, async () => {
            const answer = await api('POST', `/connectors/${seg(c.name)}/enrollment`, {});
            replace(result, enrollmentBox(answer));
            result.querySelector('[data-testid="enrollment-command"]')?.focus();
          }),
        ],
      })),
    );
  });
  await list.reload();
  return page(
    'page-connectors',
    'Connectors',
    h(
      'p',
      { class: 'lead' },
      'A connector runs beside a backend in a private network and dials out to Gatehouse; routes with ',
      h('code', {}, 'to: connector:NAME'),
      ' or ',
      h('code', {}, 'tcp: connector:NAME'),
      ' reach the backend through it. It keeps a session with every Gatehouse worker; several connectors of one name share the load.',
    ),
    h('div', { class: 'actions' }, button('Refresh', { class: 'secondary', 'data-testid': 'refresh-connectors' }, () => list.reload())),
    list.el,
    result,
  );
}
