// The dashboard's toolkit: DOM building (text only, never HTML), the one API helper, alerts, and formatting.

// ------------------------------------------------------------------------------------------------ DOM

const SAFE_URL = /^(?:https?:\/\/|\/(?!\/)|\?|#)/i;

/**
 * Builds an element. `attrs`: `on…` functions become listeners, `class` the class name, `value`/`checked`/
 * `selected`/`disabled`-style booleans are set as attributes (true → present, false/null/undefined → absent),
 * everything else is an attribute. `href`/`src` only accept http(s), same-origin paths, queries and fragments.
 * Children: nodes, strings (as text), numbers, arrays of those; null/undefined/false are skipped.
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) {
      if (typeof value !== 'function') throw new TypeError(`${key} must be a function`);
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === 'style') {
      throw new TypeError('no style attributes: the Content-Security-Policy forbids them');
    } else if (key === 'class') {
      el.className = Array.isArray(value) ? value.filter(Boolean).join(' ') : String(value);
    } else if (key === 'value') {
      if ('defaultValue' in el) el.defaultValue = String(value); // a form reset comes back to it
      el.value = String(value);
    } else if ((key === 'href' || key === 'src' || key === 'action') && !SAFE_URL.test(String(value))) {
      continue;
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (typeof c === 'string' || typeof c === 'number') el.append(document.createTextNode(String(c)));
    else el.append(c);
  }
}

/** Replaces an element's children. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// ------------------------------------------------------------------------------------------------ the API

export class ApiError extends Error {
  constructor(status, error) {
    super(error?.message ?? `the server answered ${status}`);
    this.name = 'ApiError';
    this.status = status;
    this.code = error?.code ?? `HTTP_${status}`;
    this.requestId = error?.requestId;
  }
}

/** Sends the browser to sign in and back here; never resolves (the page is going away). */
export function signIn() {
  location.href = '/.gatehouse/login?return=' + encodeURIComponent(location.href);
  return new Promise(() => {});
}

async function call(method, path, body, accept) {
  const init = {
    method,
    credentials: 'same-origin',
    headers: { 'content-type': 'application/json', accept },
  };
  if (body !== undefined) init.body = JSON.stringify(body);
  let res;
  try {
    res = await fetch('/api/v1' + path, init);
  } catch (err) {
    throw new ApiError(0, { code: 'NETWORK', message: `Gatehouse could not be reached (${err.message})` });
  }
  if (res.status === 401) return signIn();
  if (!res.ok) {
    let error;
    try {
      error = (await res.json()).error;
    } catch {
      error = undefined;
    }
    throw new ApiError(res.status, error);
  }
  return res;
}

/** One call to the JSON API: the parsed answer, null for 204; an `ApiError` for an error answer; 401 → sign in. */
export async function api(method, path, body) {
  const res = await call(method, path, body, 'application/json');
  if (res.status === 204) return null;
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

/** The same call asking for JSON lines: the answer as a Blob. */
export async function apiLines(path) {
  const res = await call('GET', path, undefined, 'application/x-ndjson');
  return res.blob();
}

/** Paths are built from data: each segment is encoded. */
export function seg(s) {
  return encodeURIComponent(String(s));
}

// ------------------------------------------------------------------------------------------------ alerts

/** The alert and status regions stay in the page (empty when there is nothing to say) so screen readers announce changes. */
function region(id) {
  return document.getElementById(id);
}

/** Shows an error in the alert region: message, code and request id. */
export function showError(err) {
  const box = region('alert');
  if (!box) return;
  const code = err instanceof ApiError ? err.code : 'ERROR';
  replace(
    box,
    h('p', { class: 'alert-message', 'data-testid': 'alert-message' }, err?.message ?? String(err)),
    h(
      'p',
      { class: 'meta' },
      h('code', { 'data-testid': 'alert-code' }, code),
      err instanceof ApiError && err.requestId ? [' · request ', h('code', {}, err.requestId)] : null,
    ),
    h('button', { type: 'button', class: 'link', 'data-testid': 'alert-dismiss', onclick: clearMessages }, 'Dismiss'),
  );
  box.dataset.code = code;
}

/** Shows a short success message in the status region. */
export function showNotice(text) {
  const box = region('notice');
  if (!box) return;
  replace(box, h('p', {}, text));
}

export function clearMessages() {
  for (const id of ['alert', 'notice']) {
    const box = region(id);
    if (!box) continue;
    box.replaceChildren();
    delete box.dataset.code;
  }
}

// ------------------------------------------------------------------------------------------------ formatting

/** What the `pattern` attribute of a duration field accepts: `90m`, `8h`, `7d`, `1h30m` (as the API does). */
export const DURATION_PATTERN = '(?:\\d+(?:\\.\\d+)?(?:ms|s|m|h|d))+';

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

/** A `<time>` in local, readable form with the ISO value in `datetime` and `title`; a dash when absent. */
export function time(value, empty = '—') {
  if (value === undefined || value === null || value === '') return h('span', { class: 'muted' }, empty);
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) return h('span', {}, String(value));
  const iso = d.toISOString();
  return h('time', { datetime: iso, title: iso }, dateTime.format(d));
}

/** A duration: strings (`8h`) as they are, milliseconds as `2d 3h`. */
export function duration(value, empty = '—') {
  if (value === undefined || value === null || value === '') return empty;
  if (typeof value !== 'number') return String(value);
  const units = [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]];
  const parts = [];
  let rest = value;
  for (const [u, ms] of units) {
    const n = Math.floor(rest / ms);
    if (n > 0) parts.push(`${n}${u}`);
    rest -= n * ms;
    if (parts.length === 2) break;
  }
  return parts.join(' ') || '0s';
}

/** A user entry that may be an email or `{user|email, source}`. */
export function personOf(entry) {
  if (typeof entry === 'string') return { user: entry, source: undefined };
  return { user: entry?.user ?? entry?.email ?? '', source: entry?.source };
}

// ------------------------------------------------------------------------------------------------ building blocks

/** A page: its heading (focused after navigation) and content, with `data-testid`. */
export function page(testid, title, ...content) {
  document.title = `${title} · Gatehouse`;
  return h('section', { class: 'page', 'data-testid': testid }, h('h1', { tabindex: '-1' }, title), ...content);
}

export function section(testid, title, ...content) {
  return h('section', { class: 'card', 'data-testid': testid }, h('h2', {}, title), ...content);
}

export function badge(text, kind = '') {
  return h('span', { class: ['badge', kind && `badge-${kind}`] }, text);
}

export function empty(text) {
  return h('p', { class: 'empty muted', 'data-testid': 'empty' }, text);
}

/**
 * A table that becomes stacked cards on narrow screens. `columns`: header labels; `rows`: arrays of cells
 * with `attrs` for the row (data-testid, data-…).
 */
export function table(testid, columns, rows) {
  return h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      { class: 'stack', 'data-testid': testid },
      h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col' }, c)))),
      h(
        'tbody',
        {},
        rows.map((r) => h('tr', r.attrs, r.cells.map((cell, i) => h('td', { 'data-label': columns[i] ?? '' }, h('div', { class: 'cell' }, cell))))),
      ),
    ),
  );
}

let fieldIds = 0;

/** A labelled input (or `textarea`/`select` via `control`). */
export function field(label, attrs = {}, { control = 'input', hint, options } = {}) {
  const id = `f${++fieldIds}`;
  const kids = control === 'select' ? (options ?? []).map((o) => h('option', { value: o.value, selected: o.selected }, o.label ?? o.value)) : [];
  return h(
    'div',
    { class: 'field' },
    h('label', { for: id }, label),
    h(control, { id, 'aria-describedby': hint ? `${id}-hint` : null, ...attrs }, ...kids),
    hint ? h('small', { class: 'hint', id: `${id}-hint` }, hint) : null,
  );
}

/**
 * A form whose submit runs `action(values)` with the submit buttons disabled meanwhile; errors go to the alert
 * region. `values` holds the trimmed form fields by name.
 */
export function form(attrs, children, action) {
  const el = h('form', attrs, ...children);
  el.addEventListener('submit', async (event) => {
    event.preventDefault();
    const values = {};
    for (const [k, v] of new FormData(el)) values[k] = typeof v === 'string' ? v.trim() : v;
    await busy(el, () => action(values, el));
  });
  return el;
}

/** Runs `work` with the container's buttons disabled; shows an error in the alert region. */
export async function busy(container, work) {
  const buttons = [...container.querySelectorAll('button')];
  for (const b of buttons) b.disabled = true;
  container.setAttribute('aria-busy', 'true');
  try {
    await work();
  } catch (err) {
    showError(err);
  } finally {
    container.removeAttribute('aria-busy');
    for (const b of buttons) b.disabled = false;
  }
}

/** A button that runs `action` (buttons disabled meanwhile, errors shown). */
export function button(label, attrs, action) {
  const b = h('button', { type: 'button', ...attrs }, label);
  b.addEventListener('click', () => busy(b.parentElement ?? b, action));
  return b;
}

/**
 * A destructive action with a confirm step: the first click shows "Confirm" and "Cancel" (data-testid `confirm`
 * and `cancel`) in its place.
 */
export function confirmButton(label, attrs, question, action) {
  const holder = h('span', { class: 'confirm' });
  const first = h('button', { type: 'button', ...attrs }, label);
  const reset = () => replace(holder, first);
  first.addEventListener('click', () => {
    const yes = h('button', { type: 'button', class: 'danger', 'data-testid': 'confirm' }, `Confirm: ${label.toLowerCase()}`);
    const no = h('button', { type: 'button', class: 'secondary', 'data-testid': 'cancel', onclick: reset }, 'Cancel');
    yes.addEventListener('click', () => busy(holder, action));
    replace(holder, h('span', { class: 'question' }, question, ' '), yes, ' ', no);
    yes.focus();
  });
  return replace(holder, first);
}

/** Shows a secret once, with a copy button. */
export function secretBox(secret, what) {
  const input = h('input', { type: 'text', readonly: true, value: secret, 'aria-label': what, 'data-testid': 'token-secret-value', class: 'secret' });
  const copied = h('span', { class: 'hint', 'aria-live': 'polite' });
  const copy = h('button', { type: 'button', class: 'secondary', 'data-testid': 'copy-secret' }, 'Copy');
  copy.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(secret);
      copied.textContent = 'Copied.';
    } catch {
      input.select();
      copied.textContent = 'Selected: press Ctrl+C (⌘C) to copy.';
    }
  });
  return h(
    'div',
    { class: 'secret-box', 'data-testid': 'token-secret' },
    h('p', {}, h('strong', {}, `${what}: copy it now.`), ' It is shown only once; Gatehouse keeps only a hash of it.'),
    h('div', { class: 'row' }, input, copy),
    copied,
  );
}

/** Values of a list answer that may come under one of a few names. */
export function listOf(data, ...names) {
  if (Array.isArray(data)) return data;
  for (const n of names) if (Array.isArray(data?.[n])) return data[n];
  return [];
}

/** The ISO time of a `datetime-local` value (local time), or undefined when empty. */
export function localToIso(value) {
  if (!value) return undefined;
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? undefined : d.toISOString();
}

/**
 * A part of a page that loads its own data and can load it again after a change without redrawing the page
 * (a secret shown once beside it stays). `build(reload)` returns the content.
 */
export function live(attrs, build) {
  const el = h('div', attrs);
  const reload = async () => {
    replace(el, await build(reload));
  };
  return { el, reload };
}
