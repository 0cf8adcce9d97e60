// Overview: cards (version, uptime, connections, sessions, subscriptions, topics, retained) and
// three charts — the live message rate (GET /monitor_current every 2 s into a ring kept in this
// page: 5 minutes), and from the server's 10 s samples (GET /monitor) the message rate and the
// connection / subscription / topic counts over the last hour or day.

import { api, get, describe } from '../api.js';
import { h, clear, fmtInt, fmtRate, fmtDuration, fmtTime, bannerSlot } from '../ui.js';
import { lineChart } from '../chart.js';

const LIVE_MS = 2000;
const RING = 150; // 150 × 2 s = 5 min
const HISTORY_MS = 10000;

// The live ring survives leaving and re-entering the page (not a reload).
const ring = { t: [], recv: [], sent: [], drop: [] };
let historySpan = 3600;

function card(label, id) {
  const value = h('div.value', { id: 'card-' + id }, '–');
  const detail = h('div.detail', '\u00a0');
  return { el: h('div.card', h('div.label', label), value, detail), value, detail };
}

export async function render(ctx) {
  const { main, onCleanup } = ctx;
  const banners = bannerSlot();
  const cards = {
    version: card('Version', 'version'),
    uptime: card('Uptime', 'uptime'),
    conns: card('Connections', 'connections'),
    sessions: card('Sessions', 'sessions'),
    subs: card('Subscriptions', 'subscriptions'),
    topics: card('Topics', 'topics'),
    retained: card('Retained', 'retained'),
  };
  cards.version.value.classList.add('small');
  cards.uptime.value.classList.add('small');

  const readout = h('div.readout');
  const liveBox = h('div', { id: 'chart-live' });
  const liveFig = h('section.panel', { id: 'live-rate' },
    h('div.panelhead', h('h2', 'Message rate, live'),
      h('span.note', 'messages per second, averaged by the server over its last few seconds; polled every 2 s, last 5 min kept in this tab')),
    readout, liveBox);

  const spanBtns = [[3600, 'Last hour'], [86400, 'Last day']].map(([s, label]) =>
    h('button.seg' + (s === historySpan ? '.on' : ''), { dataset: { span: s }, onclick: () => { historySpan = s; for (const b of spanBtns) b.classList.toggle('on', +b.dataset.span === s); loadHistory(); } }, label));
  const histNote = h('span.note');
  const rateBox = h('div', { id: 'chart-rate-history' });
  const countBox = h('div', { id: 'chart-counts' });

  clear(main,
    h('div.pagehead', h('h1', 'Overview'), h('span.sub', 'this node')),
    banners.el,
    h('div.cards', Object.values(cards).map((c) => c.el)),
    liveFig,
    h('div.panelhead', h('h2', 'History'), h('span.segs', spanBtns), histNote),
    h('div.charts',
      h('section.panel', h('div.panelhead', h('h2', 'Message rate'), h('span.note', 'messages per second, mean of each 10 s sample')), rateBox),
      h('section.panel', h('div.panelhead', h('h2', 'Connections, subscriptions, topics'), h('span.note', 'count at each 10 s sample')), countBox)));

  const live = lineChart(liveBox, {
    unit: 'msg/s', decimals: 1, window: RING * LIVE_MS / 1000, legend: false,
    series: [{ label: 'received', color: '--c1' }, { label: 'sent', color: '--c2' }, { label: 'dropped', color: '--c3' }],
  });
  const rateChart = lineChart(rateBox, {
    unit: 'msg/s', decimals: 1, window: historySpan,
    series: [{ label: 'received', color: '--c1' }, { label: 'sent', color: '--c2' }, { label: 'dropped', color: '--c3' }],
  });
  const countChart = lineChart(countBox, {
    unit: 'count', window: historySpan,
    series: [{ label: 'connections', color: '--c1' }, { label: 'subscriptions', color: '--c2' }, { label: 'topics', color: '--c4' }],
  });

  let stopped = false;
  const errors = { live: null, history: null, status: null };
  const showErrors = () => {
    const e = errors.live || errors.history || errors.status;
    if (!e) banners.clear(); else banners.error(e[0], e[1]);
  };

  let status = null, statusAt = 0;
  async function loadStatus() {
    try {
      status = await api('GET', '/status', { query: { format: 'json' } });
      statusAt = Date.now();
      errors.status = null;
    } catch (e) {
      errors.status = ['Reading /status failed', e];
    }
    showErrors();
    paintStatus();
  }
  function paintStatus() {
    const v = (status && status.version) || (ctx.session && ctx.session.version) || '–';
    cards.version.value.textContent = v;
    cards.version.value.title = v;
    let up = status && status.uptime;
    if (typeof up === 'number') {
      up += (Date.now() - statusAt) / 1000;
      cards.uptime.value.textContent = fmtDuration(up);
      const since = fmtTime(Date.now() - up * 1000);
      cards.uptime.detail.textContent = 'since ' + (up < 20 * 3600 ? since.slice(11, 16) : since.slice(0, 10));
      cards.uptime.detail.title = since;
    } else if (up) {
      cards.uptime.value.textContent = String(up);
    }
  }

  function paintRing() {
    live.set([ring.t, ring.recv, ring.sent, ring.drop]);
    const n = ring.t.length;
    liveFig.dataset.points = n;
    liveFig.dataset.lastReceived = n ? ring.recv[n - 1] : '';
    liveFig.dataset.maxReceived = n ? Math.max(...ring.recv) : '';
    liveFig.dataset.lastSent = n ? ring.sent[n - 1] : '';
  }

  async function pollLive() {
    try {
      const m = await get('/monitor_current');
      errors.live = null;
      const t = Date.now() / 1000;
      ring.t.push(t); ring.recv.push(+m.received_msg_rate || 0); ring.sent.push(+m.sent_msg_rate || 0); ring.drop.push(+m.dropped_msg_rate || 0);
      if (ring.t.length > RING) for (const k of Object.keys(ring)) ring[k].splice(0, ring[k].length - RING);
      const live_ = m.live_connections ?? m.connections;
      cards.conns.value.textContent = fmtInt(live_);
      cards.conns.detail.textContent = m.connections !== undefined && m.live_connections !== undefined
        ? `of ${fmtInt(m.connections)} with sessions` : '\u00a0';
      cards.sessions.value.textContent = fmtInt(m.sessions);
      cards.subs.value.textContent = fmtInt(m.subscriptions);
      cards.topics.value.textContent = fmtInt(m.topics);
      cards.retained.value.textContent = fmtInt(m.retained_msg_count);
      clear(readout,
        h('span', h('i.swatch.c1'), 'received ', h('b', fmtRate(+m.received_msg_rate || 0)), ' msg/s'),
        h('span', h('i.swatch.c2'), 'sent ', h('b', fmtRate(+m.sent_msg_rate || 0)), ' msg/s'),
        h('span', h('i.swatch.c3'), 'dropped ', h('b', fmtRate(+m.dropped_msg_rate || 0)), ' msg/s'));
      paintRing();
    } catch (e) {
      errors.live = ['Reading /monitor_current failed (live numbers are stale)', e];
    }
    paintStatus();
    showErrors();
  }

  async function loadHistory() {
    const span = historySpan;
    try {
      const rows = await get('/monitor', { latest: span });
      if (stopped || span !== historySpan) return;
      rateChart.setWindow(span);
      countChart.setWindow(span);
      errors.history = null;
      const list = Array.isArray(rows) ? rows : [];
      const xs = list.map((r) => r.time_stamp / 1000);
      rateChart.set([xs, list.map((r) => (r.received || 0) / 10), list.map((r) => (r.sent || 0) / 10), list.map((r) => (r.dropped || 0) / 10)]);
      countChart.set([xs, list.map((r) => r.connections ?? null), list.map((r) => r.subscriptions ?? null), list.map((r) => r.topics ?? null)]);
      const want = Math.round(span / 10);
      histNote.textContent = list.length >= want - 1
        ? `${fmtInt(list.length)} samples, one every 10 s`
        : `${fmtInt(list.length)} of ${fmtInt(want)} samples so far (the server takes one every 10 s and keeps 24 h)`;
    } catch (e) {
      errors.history = ['Reading /monitor failed (history charts are stale)', e];
      histNote.textContent = describe(e);
    }
    showErrors();
  }

  paintRing();
  await Promise.all([loadStatus(), pollLive(), loadHistory()]);
  const t1 = setInterval(pollLive, LIVE_MS);
  const t2 = setInterval(loadHistory, HISTORY_MS);
  const t3 = setInterval(loadStatus, 60000);
  onCleanup(() => { stopped = true; clearInterval(t1); clearInterval(t2); clearInterval(t3); live.destroy(); rateChart.destroy(); countChart.destroy(); });
}
