// DOM helpers: every node is built with h() (text goes in as text nodes, never as HTML, so a
// client id or payload cannot inject markup), formatting, tables, pager, banners, dialogs.

import { describe } from './api.js';

/** h('div.card#x', {onclick, class, ...attrs}, ...children) */
export function h(sel, props, ...kids) {
  if (props === null || typeof props !== 'object' || props instanceof Node || Array.isArray(props)) {
    if (props !== undefined && props !== null) kids.unshift(props);
    props = {};
  }
  const m = /^([a-z0-9]+)?((?:[.#][\w-]+)*)$/i.exec(sel);
  const el = document.createElement((m && m[1]) || 'div');
  if (m && m[2]) {
    for (const part of m[2].match(/[.#][\w-]+/g)) {
      if (part[0] === '.') el.classList.add(part.slice(1));
      else el.id = part.slice(1);
    }
  }
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') String(v).split(/\s+/).filter(Boolean).forEach((c) => el.classList.add(c));
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'value' || k === 'checked' || k === 'disabled' || k === 'selected') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, kids);
  return el;
}

function append(el, kids) {
  for (const k of kids.flat(Infinity)) {
    if (k === null || k === undefined || k === false) continue;
    el.appendChild(k instanceof Node ? k : document.createTextNode(String(k)));
  }
}

export function clear(el, ...kids) {
  el.replaceChildren();
  append(el, kids);
  return el;
}

// ---------- formatting ----------
const nf = new Intl.NumberFormat('en-US');
const nf1 = new Intl.NumberFormat('en-US', { maximumFractionDigits: 1 });
export const fmtInt = (n) => (n === null || n === undefined || Number.isNaN(n) ? '–' : nf.format(n));
export const fmtRate = (n) => (n === null || n === undefined || Number.isNaN(n) ? '–' : nf1.format(n));
export function fmtBytes(n) {
  if (n === null || n === undefined) return '–';
  if (n < 1024) return `${n} B`;
  const u = ['KiB', 'MiB', 'GiB', 'TiB'];
  let i = -1;
  do { n /= 1024; i++; } while (n >= 1024 && i < u.length - 1);
  return `${n.toFixed(n < 10 ? 1 : 0)} ${u[i]}`;
}
export function fmtDuration(sec) {
  if (sec === null || sec === undefined || Number.isNaN(+sec)) return '–';
  sec = Math.max(0, Math.floor(+sec));
  const d = Math.floor(sec / 86400), hh = Math.floor((sec % 86400) / 3600);
  const mm = Math.floor((sec % 3600) / 60), ss = sec % 60;
  if (d) return `${d}d ${hh}h ${mm}m`;
  if (hh) return `${hh}h ${mm}m`;
  if (mm) return `${mm}m ${ss}s`;
  return `${ss}s`;
}
const pad = (n) => String(n).padStart(2, '0');
export function fmtTime(t) {
  if (!t) return '–';
  const d = new Date(t);
  if (Number.isNaN(d.getTime())) return String(t);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}
export function fmtAgo(t) {
  if (!t) return '–';
  const d = new Date(t);
  if (Number.isNaN(d.getTime())) return String(t);
  const s = (Date.now() - d.getTime()) / 1000;
  if (s < 0) return 'in ' + fmtDuration(-s);
  return fmtDuration(s) + ' ago';
}
export const protoName = (v) => ({ 3: 'MQTT 3.1', 4: 'MQTT 3.1.1', 5: 'MQTT 5.0' }[v] || (v ? `v${v}` : '–'));

/** Time cell: short relative text, the exact local time as a tooltip. */
export const timeCell = (t) => h('span', { title: fmtTime(t) }, fmtAgo(t));

// ---------- banners, toasts ----------
/** An error banner naming what failed and why; returns the element. */
export function errorBanner(what, err, { kind = '', onClose } = {}) {
  const b = h('div.banner' + (kind ? '.' + kind : ''), { role: 'alert' },
    h('div', h('span.what', what + (err ? ': ' : '')), h('span.detail', err ? describe(err) : '')));
  if (onClose) b.appendChild(h('button.link.close', { onclick: () => { b.remove(); onClose(); }, 'aria-label': 'Dismiss' }, 'Dismiss'));
  return b;
}

/** A slot that shows at most one banner at a time. */
export function bannerSlot() {
  const el = h('div.bannerslot');
  return {
    el,
    error(what, err) { clear(el, errorBanner(what, err, { onClose: () => {} })); },
    info(text) { clear(el, h('div.banner.info', h('span.what', text))); },
    clear() { clear(el); },
  };
}

let toastBox;
export function toast(text, ms = 3500) {
  if (!toastBox || !toastBox.isConnected) { toastBox = h('div.toasts'); document.body.appendChild(toastBox); }
  const t = h('div.toast', { role: 'status' }, text);
  toastBox.appendChild(t);
  setTimeout(() => t.remove(), ms);
}

// ---------- dialogs ----------
/** Open a modal <dialog>; resolves with the value passed to close(), or undefined on Esc. */
export function modal({ title, body, actions, narrow = false }) {
  return new Promise((resolve) => {
    let result;
    const d = h('dialog' + (narrow ? '.narrow' : ''));
    const close = (v) => { result = v; d.close(); };
    const foot = h('div.dfoot', ...(actions ? actions(close) : [h('button', { onclick: () => close() }, 'Close')]));
    d.append(h('div.dhead', h('h2', title)), h('div.dbody', typeof body === 'function' ? body(close) : body), foot);
    d.addEventListener('close', () => { d.remove(); resolve(result); });
    document.body.appendChild(d);
    d.showModal();
  });
}

export function confirmDialog(title, text, okLabel = 'OK', danger = true) {
  return modal({
    title, narrow: true, body: h('p', text),
    actions: (close) => [
      h('button', { onclick: () => close(false) }, 'Cancel'),
      h('button' + (danger ? '.danger.solid' : '.primary'), { onclick: () => close(true), autofocus: true }, okLabel),
    ],
  });
}

// ---------- tables ----------
/**
 * cols: [{label, num?, cls?, cell: row => node|string}]
 * Returns a <table>; `empty` is shown in a single full-width cell when there are no rows.
 */
export function table(cols, rows, empty) {
  const thead = h('thead', h('tr', cols.map((c) => h('th' + (c.num ? '.num' : ''), { title: c.title }, c.label))));
  const tbody = h('tbody');
  if (!rows.length) {
    tbody.appendChild(h('tr.emptyrow', h('td', { colspan: cols.length }, empty || h('div.empty', 'Nothing here.'))));
  } else {
    const frag = document.createDocumentFragment();
    for (const r of rows) {
      const tr = h('tr');
      for (const c of cols) {
        const v = c.cell(r);
        tr.appendChild(h('td' + (c.num ? '.num' : '') + (c.cls ? '.' + c.cls : ''), v));
      }
      frag.appendChild(tr);
    }
    tbody.appendChild(frag);
  }
  return h('div.tablewrap', h('table', thead, tbody));
}

export const emptyState = (title, text) => h('div.empty', h('b', title), text || '');

/**
 * Pager for the API's {count, limit, page, hasnext} meta. onChange({page, limit}).
 */
export function pager(meta, shown, onChange, sizes = [20, 50, 100, 500]) {
  const page = meta.page || 1, limit = meta.limit || 100;
  const count = typeof meta.count === 'number' ? meta.count : null;
  const pages = count !== null ? Math.max(1, Math.ceil(count / limit)) : null;
  const from = shown ? (page - 1) * limit + 1 : 0, to = (page - 1) * limit + shown;
  const hasnext = meta.hasnext ?? (pages !== null ? page < pages : shown === limit);
  const go = (p) => onChange({ page: Math.max(1, pages ? Math.min(p, pages) : p), limit });
  const pageInput = h('input.pageno', {
    type: 'number', min: 1, max: pages || undefined, value: page, 'aria-label': 'Page number',
    onchange: (e) => go(parseInt(e.target.value, 10) || 1),
  });
  return h('div.pager',
    h('span.count', count !== null
      ? (shown ? `${fmtInt(from)}–${fmtInt(to)} of ${fmtInt(count)}` : `0 of ${fmtInt(count)}`)
      : `${fmtInt(from)}–${fmtInt(to)}`),
    h('span.grow'),
    h('label', 'Rows ', h('select', { onchange: (e) => onChange({ page: 1, limit: +e.target.value }), 'aria-label': 'Rows per page' },
      sizes.map((s) => h('option', { value: s, selected: s === limit }, s)))),
    h('button.small', { onclick: () => go(1), disabled: page <= 1, title: 'First page' }, '«'),
    h('button.small', { onclick: () => go(page - 1), disabled: page <= 1 }, '‹ Prev'),
    h('span', 'Page ', pageInput, pages !== null ? ` of ${fmtInt(pages)}` : ''),
    h('button.small', { onclick: () => go(page + 1), disabled: !hasnext }, 'Next ›'),
    pages !== null ? h('button.small', { onclick: () => go(pages), disabled: page >= pages, title: 'Last page' }, '»') : null,
  );
}

/** Debounce for search boxes. */
export function debounce(f, ms = 300) {
  let t;
  return (...a) => { clearTimeout(t); t = setTimeout(() => f(...a), ms); };
}

export const field = (label, input, cls = '') => (cls === 'check'
  ? h('label.field.check', input, label)
  : h('label.field' + (cls ? '.' + cls : ''), label, input));

/** A count cell: zero greyed so the non-zero ones stand out. */
export const countCell = (n) => (n ? fmtInt(n) : h('span.faint-zero', n === 0 ? '0' : '–'));

/** A button that disables itself while its async action runs. */
export function actionButton(sel, label, run) {
  const b = h('button' + sel, {
    onclick: async (e) => {
      e.preventDefault();
      b.disabled = true;
      try { await run(e); } finally { if (b.isConnected) b.disabled = false; }
    },
  }, label);
  return b;
}

export const isViewer = (s) => s && s.role === 'viewer';
