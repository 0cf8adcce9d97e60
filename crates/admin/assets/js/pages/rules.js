// Rules and bridges of the config file, read-only (GET /rules, GET /bridges): what each rule
// reads and does, its counters and its actions' counters; each bridge's remote, state and
// counters. Refreshes every 5 s while open. Rules and bridges are added in the config file, so
// the empty states say how.

import { get } from '../api.js';
import { h, clear, fmtInt, table, emptyState, bannerSlot } from '../ui.js';

const REFRESH_MS = 5000;
// More rules than this would not be read on one page anyway; the API caps at 10,000.
const LIMIT = 1000;

/** A count that should stay 0 (failures, drops): red when it is not. */
const alarm = (n, metric) => h('span' + (n ? '.count-bad' : '.faint-zero'), { dataset: { metric } }, fmtInt(n ?? null));
/** A count that is fine at any value: faint when 0. */
const count = (n, metric) => h('span' + (n ? '' : '.faint-zero'), { dataset: { metric } }, fmtInt(n ?? null));
/** A count worth a look when not 0 (retries, a backlog). */
const notice = (n, metric) => h('span' + (n ? '.count-warn' : '.faint-zero'), { dataset: { metric } }, fmtInt(n ?? null));

function actionsTable(r) {
  const acts = (r.metrics && r.metrics.actions) || [];
  if (!acts.length) return h('span.faint', 'no action');
  return h('table.mini',
    h('thead', h('tr', h('th', 'Action'), h('th.num', { title: 'writes done' }, 'Succeeded'), h('th.num', { title: 'writes that failed for good (not retried)' }, 'Failed'),
      h('th.num', { title: 'attempts after a failure that may pass (sink away, 5xx)' }, 'Retried'), h('th.num', { title: 'writes under way now' }, 'Pending'))),
    h('tbody', acts.map((a) => h('tr', { dataset: { action: a.target } },
      h('td', h('code', a.target)),
      h('td.num', count(a.succeeded, 'succeeded')),
      h('td.num', alarm(a.failed, 'failed')),
      h('td.num', notice(a.retried, 'retried')),
      h('td.num', count(a.pending, 'pending'))))));
}

const ruleCounters = [
  ['Matched', 'inputs the rule ran on', (r) => count(r.metrics.matched, 'matched')],
  ['Passed', 'inputs for which WHERE held: a row went to the actions', (r) => count(r.metrics.passed, 'passed')],
  ['No result', 'inputs for which WHERE did not hold', (r) => count(r.metrics.no_result, 'no_result')],
  ['Failed', 'inputs on which the SQL failed (counted, skipped)', (r) => alarm(r.metrics.failed, 'failed')],
  ['Buffered', 'messages waiting in the rule\'s session now (on disk with buffer = "disk")', (r) => count(r.metrics.buffered, 'buffered')],
  ['Dropped', 'messages dropped because the buffer was full (max_buffered, on_full)', (r) => alarm(r.metrics.dropped, 'dropped')],
];

/**
 * The rules table: one <tbody> per rule, so that its actions (a row of their own under the
 * SQL and counters, too wide to share one) highlight with it. The name spans both rows.
 */
function rulesTable(rules, empty) {
  const cols = 2 + ruleCounters.length;
  const head = h('thead', h('tr', h('th', 'Rule'), h('th', 'SQL'), ruleCounters.map(([label, title]) => h('th.num', { title }, label))));
  if (!rules.length) return h('div.tablewrap', h('table', head, h('tbody', h('tr.emptyrow', h('td', { colspan: cols }, empty)))));
  const groups = rules.map((r) => h('tbody.rulegroup', { dataset: { rule: r.name } },
    h('tr',
      h('td.rulename', { rowspan: 2 }, h('b', r.name), h('div.from', (r.from || []).map((f) => h('code.tag', { title: 'FROM' }, f)))),
      h('td.sql', h('code', r.sql)),
      ruleCounters.map(([, , cell]) => h('td.num', cell(r)))),
    h('tr.actionsrow', h('td', { colspan: cols - 1 }, actionsTable(r)))));
  return h('div.tablewrap', h('table.rules', head, groups));
}

const bridgeColumns = [
  { label: 'Bridge', cell: (b) => h('b', { dataset: { bridge: b.name } }, b.name) },
  { label: 'Remote', cls: 'mono', cell: (b) => b.server || '–' },
  { label: 'State', cell: (b) => (b.connected ? h('span.pill.ok', 'connected') : h('span.pill.bad', 'disconnected')) },
  { label: 'Topics', cls: 'sql', cell: (b) => h('div.from', (b.topics || []).map((t) => h('code.tag', t))) },
  { label: 'Out', num: true, title: 'messages the remote broker took', cell: (b) => count(b.metrics.messages_out, 'messages_out') },
  { label: 'In', num: true, title: 'messages taken from the remote broker', cell: (b) => count(b.metrics.messages_in, 'messages_in') },
  { label: 'Dropped', num: true, title: 'messages no topic line maps, refused by the other side, too large, or QoS 0 past the buffer', cell: (b) => alarm(b.metrics.messages_dropped, 'messages_dropped') },
  { label: 'Reconnects', num: true, title: 'times the link came up again after being down', cell: (b) => count(b.metrics.reconnects, 'reconnects') },
  { label: 'Failed connects', num: true, title: 'connection attempts that failed', cell: (b) => notice(b.metrics.failed_connects, 'failed_connects') },
];

const snippet = (lines) => h('pre.snippet', lines.join('\n'));

const noRules = () => emptyState('No rules.',
  h('div',
    h('p', 'A rule reads messages (or client events) with EMQX\'s rule SQL and writes them into SQLite, PostgreSQL, a webhook, or another topic. Add one to the config file and restart Hermod, for example:'),
    snippet(['[[rule]]', 'name = "copy"', 'sql = \'SELECT clientid, payload FROM "dev/#"\'', '', '[[rule.action]]', 'republish = "copies/${clientid}"']),
    h('p', 'See "Store device messages in a database" in the README, and examples/collector.toml.')));

const noBridges = () => emptyState('No bridges.',
  h('p', 'A bridge forwards topics to another MQTT broker and takes others back (a [[bridge]] table, Mosquitto\'s topic lines). See "Bridge to another broker" in the README, and examples/bridge.toml.'));

export async function render(ctx) {
  const banners = bannerSlot();
  const updated = h('span.faint.nowrap');
  const refresh = h('button', { onclick: () => load() }, 'Refresh');
  const rulesBody = h('div');
  const bridgesBody = h('div');
  const rulesNote = h('span.note');
  const bridgesNote = h('span.note');
  const rulesPanel = h('section.panel.flush', { id: 'rules-panel' },
    h('div.panelhead', h('h2', 'Rules'), rulesNote), rulesBody);
  const bridgesPanel = h('section.panel.flush', { id: 'bridges-panel' },
    h('div.panelhead', h('h2', 'Bridges'), bridgesNote), bridgesBody);
  clear(ctx.main,
    h('div.pagehead', h('h1', 'Rules'), h('span.sub', '· rules and bridges of the config file, read-only; counts since the broker started'), h('span.grow'), updated, refresh),
    banners.el,
    rulesPanel,
    bridgesPanel);

  let seq = 0;
  async function load() {
    const my = ++seq;
    refresh.disabled = true;
    const [rules, bridges] = await Promise.allSettled([get('/rules', { limit: LIMIT }), get('/bridges')]);
    if (my !== seq) return;
    refresh.disabled = false;
    const failed = [];
    if (rules.status === 'fulfilled') {
      const list = (rules.value && rules.value.data) || [];
      const meta = (rules.value && rules.value.meta) || {};
      clear(rulesBody, rulesTable(list, noRules()));
      rulesPanel.dataset.count = list.length;
      rulesNote.textContent = list.length
        ? `${fmtInt(meta.count ?? list.length)} ${(meta.count ?? list.length) === 1 ? 'rule' : 'rules'}${meta.hasnext ? `, the first ${fmtInt(list.length)} shown` : ''}; hover a column for what it counts`
        : '';
    } else {
      failed.push(['Loading rules failed', rules.reason]);
      if (!rulesBody.firstChild) clear(rulesBody, emptyState('Could not load the rules.', 'See the error above; Refresh to try again.'));
    }
    if (bridges.status === 'fulfilled') {
      const list = Array.isArray(bridges.value) ? bridges.value : [];
      clear(bridgesBody, table(bridgeColumns, list, noBridges()));
      bridgesPanel.dataset.count = list.length;
      const up = list.filter((b) => b.connected).length;
      bridgesNote.textContent = list.length ? `${fmtInt(up)} of ${fmtInt(list.length)} connected` : '';
    } else {
      failed.push(['Loading bridges failed', bridges.reason]);
      if (!bridgesBody.firstChild) clear(bridgesBody, emptyState('Could not load the bridges.', 'See the error above; Refresh to try again.'));
    }
    if (failed.length) banners.error(failed[0][0], failed[0][1]);
    else {
      banners.clear();
      updated.textContent = 'updated ' + new Date().toLocaleTimeString();
    }
  }

  await load();
  const timer = setInterval(load, REFRESH_MS);
  ctx.onCleanup(() => clearInterval(timer));
}
