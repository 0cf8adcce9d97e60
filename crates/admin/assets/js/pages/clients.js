// Clients: server-side paged list (GET /clients), search by client id (contains =
// like_clientid, or exact = clientid), username, state, protocol; kick.

import { del, get, seg } from '../api.js';
import { h, countCell, protoName, timeCell, emptyState, confirmDialog, toast, isViewer } from '../ui.js';
import { listPage } from '../list.js';

export function kick(clientid, after) {
  return confirmDialog('Kick client?', `Disconnect ${clientid}? A v5 client gets DISCONNECT 0x98 (administrative action); it may reconnect.`, 'Kick')
    .then(async (ok) => {
      if (!ok) return false;
      try {
        await del(`/clients/${seg(clientid)}`);
        toast(`Kicked ${clientid}`);
      } catch (e) {
        toast(`Kicking ${clientid} failed: ${e.message}`, 6000);
      }
      if (after) await after();
      return true;
    });
}

export const stateCell = (c) => c.connected
  ? h('span.pill.ok', 'connected')
  : h('span.pill', 'disconnected');

export async function render(ctx) {
  const viewer = isViewer(ctx.session);
  const list = listPage({
    ctx,
    title: 'Clients',
    what: 'clients',
    filters: [
      { key: 'clientid', label: 'Client ID', placeholder: 'part of the id', map: (v, s) => (s.match === 'exact' ? { clientid: v } : { like_clientid: v }) },
      { key: 'match', label: 'Match', kind: 'select', initial: 'contains', options: [['contains', 'contains'], ['exact', 'exact id']], map: () => ({}) },
      { key: 'username', label: 'Username (exact)', placeholder: 'username' },
      { key: 'conn_state', label: 'State', kind: 'select', options: [['', 'any'], ['connected', 'connected'], ['disconnected', 'disconnected']] },
      { key: 'proto_ver', label: 'Protocol', kind: 'select', options: [['', 'any'], ['5', 'MQTT 5.0'], ['4', 'MQTT 3.1.1'], ['3', 'MQTT 3.1']] },
    ],
    fetch: (q) => get('/clients', q),
    empty: (filtered) => filtered
      ? emptyState('No client matches these filters.', 'Clear a filter to see more.')
      : emptyState('No clients.', 'Clients appear here when they connect (or keep a session).'),
    columns: (reload) => [
      { label: 'Client ID', cls: 'id', cell: (c) => h('a', { href: '#/clients/' + encodeURIComponent(c.clientid), title: c.clientid }, c.clientid) },
      { label: 'Username', cell: (c) => c.username ?? h('span.faint', '–') },
      { label: 'Address', cls: 'mono', cell: (c) => (c.ip_address ? `${c.ip_address.includes(':') ? `[${c.ip_address}]` : c.ip_address}:${c.port}` : h('span.faint', '–')) },
      { label: 'Protocol', cell: (c) => protoName(c.proto_ver) },
      { label: 'State', cell: stateCell },
      { label: 'Keepalive', num: true, title: 'seconds', cell: (c) => (c.keepalive ? `${c.keepalive} s` : '–') },
      { label: 'Subs', num: true, title: 'subscriptions', cell: (c) => countCell(c.subscriptions_cnt) },
      { label: 'Queue', num: true, title: 'messages queued for the client (mqueue_len)', cell: (c) => countCell(c.mqueue_len) },
      { label: 'Inflight', num: true, title: 'QoS 1/2 messages sent, not yet acknowledged', cell: (c) => countCell(c.inflight_cnt) },
      { label: 'Connected', cell: (c) => timeCell(c.connected_at) },
      { label: '', cls: 'actions', cell: (c) => (viewer ? null : h('button.small.danger', { onclick: () => kick(c.clientid, reload), dataset: { kick: c.clientid } }, 'Kick')) },
    ],
  });
  await list.load();
}
