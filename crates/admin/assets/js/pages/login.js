// Login, and the password change forced on the first login with the initial password.

import { api, session, seg, describe } from '../api.js';
import { h, clear, field } from '../ui.js';

// The password just typed at login, kept in memory only (not in storage) so the forced change
// does not ask for it again; a reload asks.
let justTyped = '';

function box(...kids) {
  return h('div.loginwrap', h('div.panel.loginbox',
    h('div.brand', h('img', { src: '/assets/favicon.svg', alt: '' }), 'Hermod'), ...kids));
}

function errorLine(el, what, err) {
  clear(el, h('div.banner', { role: 'alert' }, h('div', h('span.what', what + ': '), h('span.detail', err))));
}

export function renderLogin(app, { next }) {
  const user = h('input', { name: 'username', autocomplete: 'username', required: true, value: 'admin', id: 'login-user' });
  const pass = h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true, id: 'login-pass' });
  const err = h('div');
  const btn = h('button.primary', { type: 'submit' }, 'Log in');
  const form = h('form', {
    onsubmit: async (e) => {
      e.preventDefault();
      btn.disabled = true;
      clear(err);
      try {
        const r = await api('POST', '/login', { body: { username: user.value.trim(), password: pass.value } });
        session.set({
          token: r.token, username: user.value.trim(), role: r.role || 'administrator', version: r.version || '',
          mustChange: !!r.password_change_required,
        });
        if (r.password_change_required) {
          justTyped = pass.value;
          location.hash = '#/password';
        } else {
          location.hash = next ? '#' + next : '#/overview';
        }
      } catch (e2) {
        const msg = e2.code === 'BAD_USERNAME_OR_PWD' ? 'wrong username or password'
          : e2.code === 'LOGIN_THROTTLED' ? 'too many failed attempts from this address; wait a minute and try again'
            : describe(e2);
        errorLine(err, 'Login failed', msg);
        btn.disabled = false;
        pass.select();
      }
    },
  },
  err,
  field('Username', user),
  field('Password', pass),
  btn,
  h('p.hint', 'First start: the password of ', h('code', 'admin'), ' is in ', h('code', '<store path>/initial-admin-password'), '.'));
  clear(app, box(form));
  (user.value ? pass : user).focus();
}

export function renderChangePassword(app, { forced }) {
  const s = session.get();
  const remembered = justTyped;
  const old = h('input', { type: 'password', autocomplete: 'current-password', value: remembered, id: 'pw-old', required: true });
  const nw = h('input', { type: 'password', autocomplete: 'new-password', id: 'pw-new', required: true, minlength: 8 });
  const again = h('input', { type: 'password', autocomplete: 'new-password', id: 'pw-again', required: true, minlength: 8 });
  const err = h('div');
  const btn = h('button.primary', { type: 'submit' }, 'Change password');
  const form = h('form', {
    onsubmit: async (e) => {
      e.preventDefault();
      clear(err);
      if (nw.value.length < 8) { errorLine(err, 'Not changed', 'the new password needs at least 8 characters'); return; }
      if (nw.value !== again.value) { errorLine(err, 'Not changed', 'the two new passwords differ'); return; }
      if (nw.value === old.value) { errorLine(err, 'Not changed', 'the new password is the same as the current one'); return; }
      btn.disabled = true;
      try {
        await api('POST', `/users/${seg(s.username)}/change_pwd`, { body: { old_pwd: old.value, new_pwd: nw.value } });
        justTyped = '';
        // A fresh token for the new password (the server may end sessions of the old one).
        try {
          const r = await api('POST', '/login', { body: { username: s.username, password: nw.value } });
          session.update({ token: r.token, role: r.role || s.role, version: r.version || s.version, mustChange: !!r.password_change_required });
        } catch {
          session.update({ mustChange: false });
        }
        location.hash = '#/overview';
      } catch (e2) {
        if (!session.get()) return; // 401: sent back to login
        errorLine(err, 'Password not changed', describe(e2));
        btn.disabled = false;
      }
    },
  },
  forced
    ? h('div.banner.warn', h('div', h('span.what', 'Set your own password. '),
      h('span.detail', `${s.username} is still using the generated initial password. Choose a new one to continue.`)))
    : h('h2', `Change the password of ${s.username}`),
  err,
  remembered && forced ? null : field('Current password', old),
  field('New password (at least 8 characters)', nw),
  field('New password again', again),
  btn,
  forced
    ? h('button', { type: 'button', onclick: () => { session.clear(); location.hash = '#/login'; } }, 'Log out')
    : h('button', { type: 'button', onclick: () => history.back() }, 'Cancel'));
  clear(app, box(form));
  (remembered && forced ? nw : old).focus();
}
