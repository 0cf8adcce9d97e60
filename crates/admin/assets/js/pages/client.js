// One client: connection facts, queue / inflight / subscription counts, its subscriptions
// (unsubscribe), subscribe on its behalf, kick. Refreshes every 5 s while open.

import { get, post, seg, describe, ApiError } from '../api.js';
import { h, clear, fmtInt, fmtTime, fmtAgo, fmtDuration, protoName, table, emptyState, bannerSlot, field, toast, isViewer, actionButton } from '../ui.js';
import { kick, stateCell } from './clients.js';

export async function render(ctx) {
  const id = ctx.parts.slice(1).join('/');
  const viewer = isViewer(ctx.session);
  const banners = bannerSlot();
  const head = h('div.pagehead');
  const props = h('div');
  const stats = h('div.stat3');
  const subsBox = h('div');
  const subsPanel = h('section.panel.flush', { id: 'client-subs' },
    h('div.panelhead', h('h2', 'Subscriptions'), h('span.note', 'asked of the live connection')), subsBox);
  const subForm = viewer ? null : subscribeForm(id, () => load(), banners);
  clear(ctx.main,
    h('div', h('a', { href: '#/clients' }, '‹ Clients')),
    head, banners.el,
    h('div.detailgrid',
      h('section.panel', h('h2', 'Connection'), props),
      h('div',
        stats,
        subsPanel,
        subForm)));

  let gone = false;
  async function load() {
    let c;
    try {
      c = await get(`/clients/${seg(id)}`);
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) {
        gone = true;
        paintGone();
        return;
      }
      banners.error(`Loading client ${id} failed`, e);
      return;
    }
    banners.clear();
    paint(c);
    try {
      const subs = await get(`/clients/${seg(id)}/subscriptions`);
      paintSubs(Array.isArray(subs) ? subs : (subs && subs.data) || []);
    } catch (e) {
      clear(subsBox, h('div.empty', 'Could not load subscriptions: ' + describe(e)));
    }
  }

  function paintHead(c) {
    clear(head,
      h('h1.mono', { id: 'client-title' }, id),
      c ? stateCell(c) : h('span.pill.bad', { id: 'client-gone' }, 'gone'),
      h('span.grow'),
      c && !viewer ? h('button.danger', { id: 'kick', onclick: () => kick(id, load) }, 'Kick') : null,
      h('button', { onclick: () => load() }, 'Refresh'));
  }

  function paintGone() {
    paintHead(null);
    clear(props, h('div.empty', h('b', 'No such client.'), `The broker has neither a connection nor a kept session for ${id} (kicked, or its session ended).`));
    clear(stats);
    subsPanel.classList.add('hidden');
    if (subForm) subForm.classList.add('hidden');
  }

  function paint(c) {
    gone = false;
    subsPanel.classList.remove('hidden');
    paintHead(c);
    const addr = c.ip_address ? `${c.ip_address.includes(':') ? `[${c.ip_address}]` : c.ip_address}:${c.port}` : '–';
    const rows = [
      ['Username', c.username ?? '–'],
      ['Address', addr],
      ['Protocol', protoName(c.proto_ver)],
      ['Keepalive', c.keepalive ? `${c.keepalive} s` : 'none'],
      ['Clean start', c.clean_start ? 'yes' : 'no'],
      ['Session expiry', c.expiry_interval ? fmtDuration(c.expiry_interval) : 'at disconnect'],
      ['Connected at', h('span', fmtTime(c.connected_at), h('span.faint', ` (${fmtAgo(c.connected_at)})`))],
      ['Node', c.node || '–'],
    ];
    if (c.disconnected_at) rows.push(['Disconnected at', fmtTime(c.disconnected_at)]);
    clear(props, h('dl.props', rows.map(([k, v]) => [h('dt', k), h('dd', v)])));
    clear(stats,
      statCard('Queue length', c.mqueue_len, 'messages waiting to be sent', 'stat-queue'),
      statCard('Inflight', c.inflight_cnt, 'QoS 1/2 sent, awaiting ack', 'stat-inflight'),
      statCard('Subscriptions', c.subscriptions_cnt, 'filters held', 'stat-subs'));
    if (subForm) subForm.classList.toggle('hidden', !c.connected);
  }

  function paintSubs(subs) {
    clear(subsBox, table([
      { label: 'Topic filter', cls: 'wrap', cell: (s) => h('code', s.topic) },
      { label: 'QoS', num: true, cell: (s) => s.qos },
      { label: 'No local', cell: (s) => (s.nl ? 'yes' : 'no') },
      { label: 'Retain as published', cell: (s) => (s.rap ? 'yes' : 'no') },
      { label: 'Retain handling', num: true, cell: (s) => s.rh ?? 0 },
      { label: '', cls: 'actions', cell: (s) => (viewer ? null : actionButton('.small', 'Unsubscribe', async () => {
        try {
          await post(`/clients/${seg(id)}/unsubscribe`, { topic: s.topic });
          toast(`Unsubscribed ${id} from ${s.topic}`);
        } catch (e) { banners.error(`Unsubscribing ${id} from ${s.topic} failed`, e); }
        await load();
      })) },
    ], subs, emptyState('No subscriptions.', 'This client holds no topic filter.')));
  }

  await load();
  const timer = setInterval(() => { if (!gone) load(); }, 5000);
  ctx.onCleanup(() => clearInterval(timer));
}

function statCard(label, n, detail, id) {
  return h('div.card', h('div.label', label), h('div.value', { id }, fmtInt(n)), h('div.detail', detail));
}

function subscribeForm(id, reload, banners) {
  const topic = h('input.wide', { placeholder: 'e.g. sensors/+/temp', id: 'sub-topic', required: true, spellcheck: 'false' });
  const qos = h('select', { id: 'sub-qos' }, [0, 1, 2].map((q) => h('option', { value: q }, `QoS ${q}`)));
  const nl = h('input', { type: 'checkbox' });
  const rap = h('input', { type: 'checkbox' });
  const rh = h('select', [[0, '0: send retained'], [1, '1: only if new'], [2, '2: never']].map(([v, l]) => h('option', { value: v }, l)));
  const form = h('form.panel', {
    onsubmit: async (e) => {
      e.preventDefault();
      if (!topic.value.trim()) return;
      try {
        const r = await post(`/clients/${seg(id)}/subscribe`, { topic: topic.value.trim(), qos: +qos.value, nl: nl.checked ? 1 : 0, rap: rap.checked ? 1 : 0, rh: +rh.value });
        toast(`Subscribed ${id} to ${r && r.topic ? r.topic : topic.value}`);
        topic.value = '';
      } catch (e2) {
        banners.error(`Subscribing ${id} to ${topic.value} failed`, e2);
      }
      await reload();
    },
  },
  h('h2', 'Subscribe on behalf of this client'),
  h('div.formrow',
    field('Topic filter', topic), field('QoS', qos), field('Retain handling', rh),
    field('No local', nl, 'check'), field('Retain as published', rap, 'check'),
    h('button.primary', { type: 'submit', id: 'sub-submit' }, 'Subscribe')));
  return form;
}
