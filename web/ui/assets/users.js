// infergate dashboard: the Users view and the role-based UI (issue 15). Loaded after app.js,
// whose helpers ($, h, api, run, toast, views, state) it uses. Every text shown is in
// USERS_TEXT below, so it can be translated in one place.
'use strict';

const USERS_TEXT = {
  nav: 'Users',
  title: 'Users',
  you: 'Your account',
  signedInAs: 'Logged in as',
  role: 'Role',
  viaToken: 'You are logged in with the admin token. It has no password and no API tokens of its own: create a user for yourself, or rotate the token below.',
  roleHelp: {
    viewer: 'viewer: reads everything, changes nothing',
    operator: 'operator: also pauses and resumes the pipeline, replays and deletes DLQ records, sends test requests',
    admin: 'admin: also models, settings, users and the admin token',
  },
  changePassword: 'Change your password',
  oldPassword: 'Current password',
  newPassword: 'New password (at least 10 characters)',
  savePassword: 'Change password',
  passwordChanged: 'Password changed',
  tokens: 'Your API tokens',
  apiTokens: 'API tokens',
  tokensHelp: 'For scripts: send "Authorization: Bearer <token>". A token acts with your role; only its hash is kept, so it is shown once.',
  tokenName: 'Token name',
  createToken: 'Create token',
  revoke: 'Revoke',
  revoked: 'Token revoked',
  noTokens: 'No API tokens.',
  newToken: 'New token (copy it now, it is shown once):',
  created: 'Created',
  users: 'All users',
  name: 'Name',
  password: 'Password (at least 10 characters)',
  createUser: 'Create user',
  userCreated: 'User created',
  setRole: 'Set role',
  roleSet: 'Role changed',
  resetPassword: 'Reset password',
  passwordReset: 'Password reset',
  newPasswordFor: 'New password for',
  del: 'Delete',
  deleted: 'User deleted',
  confirmDelete: 'Delete user %s? Their sessions and API tokens stop working.',
  noUsers: 'No users yet: the admin token is the only login.',
  actions: 'Actions',
  adminToken: 'Admin token',
  adminTokenHelp: 'The bootstrap token in <data dir>/admin-token: the first login and the CLI on this box use it. Rotating it writes a new one to the file; the old one stops working at once, and its sessions end.',
  adminTokenFixed: 'The admin token is set by http.admin_token or INFERGATE_ADMIN_TOKEN: change it there and restart.',
  rotate: 'Rotate the admin token',
  confirmRotate: 'Rotate the admin token? The old token and its sessions stop working; the CLI reads the new one from the file.',
  rotated: 'New admin token (also in the admin-token file):',
  roleNames: { viewer: 'viewer', operator: 'operator', admin: 'admin' },
};

const ROLE_RANK = { viewer: 1, operator: 2, admin: 3 };

// may reports whether the logged-in role includes need (the API's own rule, see web/users.go).
function may(need) { return (ROLE_RANK[state.role] || 0) >= ROLE_RANK[need]; }

// ROLE_NEEDS marks the controls of the static page with the least role that may use them;
// users.css hides a marked control from roles below it (and before the role is known). The
// API checks every call regardless: hiding only spares the user a 403.
const ROLE_NEEDS = [
  ['#dlq-replay-selected, #dlq-delete-selected, #dlq-replay-all, #dlq-delete-all', 'operator'],
  ['#d-replay-wait, #d-replay, #d-delete', 'operator'],
  ['#test-form', 'operator'],
  ['#models-reload, #rollout-form, #capture-form, #replay-form', 'admin'],
];
const ROLE_NEEDS_CLOSEST = [
  ['#d-delete-after', 'label', 'operator'],
  ['#upload-form', 'article', 'admin'],
  ['#label-form', 'article', 'admin'],
];

function markRoleNeeds() {
  for (const [sel, need] of ROLE_NEEDS) for (const el of $$(sel)) el.dataset.need = need;
  for (const [sel, up, need] of ROLE_NEEDS_CLOSEST) {
    const el = $(sel);
    if (el && el.closest(up)) el.closest(up).dataset.need = need;
  }
}

function addUsersView() {
  const nav = $('#nav');
  nav.append(h('a', { href: '#users', 'data-view': 'users' }, USERS_TEXT.nav));
  const sec = h('section', { id: 'view-users', class: 'view', hidden: true },
    h('div', { class: 'grid' },
      h('article', { class: 'card', id: 'me-card' },
        h('h2', {}, USERS_TEXT.you),
        h('dl', { class: 'kv', id: 'me-meta' }),
        h('p', { class: 'muted small', id: 'me-token-note', hidden: true }, USERS_TEXT.viaToken),
        h('form', { id: 'password-form', class: 'stack', hidden: true },
          h('h3', {}, USERS_TEXT.changePassword),
          h('label', {}, USERS_TEXT.oldPassword, h('input', { type: 'password', id: 'pw-old', autocomplete: 'current-password', required: true })),
          h('label', {}, USERS_TEXT.newPassword, h('input', { type: 'password', id: 'pw-new', autocomplete: 'new-password', minlength: 10, required: true })),
          h('button', { type: 'submit', class: 'primary', id: 'pw-submit' }, USERS_TEXT.savePassword))),
      h('article', { class: 'card', id: 'tokens-card', hidden: true },
        h('h2', {}, USERS_TEXT.tokens),
        h('p', { class: 'muted small' }, USERS_TEXT.tokensHelp),
        h('table', { class: 'table compact', id: 'tokens-table' },
          h('thead', {}, h('tr', {}, h('th', {}, USERS_TEXT.tokenName), h('th', {}, 'ID'), h('th', {}, USERS_TEXT.created), h('th', {}))),
          h('tbody')),
        h('form', { id: 'token-form', class: 'toolbar' },
          h('label', {}, USERS_TEXT.tokenName + ' ', h('input', { id: 'token-name', value: 'script', maxlength: 64 })),
          h('button', { type: 'submit', id: 'token-create' }, USERS_TEXT.createToken)),
        h('div', { id: 'token-new', class: 'result ok', hidden: true })),
      h('article', { class: 'card wide', id: 'users-card', 'data-need': 'admin' },
        h('h2', {}, USERS_TEXT.users),
        h('div', { class: 'table-wrap' }, h('table', { class: 'table', id: 'users-table' },
          h('thead', {}, h('tr', {}, h('th', {}, USERS_TEXT.name), h('th', {}, USERS_TEXT.role), h('th', { class: 'hide-sm' }, USERS_TEXT.created),
            h('th', { class: 'hide-sm' }, USERS_TEXT.apiTokens), h('th', {}, USERS_TEXT.actions))),
          h('tbody'))),
        h('form', { id: 'user-form', class: 'toolbar' },
          h('label', {}, USERS_TEXT.name + ' ', h('input', { id: 'user-name', required: true, pattern: '[a-z0-9][a-z0-9._\\-]{0,31}', size: 12, autocomplete: 'off' })),
          h('label', {}, USERS_TEXT.role + ' ', roleSelect('user-role', 'viewer')),
          h('label', {}, USERS_TEXT.password + ' ', h('input', { id: 'user-password', type: 'password', minlength: 10, required: true, autocomplete: 'new-password' })),
          h('button', { type: 'submit', class: 'primary', id: 'user-create' }, USERS_TEXT.createUser)),
        h('p', { class: 'muted small' }, Object.values(USERS_TEXT.roleHelp).join(' · '))),
      h('article', { class: 'card', id: 'admin-token-card', 'data-need': 'admin' },
        h('h2', {}, USERS_TEXT.adminToken),
        h('p', { class: 'muted small', id: 'admin-token-help' }, USERS_TEXT.adminTokenHelp),
        h('button', { type: 'button', class: 'danger', id: 'admin-token-rotate' }, USERS_TEXT.rotate),
        h('div', { id: 'admin-token-new', class: 'result ok', hidden: true }))));
  $('main').append(sec);
  views.users = { enter: enterUsers };
  bindUsers();
}

function roleSelect(id, selected) {
  return h('select', { id }, ...Object.keys(ROLE_RANK).map((r) =>
    h('option', { value: r, selected: r === selected }, USERS_TEXT.roleNames[r])));
}

// shownOnce puts a secret into box with a label, for the user to copy.
function shownOnce(box, label, secret, id) {
  box.hidden = false;
  box.replaceChildren(h('strong', {}, label), h('pre', { id, class: 'mono' }, secret));
}

async function enterUsers() {
  await loadMe();
  if (may('admin')) await loadUsers();
}

async function loadMe() {
  try {
    const me = await api('GET', '/me');
    $('#me-meta').replaceChildren(
      h('dt', {}, USERS_TEXT.signedInAs), h('dd', { id: 'me-actor' }, me.actor),
      h('dt', {}, USERS_TEXT.role), h('dd', {}, h('span', { class: 'badge', id: 'me-role' }, USERS_TEXT.roleNames[me.role] || me.role),
        ' ', h('span', { class: 'muted small' }, USERS_TEXT.roleHelp[me.role] || '')));
    const isUser = !!me.user;
    $('#me-token-note').hidden = isUser;
    $('#password-form').hidden = !isUser;
    $('#tokens-card').hidden = !isUser;
    const rot = $('#admin-token-rotate');
    rot.disabled = !me.admin_token_rotatable;
    $('#admin-token-help').textContent = me.admin_token_rotatable ? USERS_TEXT.adminTokenHelp : USERS_TEXT.adminTokenFixed;
    if (!isUser) return;
    const toks = me.user.tokens || [];
    $('#tokens-table tbody').replaceChildren(...(toks.length ? toks.map((t) => h('tr', { dataset: { token: t.id } },
      h('td', {}, t.name), h('td', { class: 'mono' }, t.id), h('td', { title: t.created_at }, fmtTime(t.created_at)),
      h('td', {}, h('button', { type: 'button', class: 'ghost', onclick: (ev) => run(ev.target, async () => {
        await api('DELETE', '/users/' + encodeURIComponent(state.actor) + '/tokens/' + encodeURIComponent(t.id));
        toast(USERS_TEXT.revoked);
        $('#token-new').hidden = true;
        loadMe();
      }) }, USERS_TEXT.revoke)))) : [h('tr', {}, h('td', { colspan: 4, class: 'muted' }, USERS_TEXT.noTokens))]));
  } catch (e) { if (e.status !== 401) toast(e.message, true); }
}

async function loadUsers() {
  try {
    const res = await api('GET', '/users');
    const us = res.users || [];
    $('#users-table tbody').replaceChildren(...(us.length ? us.map(userRow) :
      [h('tr', {}, h('td', { colspan: 5, class: 'muted' }, USERS_TEXT.noUsers))]));
  } catch (e) { if (e.status !== 401) toast(e.message, true); }
}

function userRow(u) {
  const path = '/users/' + encodeURIComponent(u.name);
  const sel = roleSelect('', u.role);
  const pw = h('input', { type: 'password', minlength: 10, placeholder: USERS_TEXT.newPasswordFor + ' ' + u.name, autocomplete: 'new-password', class: 'user-pw', size: 14 });
  return h('tr', { dataset: { user: u.name } },
    h('td', {}, u.name), h('td', {}, sel, ' ', h('button', { type: 'button', class: 'user-set-role', onclick: (ev) => run(ev.target, async () => {
      await api('PATCH', path, { role: sel.value });
      toast(USERS_TEXT.roleSet + ': ' + u.name + ' → ' + sel.value);
      if (u.name === state.actor) { location.reload(); return; }
      loadUsers();
    }) }, USERS_TEXT.setRole)),
    h('td', { class: 'hide-sm', title: u.created_at }, fmtTime(u.created_at)),
    h('td', { class: 'hide-sm' }, (u.tokens || []).length),
    h('td', {}, pw, ' ', h('button', { type: 'button', class: 'user-reset-pw', onclick: (ev) => run(ev.target, async () => {
      await api('PATCH', path, { password: pw.value });
      pw.value = '';
      toast(USERS_TEXT.passwordReset + ': ' + u.name);
    }) }, USERS_TEXT.resetPassword), ' ',
    h('button', { type: 'button', class: 'danger user-delete', onclick: (ev) => {
      if (!confirm(USERS_TEXT.confirmDelete.replace('%s', u.name))) return;
      run(ev.target, async () => {
        await api('DELETE', path);
        toast(USERS_TEXT.deleted + ': ' + u.name);
        loadUsers();
      });
    } }, USERS_TEXT.del)));
}

function bindUsers() {
  $('#password-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    run($('#pw-submit'), async () => {
      await api('POST', '/users/' + encodeURIComponent(state.actor) + '/password',
        { old_password: $('#pw-old').value, new_password: $('#pw-new').value });
      $('#pw-old').value = '';
      $('#pw-new').value = '';
      toast(USERS_TEXT.passwordChanged);
    });
  });
  $('#token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    run($('#token-create'), async () => {
      const res = await api('POST', '/users/' + encodeURIComponent(state.actor) + '/tokens', { name: $('#token-name').value.trim() });
      shownOnce($('#token-new'), USERS_TEXT.newToken, res.token, 'token-new-value');
      await loadMe();
    });
  });
  $('#user-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    run($('#user-create'), async () => {
      const name = $('#user-name').value.trim();
      await api('POST', '/users', { name, role: $('#user-role').value, password: $('#user-password').value });
      $('#user-name').value = '';
      $('#user-password').value = '';
      toast(USERS_TEXT.userCreated + ': ' + name);
      loadUsers();
    });
  });
  $('#admin-token-rotate').addEventListener('click', (ev) => {
    if (!confirm(USERS_TEXT.confirmRotate)) return;
    run(ev.target, async () => {
      const res = await api('POST', '/admin-token/rotate');
      shownOnce($('#admin-token-new'), USERS_TEXT.rotated, res.token, 'admin-token-value');
    });
  });
}

// The session tells the role (app.js fires infergate:session after GET /api/v1/session);
// the page shows who is logged in next to the Log out button.
document.addEventListener('infergate:session', (ev) => {
  const s = ev.detail || {};
  const pill = h('span', { id: 'whoami', class: 'pill pill-muted', title: USERS_TEXT.roleHelp[s.role] || '' },
    s.actor + ' · ' + (USERS_TEXT.roleNames[s.role] || s.role));
  $('#logout').before(pill);
});

markRoleNeeds();
addUsersView();
