// The dashboard: a small single-page app on the auth host. The server answers every page path with index.html;
// this module routes on the client (history.pushState), keeps the nav in step with `GET /me`, and renders pages.
import { api, clearMessages, h, page, replace, showError } from './lib.js';
import { accessPage, requestAccessPage } from './pages/access.js';
import { sessionsPage } from './pages/sessions.js';
import { devicesPage } from './pages/devices.js';
import { requestsPage } from './pages/requests.js';
import { rolePage, rolesPage } from './pages/roles.js';
import { usersPage } from './pages/users.js';
import { serviceAccountsPage } from './pages/service-accounts.js';
import { connectorsPage } from './pages/connectors.js';
import { auditPage } from './pages/audit.js';
import { explainPage } from './pages/explain.js';

const ROUTES = [
  { pattern: /^\/(?:access)?$/, render: accessPage, nav: '/' },
  { pattern: /^\/request-access$/, render: requestAccessPage, nav: '/' },
  { pattern: /^\/sessions$/, render: sessionsPage, nav: '/sessions' },
  { pattern: /^\/devices$/, render: devicesPage, nav: '/devices' },
  { pattern: /^\/requests$/, render: requestsPage, nav: '/requests' },
  { pattern: /^\/roles$/, render: rolesPage, nav: '/roles' },
  { pattern: /^\/roles\/([a-z0-9-]+)$/, render: rolePage, nav: '/roles', params: ['name'] },
  { pattern: /^\/users$/, render: usersPage, nav: '/users' },
  { pattern: /^\/service-accounts$/, render: serviceAccountsPage, nav: '/service-accounts' },
  { pattern: /^\/connectors$/, render: connectorsPage, nav: '/connectors' },
  { pattern: /^\/audit$/, render: auditPage, nav: '/audit' },
  { pattern: /^\/explain$/, render: explainPage, nav: '/explain' },
];

function match(pathname) {
  for (const r of ROUTES) {
    const m = r.pattern.exec(pathname);
    if (m) return { route: r, params: Object.fromEntries((r.params ?? []).map((name, i) => [name, decodeURIComponent(m[i + 1])])) };
  }
  return undefined;
}

let me;
let seq = 0;

/** Loads `GET /me` again (after a change to my roles) and redraws the nav. */
async function reloadMe() {
  me = await api('GET', '/me');
  drawNav();
  return me;
}

function drawNav() {
  const nav = document.getElementById('nav');
  if (!nav || !me) return;
  const root = me.admin?.root === true;
  const roleAdmin = root || (me.admin?.roles ?? []).length > 0;
  const items = [
    ['/', 'My access', 'nav-access', true],
    ['/requests', 'Requests', 'nav-requests', roleAdmin],
    ['/roles', 'Roles', 'nav-roles', true],
    ['/sessions', 'Sessions & tokens', 'nav-sessions', true],
    ['/devices', 'Devices', 'nav-devices', true],
    ['/users', 'Users', 'nav-users', root],
    ['/service-accounts', 'Service accounts', 'nav-service-accounts', root],
    ['/connectors', 'Connectors', 'nav-connectors', root],
    ['/audit', 'Audit', 'nav-audit', root],
    ['/explain', 'Explain', 'nav-explain', true],
  ];
  const current = match(location.pathname)?.route.nav;
  replace(
    nav,
    h('a', { href: '/', class: 'brand' }, 'Gatehouse'),
    h(
      'ul',
      { class: 'nav-links' },
      items.filter(([, , , show]) => show).map(([href, label, testid]) => h('li', {}, h('a', { href, 'data-testid': testid, 'aria-current': href === current ? 'page' : null }, label))),
    ),
    h(
      'div',
      { class: 'nav-user' },
      h('span', { 'data-testid': 'nav-user', title: me.email }, me.email),
      root ? h('span', { class: 'badge badge-root', 'data-testid': 'nav-root' }, 'root') : null,
      h('a', { href: '/.gatehouse/logout', 'data-testid': 'sign-out' }, 'Sign out'),
    ),
  );
}

/** Draws the page for the current location. `keepMessages` on a refresh after an action (its notice stays). */
async function render({ focus = false, keepMessages = false } = {}) {
  const mine = ++seq;
  const main = document.getElementById('main');
  if (!keepMessages) clearMessages();
  drawNav();
  const found = match(location.pathname);
  main.setAttribute('aria-busy', 'true');
  let node;
  try {
    if (!me) await reloadMe();
    if (!found) {
      node = page('page-not-found', 'Not found', h('p', {}, 'There is no such page. ', h('a', { href: '/' }, 'Back to my access')));
    } else {
      const ctx = {
        me,
        params: found.params,
        query: new URLSearchParams(location.search),
        navigate,
        refresh: () => render({ focus: false, keepMessages: true }),
        reloadMe,
      };
      node = await found.route.render(ctx);
    }
  } catch (err) {
    if (mine !== seq) return;
    showError(err);
    node = page('page-error', 'This page could not be loaded', h('p', {}, 'The error is shown above. ', h('a', { href: location.pathname + location.search }, 'Try again')));
  }
  if (mine !== seq) return; // a newer navigation won
  replace(main, node);
  main.removeAttribute('aria-busy');
  drawNav();
  const anchor = location.hash ? document.getElementById(decodeURIComponent(location.hash.slice(1))) : null;
  if (anchor) anchor.scrollIntoView();
  else if (focus) main.querySelector('h1')?.focus();
}

function navigate(href, { replace: replaceEntry = false } = {}) {
  const url = new URL(href, location.href);
  if (replaceEntry) history.replaceState(null, '', url.pathname + url.search + url.hash);
  else history.pushState(null, '', url.pathname + url.search + url.hash);
  window.scrollTo(0, 0);
  return render({ focus: true });
}

/** Same-origin links to app pages are handled here; anything else (sign-out, downloads, new tabs) is left alone. */
function onClick(event) {
  if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const a = event.target instanceof Element ? event.target.closest('a[href]') : null;
  if (!a || a.hasAttribute('download') || (a.target && a.target !== '_self')) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || !match(url.pathname)) return;
  if (url.hash && url.pathname === location.pathname && url.search === location.search) return; // in-page anchor
  event.preventDefault();
  if (url.pathname === location.pathname && url.search === location.search) {
    render({ focus: true });
    return;
  }
  navigate(url.href);
}

document.addEventListener('click', onClick);
window.addEventListener('popstate', () => render());
render().catch(showError);
