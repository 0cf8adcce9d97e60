// Subscriptions: every client's filters, server-side paged (GET /subscriptions).

import { get } from '../api.js';
import { h, emptyState } from '../ui.js';
import { listPage } from '../list.js';

export async function render(ctx) {
  const list = listPage({
    ctx,
    title: 'Subscriptions',
    what: 'subscriptions',
    sub: 'shared subscriptions show as $share/group/filter',
    filters: [
      { key: 'clientid', label: 'Client ID (exact)', placeholder: 'client id' },
      { key: 'topic', label: 'Filter (exact)', placeholder: 'a/+/c' },
      { key: 'match_topic', label: 'Matching topic', placeholder: 'a/b/c' },
      { key: 'share_group', label: 'Share group', placeholder: 'group' },
      { key: 'qos', label: 'QoS', kind: 'select', options: [['', 'any'], ['0', '0'], ['1', '1'], ['2', '2']] },
    ],
    fetch: (q) => get('/subscriptions', q),
    empty: (filtered) => filtered
      ? emptyState('No subscription matches these filters.')
      : emptyState('No subscriptions.', 'Subscriptions appear here when clients subscribe.'),
    columns: () => [
      { label: 'Client ID', cls: 'id', cell: (s) => h('a', { href: '#/clients/' + encodeURIComponent(s.clientid), title: s.clientid }, s.clientid) },
      { label: 'Topic filter', cls: 'wrap', cell: (s) => h('code', s.topic) },
      { label: 'QoS', num: true, cell: (s) => s.qos },
      { label: 'No local', cell: (s) => (s.nl ? 'yes' : 'no') },
      { label: 'Retain as published', cell: (s) => (s.rap ? 'yes' : 'no') },
      { label: 'Retain handling', num: true, cell: (s) => s.rh ?? 0 },
      { label: 'Node', cell: (s) => h('span.muted', s.node || '–') },
    ],
  });
  await list.load();
}
