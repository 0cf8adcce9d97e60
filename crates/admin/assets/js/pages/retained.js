// Retained messages (GET /mqtt/retainer/messages, paged): view a payload as text or hex,
// delete one.

import { get, del, seg } from '../api.js';
import { h, clear, fmtBytes, emptyState, modal, confirmDialog, toast, isViewer, errorBanner } from '../ui.js';
import { listPage } from '../list.js';

export function b64bytes(b64) {
  try {
    const bin = atob(b64 || '');
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  } catch { return null; }
}

/** UTF-8 text, or null when the bytes are not valid UTF-8 (or hold control bytes but \t\r\n). */
export function asText(bytes) {
  try {
    const s = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    // eslint-disable-next-line no-control-regex
    return /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/.test(s) ? null : s;
  } catch { return null; }
}

const HEX_MAX = 64 * 1024;
export function hexDump(bytes) {
  const lines = [];
  const n = Math.min(bytes.length, HEX_MAX);
  for (let off = 0; off < n; off += 16) {
    const row = bytes.subarray(off, Math.min(off + 16, n));
    let hex = '', ascii = '';
    for (let i = 0; i < 16; i++) {
      if (i < row.length) {
        hex += row[i].toString(16).padStart(2, '0') + ' ';
        ascii += row[i] >= 0x20 && row[i] < 0x7f ? String.fromCharCode(row[i]) : '.';
      } else hex += '   ';
      if (i === 7) hex += ' ';
    }
    lines.push(off.toString(16).padStart(8, '0') + '  ' + hex + ' ' + ascii);
  }
  if (bytes.length > n) lines.push(`… ${bytes.length - n} more bytes not shown`);
  return lines.join('\n');
}

function preview(m) {
  if (m.payload === undefined || m.payload === null) return h('span.faint', '(open to view)');
  const b = b64bytes(m.payload);
  if (!b) return h('span.faint', '(undecodable)');
  if (!b.length) return h('span.faint', '(empty)');
  const t = asText(b);
  if (t !== null) return h('span.mono', t.length > 80 ? t.slice(0, 80) + '…' : t);
  return h('span.mono.muted', Array.from(b.subarray(0, 24), (x) => x.toString(16).padStart(2, '0')).join(' ') + (b.length > 24 ? ' …' : ''));
}

export async function viewPayload(topic) {
  const box = h('div', 'Loading…');
  const modeBtns = {};
  let bytes = null, text = null, mode = 'text';
  const paint = () => {
    for (const [k, b] of Object.entries(modeBtns)) b.classList.toggle('on', k === mode);
    if (!bytes) return;
    if (mode === 'text') {
      clear(box, text === null
        ? h('div.banner.warn', h('span.what', 'Not valid UTF-8 text; showing it decoded lossily. Hex shows the exact bytes.'))
        : null,
      h('pre.payload', { id: 'payload-text' }, text === null ? new TextDecoder().decode(bytes) : text || '(empty payload)'));
    } else clear(box, h('pre.payload.hex', { id: 'payload-hex' }, bytes.length ? hexDump(bytes) : '(empty payload)'));
  };
  for (const m of ['text', 'hex']) modeBtns[m] = h('button.seg', { onclick: () => { mode = m; paint(); } }, m === 'text' ? 'Text' : 'Hex');
  const meta = h('div.readout');
  const dlg = modal({
    title: topic,
    body: h('div', h('div.panelhead', h('span.segs', modeBtns.text, modeBtns.hex), meta), box),
  });
  try {
    const m = await get(`/mqtt/retainer/message/${seg(topic)}`);
    bytes = b64bytes(m.payload) || new Uint8Array();
    text = asText(bytes);
    mode = text === null ? 'hex' : 'text';
    clear(meta, h('span', 'QoS ', h('b', m.qos)), h('span', 'size ', h('b', fmtBytes(m.payload_size ?? bytes.length))),
      m.publish_at ? h('span', 'published ', h('b', m.publish_at)) : null,
      m.from_clientid ? h('span', 'from ', h('b', m.from_clientid)) : null);
    paint();
  } catch (e) {
    clear(box, errorBanner(`Loading the retained message on ${topic} failed`, e));
  }
  return dlg;
}

export async function render(ctx) {
  const viewer = isViewer(ctx.session);
  const list = listPage({
    ctx,
    title: 'Retained messages',
    what: 'retained messages',
    filters: [{ key: 'topic', label: 'Topic filter', placeholder: 'sensors/#' }],
    fetch: (q) => get('/mqtt/retainer/messages', q),
    empty: (filtered) => filtered
      ? emptyState('No retained message matches this filter.')
      : emptyState('No retained messages.', 'A message published with the retain flag and a non-empty payload is kept here.'),
    columns: (reload) => [
      { label: 'Topic', cls: 'wrap', cell: (m) => h('button.link.mono', { onclick: () => viewPayload(m.topic) }, m.topic) },
      { label: 'QoS', num: true, cell: (m) => m.qos },
      { label: 'Size', num: true, cell: (m) => fmtBytes(m.payload_size ?? (b64bytes(m.payload) || []).length) },
      { label: 'Payload', cls: 'wrap', cell: preview },
      { label: '', cls: 'actions', cell: (m) => [
        h('button.small', { onclick: () => viewPayload(m.topic) }, 'View'),
        viewer ? null : h('button.small.danger', {
          onclick: async () => {
            if (!(await confirmDialog('Delete retained message?', `New subscribers to ${m.topic} will no longer receive it.`, 'Delete'))) return;
            try { await del(`/mqtt/retainer/message/${seg(m.topic)}`); toast(`Deleted the retained message on ${m.topic}`); } catch (e) { list.banners.error(`Deleting the retained message on ${m.topic} failed`, e); }
            await reload();
          },
        }, 'Delete'),
      ] },
    ],
  });
  await list.load();
}
