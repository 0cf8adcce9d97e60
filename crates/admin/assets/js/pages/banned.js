// Banned: who may not connect (GET/POST /banned, DELETE /banned/{as}/{who}).

import { get, post, del, seg } from '../api.js';
import { h, fmtTime, fmtAgo, emptyState, confirmDialog, toast, field, isViewer } from '../ui.js';
import { listPage } from '../list.js';

const AS = [['clientid', 'Client ID'], ['username', 'Username'], ['peerhost', 'IP address'], ['peerhost_net', 'IP network (CIDR)']];
const asLabel = (a) => (AS.find((x) => x[0] === a) || [a, a])[1];

export async function render(ctx) {
  const viewer = isViewer(ctx.session);
  let list;
  const as = h('select', { id: 'ban-as' }, AS.map(([v, l]) => h('option', { value: v }, l)));
  const who = h('input.wide', { id: 'ban-who', required: true, placeholder: 'id, name, 10.0.0.7, 10.0.0.0/24', spellcheck: 'false' });
  const dur = h('select', { id: 'ban-for' }, [['3600', '1 hour'], ['86400', '1 day'], ['604800', '7 days'], ['2592000', '30 days'], ['', 'forever']].map(([v, l]) => h('option', { value: v, selected: v === '86400' }, l)));
  const reason = h('input.wide', { id: 'ban-reason', placeholder: 'optional, shown here' });
  const form = viewer ? null : h('form.panel', {
    onsubmit: async (e) => {
      e.preventDefault();
      const body = { as: as.value, who: who.value.trim() };
      if (!body.who) return;
      if (dur.value) body.until = new Date(Date.now() + +dur.value * 1000).toISOString();
      if (reason.value.trim()) body.reason = reason.value.trim();
      try {
        await post('/banned', body);
        toast(`Banned ${asLabel(body.as).toLowerCase()} ${body.who}`);
        who.value = ''; reason.value = '';
      } catch (e2) {
        list.banners.error(`Banning ${body.who} failed`, e2);
      }
      await list.load();
    },
  },
  h('h2', 'Ban'),
  h('p.muted', 'Applied at once: new connections that match are refused, connected clients that match are kicked.'),
  h('div.formrow', field('By', as), field('Who', who), field('For', dur), field('Reason', reason), h('button.primary', { type: 'submit', id: 'ban-submit' }, 'Ban')));

  list = listPage({
    ctx,
    title: 'Banned',
    what: 'the ban list',
    above: form,
    fetch: (q) => get('/banned', q),
    empty: () => emptyState('Nobody is banned.', viewer ? '' : 'Use the form above to ban a client id, username or address.'),
    columns: (reload) => [
      { label: 'By', cell: (b) => h('span.pill.info', asLabel(b.as)) },
      { label: 'Who', cls: 'id', cell: (b) => h('span', { title: b.who }, b.who) },
      { label: 'Until', cell: (b) => (b.until ? h('span', { title: fmtTime(b.until) }, fmtTime(b.until), h('span.faint', ` (${fmtAgo(b.until)})`)) : h('span.pill.warn', 'forever')) },
      { label: 'Reason', cls: 'wrap', cell: (b) => b.reason || h('span.faint', '–') },
      { label: 'Set by', cell: (b) => b.by || '–' },
      { label: '', cls: 'actions', cell: (b) => (viewer ? null : h('button.small.danger', {
        onclick: async () => {
          if (!(await confirmDialog('Lift the ban?', `${asLabel(b.as)} ${b.who} may connect again.`, 'Lift ban'))) return;
          try { await del(`/banned/${seg(b.as)}/${seg(b.who)}`); toast(`Lifted the ban on ${b.who}`); } catch (e) { list.banners.error(`Lifting the ban on ${b.who} failed`, e); }
          await reload();
        },
      }, 'Lift ban')) },
    ],
  });
  await list.load();
}
