// infergate dashboard: the Settings view — every setting with its value, where it came from
// and whether a change applies at once or after a restart (GET /api/v1/settings), editable
// by admins (PUT /api/v1/settings: checked like the config file, written to it), and the
// audit log. Loaded after app.js, whose helpers it uses.
'use strict';

async function enterSettings() {
  try {
    const [settings, audit] = await Promise.all([api('GET', '/settings'), api('GET', '/audit?limit=50')]);
    renderSettings(settings);
    $('#audit tbody').replaceChildren(...(audit.entries.length ? audit.entries.map((a) => h('tr', {},
      h('td', { title: a.at }, fmtTime(a.at)), h('td', { class: 'mono small' }, a.actor || '–'),
      h('td', {}, h('span', { class: 'badge' }, a.action)), h('td', { class: 'small' }, a.detail || ''))) :
      [h('tr', {}, h('td', { colspan: 4, class: 'muted' }, 'No admin actions yet.'))]));
  } catch (e) { if (e.status !== 401) toast(e.message, true); }
}

function renderSettings(s) {
  const items = s.items;
  $('#settings-card .table-wrap').hidden = !items;
  $('#settings-form').hidden = !items;
  $('#settings').hidden = !!items;
  if (!items) { // a backend that only describes its settings
    $('#settings').textContent = JSON.stringify(s, null, 2);
    return;
  }
  const admin = state.role === 'admin';
  const editable = admin && s.editable;
  $('#settings-file').textContent = s.editable ? t('settings.file', { file: s.config_file }) : (s.read_only_reason || '');
  $('#settings-problems').hidden = true;
  $('#settings-table tbody').replaceChildren(...items.map((it) => settingRow(it, editable)));
  settingsFilter();
  settingsDirty();
}

function settingText(v) {
  return v === null || v === undefined ? '' : String(v);
}

function settingRow(it, editable) {
  const locked = it.locked || (it.secret ? t('settings.secret') : '');
  const can = editable && !locked;
  let input;
  if (it.type === 'bool') {
    input = h('input', { type: 'checkbox', class: 'setting-input', 'aria-label': it.key, disabled: !can });
    input.checked = it.value === true;
  } else {
    input = h('input', { type: 'text', class: 'setting-input mono', size: 22, 'aria-label': it.key, disabled: !can,
      spellcheck: 'false', inputmode: ['int', 'float'].includes(it.type) ? 'decimal' : undefined });
    input.value = settingText(it.value);
  }
  input.dataset.orig = it.type === 'bool' ? String(it.value === true) : input.value;
  input.addEventListener(it.type === 'bool' ? 'change' : 'input', settingsDirty);
  const valueCell = h('td', {}, input);
  if (it.pending !== undefined) {
    valueCell.append(' ', h('span', { class: 'badge warn setting-pending', title: t('settings.pending.help') },
      t('settings.pending', { v: settingText(it.pending) })));
  }
  if (locked && editable) valueCell.append(h('div', { class: 'muted small' }, locked));
  const data = { key: it.key, type: it.type, source: it.source };
  if (it.pending !== undefined) data.pending = '1';
  return h('tr', { dataset: data },
    h('td', {}, h('div', { class: 'mono' }, it.key, it.flag ? h('span', { class: 'muted' }, '  ' + it.flag) : null),
      h('div', { class: 'muted small setting-help' }, it.help)),
    valueCell,
    h('td', {}, h('span', { class: 'badge ' + (it.live ? 'ok' : ''), title: it.live ? t('settings.live.help') : t('settings.restart.help') },
      it.live ? t('settings.live') : t('settings.restart'))),
    h('td', { class: 'hide-sm' }, h('span', { class: 'badge' }, it.source)),
    h('td', { class: 'mono small hide-sm' }, settingText(it.default)));
}

function settingValue(input) {
  return input.type === 'checkbox' ? String(input.checked) : input.value;
}

// settingsDirty marks the rows whose value was changed and enables Save.
function settingsDirty() {
  let n = 0;
  for (const row of $$('#settings-table tbody tr')) {
    const input = $('.setting-input', row);
    const changed = settingValue(input) !== input.dataset.orig;
    row.classList.toggle('setting-changed', changed);
    if (changed) n++;
  }
  $('#settings-save').disabled = n === 0;
  $('#settings-reset').disabled = n === 0;
  $('#settings-dirty').textContent = n ? t('settings.dirty', { n }) : '';
}

function settingsFilter() {
  const q = $('#settings-q').value.trim().toLowerCase();
  const onlySet = $('#settings-only-set').checked;
  for (const row of $$('#settings-table tbody tr')) {
    const match = !q || row.textContent.toLowerCase().includes(q);
    const set = row.dataset.source !== 'default' || row.dataset.pending || row.classList.contains('setting-changed');
    row.hidden = !match || (onlySet && !set);
  }
}

async function saveSettings(btn) {
  const body = {};
  for (const row of $$('#settings-table tbody tr.setting-changed')) {
    const input = $('.setting-input', row);
    body[row.dataset.key] = input.type === 'checkbox' ? input.checked : input.value;
  }
  for (const row of $$('#settings-table tbody tr')) row.classList.remove('setting-bad');
  btn.disabled = true;
  try {
    const res = await api('PUT', '/settings', body);
    const fmt = (list) => list.map((c) => c.key + ' = ' + settingText(c.value)).join(', ');
    const parts = [];
    if (res.applied.length) parts.push(t('settings.applied', { list: fmt(res.applied) }));
    if (res.restart.length) parts.push(t('settings.afterRestart', { list: fmt(res.restart) }));
    toast(parts.join(' · ') || t('settings.nochange'));
    await enterSettings();
  } catch (e) {
    if (e.status === 401) return;
    const problems = (e.data && e.data.problems) || [];
    const box = $('#settings-problems');
    box.replaceChildren(...(problems.length ? problems.map((p) => h('li', { class: 'mono small' }, p.message)) : [h('li', {}, e.message)]));
    box.hidden = false;
    for (const p of problems) {
      const row = $$('#settings-table tbody tr').find((r) => r.dataset.key === p.key);
      if (row) row.classList.add('setting-bad');
    }
    toast(t('settings.refused'), true);
    settingsDirty();
  }
}

function bindSettings() {
  $('#settings-form').addEventListener('submit', (ev) => { ev.preventDefault(); saveSettings($('#settings-save')); });
  $('#settings-reset').addEventListener('click', () => enterSettings());
  $('#settings-q').addEventListener('input', settingsFilter);
  $('#settings-only-set').addEventListener('change', settingsFilter);
}

views.settings = { enter: enterSettings };
binders.push(bindSettings);
