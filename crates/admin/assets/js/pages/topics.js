// Topics: the distinct subscribed filters (GET /topics), paged; each links to its subscribers.

import { get } from '../api.js';
import { h, emptyState } from '../ui.js';
import { listPage } from '../list.js';

export async function render(ctx) {
  const list = listPage({
    ctx,
    title: 'Topics',
    what: 'topics',
    sub: 'distinct topic filters with at least one subscriber',
    filters: [{ key: 'topic', label: 'Filter (exact)', placeholder: 'a/+/c' }],
    fetch: (q) => get('/topics', q),
    empty: (filtered) => filtered
      ? emptyState('No subscribed filter is exactly this.', 'To find the filters a topic matches, use Subscriptions › Matching topic.')
      : emptyState('No topics.', 'A filter appears here while some client is subscribed to it.'),
    columns: () => [
      { label: 'Topic filter', cls: 'wrap', cell: (t) => h('code', t.topic) },
      { label: 'Node', cell: (t) => h('span.muted', t.node || '–') },
      { label: '', cls: 'actions', cell: (t) => h('a', { href: '#/subscriptions?topic=' + encodeURIComponent(t.topic) }, 'Subscribers ›') },
    ],
  });
  await list.load();
}
