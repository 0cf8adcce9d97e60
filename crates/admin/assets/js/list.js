// A paged list page: filters in a toolbar, one page of rows from the server (never the whole
// set), a pager, an error banner naming what failed. Filter and page state live in the hash.

import { h, clear, table, pager, bannerSlot, debounce, field, emptyState, fmtInt } from './ui.js';

/**
 * opts: {ctx, title, sub, what ('clients'), filters: [{key, label, kind: 'text'|'select',
 * options: [[value, label]], placeholder, map?: (value, state) => query object}],
 * columns: (reload) => cols, fetch: (query) => Promise<{data, meta}>, empty: (filtered) => node,
 * headExtra: node, below: node, defaultLimit}
 */
export function listPage(opts) {
  const { ctx } = opts;
  const q = ctx.query;
  const state = {
    page: Math.max(1, parseInt(q.get('page') || '1', 10) || 1),
    limit: parseInt(q.get('limit') || '', 10) || opts.defaultLimit || 50,
  };
  for (const f of opts.filters || []) state[f.key] = q.get(f.key) || f.initial || '';

  const banners = bannerSlot();
  const body = h('div.listbody');
  const updated = h('span.faint.nowrap');
  const total = h('span.sub', { id: 'list-count' });
  const refresh = h('button', { onclick: () => load() }, 'Refresh');
  let seq = 0;

  const inputs = (opts.filters || []).map((f) => {
    let input;
    const onChange = () => { state[f.key] = input.value.trim(); state.page = 1; load(); };
    if (f.kind === 'select') {
      input = h('select', { onchange: onChange, id: 'filter-' + f.key },
        f.options.map(([v, l]) => h('option', { value: v, selected: state[f.key] === v }, l)));
    } else {
      input = h('input', {
        type: 'search', value: state[f.key], placeholder: f.placeholder || '', id: 'filter-' + f.key,
        autocomplete: 'off', spellcheck: 'false', oninput: debounce(onChange, 300),
        onkeydown: (e) => { if (e.key === 'Enter') onChange(); },
      });
    }
    return field(f.label, input);
  });

  clear(ctx.main,
    h('div.pagehead', h('h1', opts.title), total, opts.sub ? h('span.sub', '· ' + opts.sub) : null, h('span.grow'), updated, refresh),
    banners.el,
    opts.above || null,
    h('section.panel.flush',
      inputs.length ? h('div.toolbar', { class: 'panelpad' }, inputs, opts.toolbarExtra || null) : null,
      body),
    opts.below || null);

  function query() {
    const out = { page: state.page, limit: state.limit };
    for (const f of opts.filters || []) {
      const v = state[f.key];
      if (!v) continue;
      Object.assign(out, f.map ? f.map(v, state) : { [f.key]: v });
    }
    return out;
  }

  async function load() {
    const my = ++seq;
    const keep = { page: state.page, limit: state.limit };
    for (const f of opts.filters || []) keep[f.key] = state[f.key];
    ctx.replaceQuery(keep);
    body.classList.add('loading');
    refresh.disabled = true;
    try {
      const res = await opts.fetch(query());
      if (my !== seq) return;
      const rows = (res && res.data) || [];
      const meta = (res && res.meta) || { page: state.page, limit: state.limit, count: rows.length, hasnext: false };
      // Past the end (rows deleted meanwhile): go back to the last page.
      if (!rows.length && state.page > 1 && typeof meta.count === 'number' && meta.count > 0) {
        state.page = Math.max(1, Math.ceil(meta.count / state.limit));
        return load();
      }
      const filtered = (opts.filters || []).some((f) => state[f.key] && state[f.key] !== (f.initial || ''));
      clear(body,
        table(opts.columns(load), rows, opts.empty ? opts.empty(filtered) : emptyState('Nothing here.')),
        pager({ ...meta, page: meta.page || state.page, limit: meta.limit || state.limit }, rows.length, ({ page, limit }) => {
          state.page = page; state.limit = limit; load();
        }));
      banners.clear();
      updated.textContent = 'updated ' + new Date().toLocaleTimeString();
      body.dataset.count = meta.count ?? rows.length;
      total.textContent = typeof meta.count === 'number' ? `${fmtInt(meta.count)} ${filtered ? 'matching' : 'in all'}` : '';
    } catch (e) {
      if (my !== seq) return;
      banners.error(`Loading ${opts.what} failed`, e);
      if (!body.firstChild) clear(body, emptyState(`Could not load ${opts.what}.`, 'See the error above; Refresh to try again.'));
    } finally {
      if (my === seq) { body.classList.remove('loading'); refresh.disabled = false; }
    }
  }

  return { load, state, banners };
}
