// Device certificates (/devices): my certificates (root: everyone's, with their users), each revocable; "Add a
// device" has the internal CA issue one, either with a key made by Gatehouse (a PKCS#12 offered as a download,
// its password shown once) or for a CSR (the certificate offered as a download).
import { api, badge, confirmButton, empty, field, form, h, listOf, live, page, replace, seg, showNotice, table, time } from '../lib.js';

const MAX_DAYS = 825;
const CSR_HINT = 'openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout device.key -out device.csr -subj /CN=device';

/** `valid`, `revoked` or `expired`. */
function statusOf(c) {
  if (c.revoked) return 'revoked';
  if (Date.parse(c.notAfter) <= Date.now()) return 'expired';
  return 'valid';
}

function statusBadge(c, status) {
  if (status === 'valid') return badge('valid', 'ok');
  if (status === 'expired') return badge('expired', 'wait');
  const r = c.revoked;
  const b = badge('revoked', 'bad');
  b.title = `revoked ${r.at} by ${r.by}${r.reason ? `: ${r.reason}` : ''}`;
  return b;
}

/** `gatehouse-DEVICE.EXT`, the device name reduced to characters every file system takes. */
function fileName(device, ext) {
  const safe = String(device).trim().replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^[-.]+|-+$/g, '') || 'device';
  return `gatehouse-${safe}.${ext}`;
}

function bytesOf(base64) {
  const text = atob(base64);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

/** The blob: URL of the download on offer (one at a time; the previous one is released). */
let offered;

function downloadLink(blob, name) {
  if (offered) URL.revokeObjectURL(offered);
  offered = URL.createObjectURL(blob);
  const a = h('a', { href: '#', download: name, class: 'button', 'data-testid': 'device-download' }, `Download ${name}`);
  a.href = offered; // a blob: URL made here from the answer, not a URL from the server
  return a;
}

/** The PKCS#12 and its password, shown this once. */
function p12Issued(answer, device) {
  const name = fileName(device, 'p12');
  const blob = new Blob([bytesOf(answer.p12)], { type: 'application/x-pkcs12' });
  const password = h('input', { type: 'text', readonly: true, value: answer.password, class: 'secret', id: 'device-password', 'data-testid': 'device-password' });
  const copied = h('span', { class: 'hint', 'aria-live': 'polite' });
  const copy = h('button', { type: 'button', class: 'secondary', 'data-testid': 'copy-password' }, 'Copy');
  copy.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(answer.password);
      copied.textContent = 'Copied.';
    } catch {
      password.select();
      copied.textContent = 'Selected: press Ctrl+C (⌘C) to copy.';
    }
  });
  return h(
    'div',
    { class: 'secret-box', 'data-testid': 'device-issued' },
    h('p', {}, h('strong', {}, `A certificate for “${device}”: download it and copy its password now.`), ' Both are shown only this once; Gatehouse keeps neither the key nor the password.'),
    h('div', { class: 'actions' }, downloadLink(blob, name)),
    h('p', { class: 'password-label' }, h('label', { for: 'device-password' }, 'Password of the file'), ' (asked for when the file is imported)'),
    h('div', { class: 'row' }, password, copy),
    copied,
    h(
      'p',
      { class: 'hint' },
      'Import the file into the device’s certificate store (open it on macOS or Windows; Firefox: Settings → Certificates → Your Certificates → Import), or use it directly: ',
      h('code', {}, `curl --cert-type P12 --cert ${name}:PASSWORD https://…`),
    ),
  );
}

/** The certificate issued for a CSR (and the chain, when the CA is not a root). */
function csrIssued(answer, device) {
  const name = fileName(device, 'crt');
  const blob = new Blob([answer.certificate + (answer.chain ?? '')], { type: 'application/x-pem-file' });
  return h(
    'div',
    { class: 'callout', 'data-testid': 'device-issued' },
    h('p', {}, h('strong', {}, `A certificate for “${device}”.`), ' Use it with the key you made the request with.'),
    h('div', { class: 'actions' }, downloadLink(blob, name)),
  );
}

function rows(list, all, reload) {
  return list.map((c) => {
    const status = statusOf(c);
    const owner = c.user ?? (c.connector ? `connector ${c.connector}` : '');
    return {
      attrs: { 'data-testid': 'device-row', 'data-serial': c.serial, 'data-status': status, 'data-user': c.user ?? '' },
      cells: [
        ...(all ? [owner] : []),
        c.device,
        h('code', { class: 'wrap', title: c.subject }, c.serial),
        time(c.notAfter),
        statusBadge(c, status),
        status === 'valid'
          ? confirmButton('Revoke', { class: 'danger', 'data-testid': 'revoke-device' }, all ? `${owner}’s ${c.device} loses access at once.` : `${c.device} loses access at once.`, async () => {
              await api('POST', `/certificates/${seg(c.serial)}/revoke`, {});
              showNotice(`The certificate of ${c.device} is revoked: routes refuse it from now on.`);
              await reload();
            })
          : null,
      ],
    };
  });
}

export async function devicesPage({ me }) {
  const all = me?.admin?.root === true;
  const columns = [...(all ? ['User'] : []), 'Device', 'Serial', 'Valid until', 'Status', ''];
  const list = live({ 'data-testid': 'devices' }, async (reload) => {
    const certificates = listOf(await api('GET', all ? '/certificates?all=true' : '/certificates'), 'certificates');
    if (!certificates.length) return empty(all ? 'No certificate has been issued yet.' : 'None of your devices has a certificate yet.');
    return table('devices-table', columns, rows(certificates, all, reload));
  });

  const result = h('div', { 'aria-live': 'polite' });
  const csr = field(
    'Certificate request (CSR, PEM)',
    { name: 'csr', rows: '8', class: 'pem', spellcheck: 'false', placeholder: '-----BEGIN CERTIFICATE REQUEST-----', 'data-testid': 'device-csr' },
    { control: 'textarea', hint: `Only its public key is used. Make one with: ${CSR_HINT}` },
  );
  const csrInput = csr.querySelector('textarea');
  const mode = field(
    'How',
    { name: 'mode', 'data-testid': 'device-mode' },
    {
      control: 'select',
      options: [
        { value: 'p12', label: 'Download a PKCS#12' },
        { value: 'csr', label: 'I have a CSR' },
      ],
      hint: 'A PKCS#12 holds a key Gatehouse makes for you; with a CSR you keep your own key.',
    },
  );
  const modeInput = mode.querySelector('select');
  const sync = () => {
    const wantsCsr = modeInput.value === 'csr';
    csr.hidden = !wantsCsr;
    csrInput.required = wantsCsr;
  };
  modeInput.addEventListener('change', sync);
  sync();

  const add = form(
    { 'data-testid': 'add-device-form', class: 'form' },
    [
      h('h3', {}, 'Add a device'),
      h(
        'div',
        { class: 'row' },
        field('Device name', { name: 'device', required: true, maxlength: '64', placeholder: 'work laptop', 'data-testid': 'device-name' }),
        field('Valid for (days)', { name: 'days', type: 'number', required: true, min: '1', max: String(MAX_DAYS), step: '1', value: '365', class: 'narrow', 'data-testid': 'device-days' }, { hint: `1–${MAX_DAYS}` }),
        mode,
      ),
      csr,
      h('div', { class: 'actions' }, h('button', { type: 'submit', 'data-testid': 'add-device' }, 'Add device')),
    ],
    async (v, el) => {
      const body = { device: v.device, days: Number(v.days) };
      if (v.mode === 'csr') body.csr = `${v.csr}\n`;
      const answer = await api('POST', '/certificates', body);
      const device = answer.record?.device ?? v.device;
      replace(result, answer.p12 ? p12Issued(answer, device) : csrIssued(answer, device));
      el.reset();
      sync();
      await list.reload();
      result.querySelector('[data-testid="device-download"]')?.focus();
    },
  );

  await list.reload();
  return page(
    'page-devices',
    'Devices',
    h(
      'section',
      { class: 'card', 'data-testid': 'devices-section' },
      h('h2', {}, all ? 'All certificates' : 'My devices'),
      h(
        'p',
        { class: 'muted' },
        'A device certificate lets a device reach the routes that ask for one, as ',
        all ? 'its user' : 'you',
        '. Revoke it when a device is lost or retired: every route refuses it at once.',
      ),
      list.el,
      add,
      result,
    ),
  );
}
