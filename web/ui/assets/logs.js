// infergate dashboard: the Logs view — the appliance's own recent log records
// (GET /api/v1/logs), filtered by level, component and text, kept live by the
// events stream's "logs" events. Loaded after app.js, whose helpers it uses.
'use strict';

const LOG_ROWS = 500; // rows kept on the page; older ones are in the ring and the log stream
const LOG_LEVELS = { DEBUG: -4, INFO: 0, WARN: 4, ERROR: 8 };

const logView = { entries: [], last: 0, skipped: 0, components: new Set() };

function logFilter() {
  return { level: $('#log-level').value, component: $('#log-component').value, q: $('#log-q').value.trim() };
}

function logMatches(e, f) {
  const lv = LOG_LEVELS[e.level] ?? 0;
  if (lv < (LOG_LEVELS[f.level.toUpperCase()] ?? 0)) return false;
  if (f.component && e.component !== f.component) return false;
  if (f.q) {
    const q = f.q.toLowerCase();
    if (!e.msg.toLowerCase().includes(q) && !(e.attrs || []).some((a) => a.v.toLowerCase().includes(q))) return false;
  }
  return true;
}

async function loadLogs() {
  const f = logFilter();
  const q = new URLSearchParams({ limit: String(LOG_ROWS), level: f.level });
  if (f.component) q.set('component', f.component);
  if (f.q) q.set('q', f.q);
  try {
    const res = await api('GET', '/logs?' + q);
    logView.entries = res.entries;
    logView.last = res.last;
    logView.skipped = 0;
    for (const c of res.components) logView.components.add(c);
    renderLogComponents();
    renderLogs();
  } catch (e) { if (e.status !== 401) toast(e.message, true); }
}

// onLogEvent takes the records the events stream sends after each snapshot.
function onLogEvent(ev) {
  if (ev.last <= logView.last) return;
  logView.last = ev.last;
  logView.skipped += ev.skipped || 0;
  let newComponent = false;
  for (const e of ev.entries) {
    if (e.component && !logView.components.has(e.component)) { logView.components.add(e.component); newComponent = true; }
  }
  if (state.view !== 'logs' || $('#log-paused').checked) return;
  if (newComponent) renderLogComponents();
  const f = logFilter();
  logView.entries = logView.entries.concat(ev.entries.filter((e) => logMatches(e, f)));
  if (logView.entries.length > LOG_ROWS) logView.entries.splice(0, logView.entries.length - LOG_ROWS);
  renderLogs();
}

function renderLogComponents() {
  const sel = $('#log-component');
  const cur = sel.value;
  const names = [...logView.components].sort();
  sel.replaceChildren(h('option', { value: '', 'data-i18n': 'logs.any' }, t('logs.any')), ...names.map((c) => h('option', { value: c }, c)));
  sel.value = names.includes(cur) ? cur : '';
}

function renderLogs() {
  const rows = logView.entries.slice().reverse().map((e) => h('tr', { class: 'log-row', dataset: { level: e.level, component: e.component || '' } },
    h('td', { class: 'nowrap mono small', title: e.time }, fmtTime(e.time)),
    h('td', {}, h('span', { class: 'badge level-' + e.level }, e.level)),
    h('td', { class: 'mono small' }, e.component || '–'),
    h('td', { class: 'log-msg' }, e.msg, ...(e.attrs || []).map((a) => h('span', { class: 'log-attr mono small' }, ' ' + a.k + '=' + a.v)))));
  $('#log-table tbody').replaceChildren(...rows);
  $('#log-empty').hidden = rows.length > 0;
  $('#log-count').textContent = t('logs.count', { n: fmtInt(rows.length) }) +
    (logView.skipped ? ' · ' + t('logs.skipped', { n: fmtInt(logView.skipped) }) : '');
}

function enterLogs() {
  loadLogs();
}

function bindLogs() {
  for (const id of ['#log-level', '#log-component']) $(id).addEventListener('change', loadLogs);
  $('#log-filter').addEventListener('submit', (ev) => { ev.preventDefault(); loadLogs(); });
  $('#log-paused').addEventListener('change', (ev) => { if (!ev.target.checked) loadLogs(); });
}

views.logs = { enter: enterLogs };
eventHandlers.logs = onLogEvent;
binders.push(bindLogs);
