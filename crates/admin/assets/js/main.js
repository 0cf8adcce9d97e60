// Shell and hash router: #/overview, #/clients?like_clientid=a&page=2, #/clients/<id>, ...
// Each page module exports render(ctx); ctx.onCleanup(f) registers what to stop (timers)
// when the page is left. Query state lives in the hash so reload and Back keep it.

import { api, session, setUnauthorizedHandler } from './api.js';
import { h, clear, fmtTime } from './ui.js';
import * as login from './pages/login.js';
import * as overview from './pages/overview.js';
import * as clients from './pages/clients.js';
import * as client from './pages/client.js';
import * as subscriptions from './pages/subscriptions.js';
import * as topics from './pages/topics.js';
import * as retained from './pages/retained.js';
import * as banned from './pages/banned.js';
import * as rules from './pages/rules.js';
import * as users from './pages/users.js';

const NAV = [
  ['overview', 'Overview'],
  ['clients', 'Clients'],
  ['subscriptions', 'Subscriptions'],
  ['topics', 'Topics'],
  ['retained', 'Retained'],
  ['banned', 'Banned'],
  ['rules', 'Rules'],
  null,
  ['users', 'Users & API keys'],
];

const app = document.getElementById('app');
let cleanups = [];
let shell = null; // {main, nav, health}

export function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [p, q] = raw.split('?');
  const parts = (p || '').split('/').filter((x) => x !== '').map(decodeURIComponent);
  return { parts, query: new URLSearchParams(q || '') };
}

/** Navigate to a page with query parameters (empty values dropped). */
export function go(path, query) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query || {})) if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  const s = q.toString();
  const target = '#/' + path + (s ? '?' + s : '');
  if (location.hash === target) route(); else location.hash = target;
}

/** Change the hash's query without adding history entries or re-rendering. */
export function replaceQuery(query) {
  const { parts } = parseHash();
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  const s = q.toString();
  history.replaceState(null, '', '#/' + parts.map(encodeURIComponent).join('/') + (s ? '?' + s : ''));
}

function runCleanups() {
  for (const f of cleanups) { try { f(); } catch { /* ignore */ } }
  cleanups = [];
}

function toLogin() {
  shell = null;
  runCleanups();
  const { parts, query } = parseHash();
  const back = parts[0] && parts[0] !== 'login' && parts[0] !== 'password' ? location.hash.slice(1) : '';
  session.clear();
  location.hash = '#/login' + (back ? '?next=' + encodeURIComponent(back) : '');
  void query;
}

setUnauthorizedHandler(() => {
  if (session.get()) toLogin();
});

function buildShell() {
  const s = session.get();
  const healthDot = h('span.dot.off');
  const healthText = h('span', 'connecting…');
  const health = h('span.health', { title: 'Whether the last API call reached the server' }, healthDot, healthText);
  const nav = h('nav', { 'aria-label': 'Pages' }, NAV.map((n) => n ? h('a', { href: '#/' + n[0], dataset: { page: n[0] } }, n[1]) : h('div.sep')));
  const main = h('main', { id: 'main' });
  const el = h('div.shell',
    h('header.topbar',
      h('a.brand', { href: '#/overview' }, h('img', { src: '/assets/favicon.svg', alt: '' }), 'Hermod',
        h('span.ver', s && s.version ? s.version : '')),
      health,
      h('span.grow'),
      h('span.usermenu',
        h('span.who', s ? `${s.username} · ${s.role || 'administrator'}` : ''),
        h('button.small', { onclick: () => go('password', { voluntary: 1 }) }, 'Change password'),
        h('button.small', { onclick: logout, id: 'logout' }, 'Log out'))),
    h('aside.sidebar', nav),
    main);
  clear(app, el);
  let failingSince = null;
  const onReach = (e) => {
    if (e.detail.ok) {
      failingSince = null;
      healthDot.className = 'dot ok';
      healthText.textContent = 'connected';
    } else {
      failingSince = failingSince || new Date();
      healthDot.className = 'dot bad';
      healthText.textContent = 'server unreachable since ' + fmtTime(failingSince).slice(11);
    }
  };
  window.addEventListener('hermod:reach', onReach);
  shell = { main, nav, el, off: () => window.removeEventListener('hermod:reach', onReach) };
}

async function logout() {
  const s = session.get();
  try { if (s) await api('POST', '/logout', { body: { username: s.username }, timeoutMs: 3000 }); } catch { /* token dropped anyway */ }
  session.clear();
  if (shell) shell.off();
  shell = null;
  go('login');
}

const PAGES = { overview, clients, subscriptions, topics, retained, banned, rules, users };

async function route() {
  runCleanups();
  const { parts, query } = parseHash();
  const s = session.get();
  const name = parts[0] || '';
  if (name === 'login' || !s || !s.token) {
    if (shell) { shell.off(); shell = null; }
    if (name !== 'login') { toLogin(); return; }
    document.title = 'Log in · Hermod';
    login.renderLogin(app, { next: query.get('next') || '' });
    return;
  }
  if (s.mustChange && name !== 'password') { go('password'); return; }
  if (name === 'password') {
    if (shell) { shell.off(); shell = null; }
    document.title = 'Change password · Hermod';
    login.renderChangePassword(app, { forced: !!s.mustChange });
    return;
  }
  let page = PAGES[name];
  let navName = name;
  if (name === 'clients' && parts.length > 1) { page = client; navName = 'clients'; }
  if (!page) { go('overview'); return; }
  if (!shell) buildShell();
  for (const a of shell.nav.querySelectorAll('a')) a.classList.toggle('active', a.dataset.page === navName);
  const main = clear(shell.main);
  const ctx = {
    main, parts, query, session: s, go, replaceQuery,
    onCleanup: (f) => cleanups.push(f),
  };
  const label = NAV.find((n) => n && n[0] === navName);
  document.title = (label ? label[1] : name) + ' · Hermod';
  try {
    await page.render(ctx);
  } catch (e) {
    console.error(e);
    main.appendChild(h('div.banner', h('span.what', 'This page failed to render: '), h('span.detail', String(e && e.message || e))));
  }
}

window.addEventListener('hashchange', route);
route();
