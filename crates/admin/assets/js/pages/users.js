// Dashboard users (GET/POST /users, DELETE /users/{name}, change_pwd) and API keys
// (GET/POST /api_key, PUT/DELETE /api_key/{name}); a new key's secret is shown once.

import { get, post, put, del, seg, describe } from '../api.js';
import { h, clear, table, emptyState, bannerSlot, field, modal, confirmDialog, toast, fmtTime, isViewer } from '../ui.js';

export async function render(ctx) {
  const me = ctx.session.username;
  const viewer = isViewer(ctx.session);
  const banners = bannerSlot();
  const usersBox = h('div');
  const keysBox = h('div');

  // ---- users ----
  const uName = h('input', { id: 'user-name', required: true, autocomplete: 'off', spellcheck: 'false' });
  const uPass = h('input', { id: 'user-pass', type: 'password', required: true, minlength: 8, autocomplete: 'new-password' });
  const uRole = h('select', { id: 'user-role' }, h('option', { value: 'administrator' }, 'administrator'), h('option', { value: 'viewer' }, 'viewer (read only)'));
  const uDesc = h('input.wide', { id: 'user-desc', placeholder: 'optional' });
  const userForm = h('form.formrow.panelpad', {
    onsubmit: async (e) => {
      e.preventDefault();
      try {
        await post('/users', { username: uName.value.trim(), password: uPass.value, role: uRole.value, description: uDesc.value });
        toast(`Added user ${uName.value.trim()}`);
        uName.value = ''; uPass.value = ''; uDesc.value = '';
      } catch (e2) { banners.error(`Adding user ${uName.value.trim()} failed`, e2); }
      await loadUsers();
    },
  }, field('Username', uName), field('Password (8+ characters)', uPass), field('Role', uRole), field('Description', uDesc), h('button.primary', { type: 'submit' }, 'Add user'));

  // ---- API keys ----
  const kName = h('input', { id: 'key-name', required: true, autocomplete: 'off', spellcheck: 'false' });
  const kRole = h('select', { id: 'key-role' }, h('option', { value: 'administrator' }, 'administrator'), h('option', { value: 'viewer' }, 'viewer (read only)'));
  const kExp = h('input', { id: 'key-expires', type: 'date', title: 'leave empty for a key that never expires' });
  const kDesc = h('input.wide', { id: 'key-desc', placeholder: 'what uses this key' });
  const keyForm = h('form.formrow.panelpad', {
    onsubmit: async (e) => {
      e.preventDefault();
      const body = { name: kName.value.trim(), role: kRole.value, desc: kDesc.value, enable: true };
      if (kExp.value) body.expired_at = new Date(kExp.value + 'T23:59:59').toISOString();
      try {
        const k = await post('/api_key', body);
        kName.value = ''; kDesc.value = ''; kExp.value = '';
        await loadKeys();
        await showSecret(k);
      } catch (e2) { banners.error(`Creating API key ${body.name} failed`, e2); await loadKeys(); }
    },
  }, field('Name', kName), field('Role', kRole), field('Expires (optional)', kExp), field('Description', kDesc), h('button.primary', { type: 'submit', id: 'key-submit' }, 'Create key'));

  clear(ctx.main,
    h('div.pagehead', h('h1', 'Users & API keys'), h('span.sub', viewer ? 'you have read-only access' : `logged in as ${me}`)),
    banners.el,
    h('section.panel.flush', h('div.panelhead', h('h2', 'Dashboard users'), h('span.note', 'log in here and call the API with a bearer token')), viewer ? null : userForm, usersBox),
    h('section.panel.flush', h('div.panelhead', h('h2', 'API keys'), h('span.note', 'for scripts: HTTP Basic auth with the key and its secret')), viewer ? null : keyForm, keysBox));

  async function loadUsers() {
    try {
      const r = await get('/users');
      const users = Array.isArray(r) ? r : (r && r.data) || [];
      clear(usersBox, table([
        { label: 'Username', cell: (u) => [h('b', u.username), u.username === me ? h('span.faint', ' (you)') : null] },
        { label: 'Role', cell: (u) => h('span.pill' + (u.role === 'viewer' ? '' : '.info'), u.role || 'administrator') },
        { label: 'Description', cls: 'wrap', cell: (u) => u.description || h('span.faint', '–') },
        { label: '', cls: 'actions', cell: (u) => (viewer ? null : [
          u.username === me ? h('button.small', { onclick: () => ctx.go('password', { voluntary: 1 }) }, 'Change password') : h('button.small', { onclick: () => changePassword(u.username) }, 'Set password'),
          u.username === me ? null : h('button.small.danger', {
            onclick: async () => {
              if (!(await confirmDialog('Delete user?', `${u.username} will no longer be able to log in; their tokens stop working.`, 'Delete'))) return;
              try { await del(`/users/${seg(u.username)}`); toast(`Deleted user ${u.username}`); } catch (e) { banners.error(`Deleting user ${u.username} failed`, e); }
              await loadUsers();
            },
          }, 'Delete'),
        ]) },
      ], users, emptyState('No users.')));
    } catch (e) {
      clear(usersBox, h('div.empty', 'Could not load users: ' + describe(e)));
    }
  }

  async function loadKeys() {
    try {
      const r = await get('/api_key');
      const keys = Array.isArray(r) ? r : (r && r.data) || [];
      clear(keysBox, table([
        { label: 'Name', cell: (k) => h('b', k.name) },
        { label: 'Key', cls: 'mono', cell: (k) => k.api_key },
        { label: 'Role', cell: (k) => h('span.pill' + (k.role === 'viewer' ? '' : '.info'), k.role || 'administrator') },
        { label: 'State', cell: (k) => (k.enable === false ? h('span.pill', 'disabled') : expired(k) ? h('span.pill.bad', 'expired') : h('span.pill.ok', 'enabled')) },
        { label: 'Expires', cell: (k) => (k.expired_at && k.expired_at !== 'infinity' ? fmtTime(k.expired_at) : h('span.faint', 'never')) },
        { label: 'Description', cls: 'wrap', cell: (k) => k.desc || h('span.faint', '–') },
        { label: '', cls: 'actions', cell: (k) => (viewer ? null : [
          h('button.small', {
            onclick: async () => {
              try { await put(`/api_key/${seg(k.name)}`, { enable: k.enable === false }); } catch (e) { banners.error(`Updating API key ${k.name} failed`, e); }
              await loadKeys();
            },
          }, k.enable === false ? 'Enable' : 'Disable'),
          h('button.small.danger', {
            onclick: async () => {
              if (!(await confirmDialog('Delete API key?', `Scripts using ${k.name} (${k.api_key}) will get 401.`, 'Delete'))) return;
              try { await del(`/api_key/${seg(k.name)}`); toast(`Deleted API key ${k.name}`); } catch (e) { banners.error(`Deleting API key ${k.name} failed`, e); }
              await loadKeys();
            },
          }, 'Delete'),
        ]) },
      ], keys, emptyState('No API keys.', viewer ? '' : 'Create one above for scripts and monitoring.')));
    } catch (e) {
      clear(keysBox, h('div.empty', 'Could not load API keys: ' + describe(e)));
    }
  }

  /** An administrator sets another user's password (no old password needed for that). */
  async function changePassword(username) {
    const nw = h('input', { type: 'password', autocomplete: 'new-password', id: 'cp-new', minlength: 8 });
    const err = h('div');
    await modal({
      title: `Set a new password for ${username}`, narrow: true,
      body: h('form.loginbox', { onsubmit: (e) => e.preventDefault() }, err,
        h('p.muted', 'Their current password stops working; tell them the new one.'),
        field('New password (8+ characters)', nw)),
      actions: (close) => [
        h('button', { onclick: () => close() }, 'Cancel'),
        h('button.primary', {
          onclick: async () => {
            if (nw.value.length < 8) { clear(err, h('div.banner', h('span.what', 'The new password needs at least 8 characters.'))); return; }
            try {
              await post(`/users/${seg(username)}/change_pwd`, { new_pwd: nw.value });
              toast(`Set a new password for ${username}`);
              close(true);
            } catch (e) { clear(err, h('div.banner', h('span.what', 'Not changed: '), h('span.detail', describe(e)))); }
          },
        }, 'Set password'),
      ],
    });
  }

  await Promise.all([loadUsers(), loadKeys()]);
}

const expired = (k) => k.expired_at && k.expired_at !== 'infinity' && new Date(k.expired_at).getTime() < Date.now();

async function showSecret(k) {
  const secret = h('div.secret', { id: 'new-secret' }, k.api_secret || '(the server returned no secret)');
  await modal({
    title: `API key ${k.name} created`,
    body: h('div',
      h('div.banner.warn', h('span.what', 'Copy the secret now: it is shown only once and cannot be read back.')),
      h('h3', 'Key'), h('div.secret', k.api_key), h('h3.section-gap', 'Secret'), secret,
      h('p.muted', 'Use them as HTTP Basic credentials: ', h('code', 'curl -u KEY:SECRET http://HOST/api/v5/stats'))),
    actions: (close) => [
      h('button', {
        onclick: async () => {
          try { await navigator.clipboard.writeText(k.api_secret || ''); toast('Secret copied'); } catch { toast('Copy failed: select the secret and copy it by hand'); }
        },
      }, 'Copy secret'),
      h('button.primary', { onclick: () => close() }, 'I have stored it'),
    ],
  });
}
