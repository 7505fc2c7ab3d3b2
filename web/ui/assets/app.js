// infergate dashboard: vanilla JavaScript, no build step. Every value from the server is put
// into the page with textContent (never innerHTML), and the page runs under a strict CSP.
'use strict';

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

// h builds an element: h('td', {class: 'num'}, 'text', childNode, ...).
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

const state = {
  csrf: '',
  view: '',
  timers: [],
  dlq: { records: [], cursor: '', total: 0, selected: new Set(), current: null, filter: {} },
  history: [],
  es: null,
};

// ---------------------------------------------------------------- API

class APIError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(method, path, body, opts = {}) {
  const headers = {};
  let payload = body;
  if (method !== 'GET' && method !== 'HEAD') headers['X-CSRF-Token'] = state.csrf;
  if (body !== undefined && !(body instanceof FormData) && typeof body !== 'string') {
    headers['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  } else if (typeof body === 'string') {
    headers['Content-Type'] = opts.contentType || 'application/json';
  }
  const res = await fetch('/api/v1' + path, { method, headers, body: payload, credentials: 'same-origin' });
  if (res.status === 401) {
    location.href = '/login';
    throw new APIError(401, 'session expired');
  }
  if (res.status === 204) return null;
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { error: text }; }
  if (!res.ok) {
    const e = new APIError(res.status, (data && data.error) || res.statusText);
    e.data = data; // e.g. the settings' per-key problems
    throw e;
  }
  return data;
}

function toast(msg, bad = false) {
  const t = $('#toast');
  t.textContent = msg;
  t.className = 'toast' + (bad ? ' bad' : '');
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, bad ? 7000 : 3500);
}

// run wraps an action: disables the button while it runs and reports errors.
async function run(btn, fn) {
  if (btn) btn.disabled = true;
  try { return await fn(); } catch (e) {
    if (e.status !== 401) toast(e.message, true);
  } finally { if (btn) btn.disabled = false; }
}

// ---------------------------------------------------------------- formatting

const nf = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
const nf2 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });
function fmtRate(v) { return v === null || v === undefined ? '–' : (v >= 100 ? nf.format(Math.round(v)) : nf2.format(v)); }
function fmtMs(v) { return v === null || v === undefined ? '–' : (v >= 100 ? nf.format(Math.round(v)) : nf2.format(v)); }
function fmtInt(v) { return v === null || v === undefined ? '–' : new Intl.NumberFormat().format(v); }
function fmtBytes(n) {
  if (!n) return '0 B';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return nf.format(n) + ' ' + u[i];
}
function fmtTime(s) {
  if (!s) return '';
  const d = new Date(s);
  const today = new Date();
  if (d.toDateString() === today.toDateString()) return d.toLocaleTimeString();
  return d.toLocaleString();
}
function ago(s) {
  const sec = Math.max(0, (Date.now() - new Date(s).getTime()) / 1000);
  if (sec < 60) return Math.round(sec) + ' s ago';
  if (sec < 3600) return Math.round(sec / 60) + ' min ago';
  if (sec < 86400) return Math.round(sec / 3600) + ' h ago';
  return Math.round(sec / 86400) + ' d ago';
}
function stateClass(s) {
  // Sidecar states carry a reason after a colon ("ready: serving demo (version 1)").
  s = String(s || '').split(':')[0].trim();
  if (['ok', 'running', 'ready', 'AVAILABLE', 'closed'].includes(s)) return 'ok';
  if (['down', 'circuit_open', 'open', 'END', 'UNAVAILABLE', 'crashloop', 'crash-loop', 'failed', 'stopped'].includes(s)) return 'bad';
  return 'warn';
}

// ---------------------------------------------------------------- router

const views = {
  overview: { enter: enterOverview },
  dlq: { enter: enterDLQ },
  models: { enter: enterModels },
  broker: { enter: enterBroker },
  ingress: { enter: enterIngress },
  sidecar: { enter: enterSidecar },
};

// Views in their own files (logs.js, …) add themselves to views, and here: the events
// stream's other event types they handle, and what binds their forms at start.
const eventHandlers = {};
const snapshotHooks = []; // called with every snapshot, whatever the view
const binders = [];

function route() {
  const name = (location.hash || '#overview').slice(1).split(/[/?]/)[0];
  const v = views[name] ? name : 'overview';
  for (const t of state.timers) clearInterval(t);
  state.timers = [];
  state.view = v;
  for (const sec of $$('.view')) sec.hidden = sec.id !== 'view-' + v;
  for (const a of $$('#nav a')) a.classList.toggle('active', a.dataset.view === v);
  document.title = (v === 'overview' ? '' : $('#nav a[data-view="' + v + '"]').textContent + ' · ') + 'infergate';
  views[v].enter();
}

// every runs fn now and then periodically while the current view is shown.
function every(ms, fn) {
  fn();
  state.timers.push(setInterval(fn, ms));
}

// ---------------------------------------------------------------- live events

function connectEvents() {
  if (state.es) state.es.close();
  const es = new EventSource('/api/v1/events');
  state.es = es;
  const live = $('#live');
  es.addEventListener('open', () => { live.textContent = 'live'; live.className = 'pill pill-ok'; });
  es.addEventListener('error', () => {
    live.textContent = 'reconnecting…'; live.className = 'pill pill-warn';
    // A 401 also lands here; check the session so an expired login goes to the login page.
    api('GET', '/session').catch(() => {});
  });
  es.addEventListener('history', (e) => {
    state.history = JSON.parse(e.data) || [];
    drawCharts();
  });
  es.addEventListener('snapshot', (e) => {
    const s = JSON.parse(e.data);
    state.snapshot = s;
    state.history.push({ t: s.time, in: s.requests_per_sec, out: s.results_per_sec, dlq: s.dlq_per_sec,
      p50: s.latency_p50_ms, p99: s.latency_p99_ms, lag: s.lag_total });
    if (state.history.length > 300) state.history.splice(0, state.history.length - 300);
    if (state.view === 'overview') renderSnapshot(s);
    if (state.view === 'ingress') renderIngressRates(s.ingress);
    for (const f of snapshotHooks) f(s);
  });
  for (const [name, fn] of Object.entries(eventHandlers)) es.addEventListener(name, (e) => fn(JSON.parse(e.data)));
}

// ---------------------------------------------------------------- overview

async function enterOverview() {
  if (state.snapshot) renderSnapshot(state.snapshot);
  drawCharts();
  every(5000, loadComponents);
}

async function loadComponents() {
  try {
    const st = await api('GET', '/status');
    renderComponents(st);
    $('#footer').textContent = 'infergate ' + (st.version || 'dev') + ' · ' + st.go_version +
      (st.delivery ? ' · delivery ' + st.delivery : '') + ' · up since ' + fmtTime(st.started_at);
  } catch (e) { if (e.status !== 401) toast(e.message, true); }
}

function renderComponents(st) {
  const box = $('#components');
  box.replaceChildren();
  const parts = [['Broker', st.broker], ['Model server', st.model_server], ['Pipeline', st.pipeline], ['Store', st.store]];
  for (const [name, c] of parts) {
    c.state = c.state || 'unknown';
    const el = h('div', { class: 'component', dataset: { component: name.toLowerCase().replace(' ', '-') } },
      h('div', { class: 'name' }, name, c.mode ? ' · ' + c.mode : ''),
      h('div', { class: 'state' }, h('span', { class: 'status-dot ' + stateClass(c.state) }), c.state.replace('_', ' ')),
      h('div', { class: 'detail' }, [c.address, c.version, grpcMessage(c.detail)].filter(Boolean).join(' · ')));
    if (name === 'Pipeline') {
      const paused = c.state === 'paused';
      el.append(h('button', {
        type: 'button', id: 'pipeline-toggle', class: paused ? 'primary' : '', 'data-need': 'operator',
        onclick: (ev) => run(ev.target, async () => {
          await api('POST', paused ? '/pipeline/resume' : '/pipeline/pause');
          toast(paused ? 'Pipeline resumed' : 'Pipeline paused');
          loadComponents();
        }),
      }, paused ? 'Resume' : 'Pause'));
    }
    box.append(el);
  }
}

function renderSnapshot(s) {
  $('#tput-in').textContent = fmtRate(s.requests_per_sec);
  $('#tput-out').textContent = fmtRate(s.results_per_sec);
  $('#tput-dlq').textContent = fmtRate(s.dlq_per_sec);
  $('#lat-p50').textContent = fmtMs(s.latency_p50_ms);
  $('#lat-p99').textContent = fmtMs(s.latency_p99_ms);
  $('#pred-p99').textContent = fmtMs(s.predict_p99_ms);
  $('#totals').textContent = fmtInt(s.requests_total) + ' requests, ' + fmtInt(s.results_total) + ' results, ' +
    fmtInt(s.dlq_total) + ' dead-lettered since start';
  $('#batching').textContent = 'batch size avg ' + (s.batch_size_avg === null ? '–' : nf.format(s.batch_size_avg)) +
    ' · ' + fmtInt(s.inflight_batches) + ' batches in flight' + (s.circuit ? ' · circuit ' + s.circuit : '');

  // Lag bars, per partition.
  const lag = s.lag || [];
  $('#lag-total').textContent = 'total ' + fmtInt(s.lag_total);
  $('#lag-error').textContent = s.lag_error ? 'lag unavailable: ' + s.lag_error : '';
  // A floor for the scale: a lag of 1 is not a full bar. 1000 is where the
  // broker view marks a partition's lag as hot.
  const maxLag = Math.max(LAG_SCALE_FLOOR, ...lag.map((l) => l.lag));
  bars($('#lag-bars'), lag.map((l) => ({ key: l.topic + '/' + l.partition, label: 'partition ' + l.partition,
    title: l.topic, value: l.lag, max: maxLag, text: fmtInt(l.lag) })), 'No consumer lag reported yet.');

  // Error rates by class (every class seen since start, so a class that stopped shows 0).
  const classes = Object.keys(s.errors_total || {}).sort();
  const maxErr = Math.max(0.001, ...classes.map((c) => s.errors_per_sec[c] || 0));
  bars($('#err-bars'), classes.map((c) => ({ key: c, label: c, value: s.errors_per_sec[c] || 0, max: maxErr, err: true,
    text: fmtRate(s.errors_per_sec[c] || 0) + '/s', title: fmtInt(s.errors_total[c]) + ' total' })), 'No errors.');
  $('#store-info').textContent = fmtInt(s.store_records) + ' records in the DLQ store (' + fmtBytes(s.store_bytes) + ')';

  renderModelChips($('#overview-models'), s.models || []);
  drawCharts();
}

const LAG_SCALE_FLOOR = 1000;

function bars(box, items, emptyText) {
  if (!items.length) {
    box.replaceChildren(h('p', { class: 'muted small' }, emptyText));
    return;
  }
  // Reuse rows by key so the width transitions animate.
  const old = new Map($$('.bar-row', box).map((r) => [r.dataset.key, r]));
  const rows = items.map((it) => {
    let r = old.get(it.key);
    if (!r) {
      r = h('div', { class: 'bar-row', dataset: { key: it.key } },
        h('span', { class: 'bar-label' }), h('div', { class: 'bar-track' }, h('div', { class: 'bar-fill' + (it.err ? ' err' : '') })),
        h('span', { class: 'bar-value' }));
    }
    r.title = it.title || '';
    $('.bar-label', r).textContent = it.label;
    $('.bar-fill', r).style.width = Math.min(100, (100 * it.value) / it.max) + '%';
    $('.bar-value', r).textContent = it.text;
    return r;
  });
  box.replaceChildren(...rows);
}

// unreachable is the entry the appliance reports when the model server does
// not answer: no version, state UNAVAILABLE (not a TF Serving state).
function unreachable(v) { return v.state === 'UNAVAILABLE' && !v.version; }

// grpcMessage strips gRPC's "rpc error: code = X desc = " from an error (also
// inside one: "model server: rpc error: …").
function grpcMessage(e) { return (e || '').replace(/rpc error: code = \w+ desc = /g, ''); }

function renderModelChips(box, models) {
  if (!models.length) {
    box.replaceChildren(h('p', { class: 'muted small' }, 'No models reported yet.'));
    return;
  }
  box.replaceChildren(...models.map((m) => {
    const labels = Object.entries(m.labels || {}).map(([k, v]) => k + '→' + v).join(', ');
    return h('div', { class: 'model-chip', dataset: { model: m.name } },
      h('div', { class: 'mname' }, m.name),
      h('div', {}, ...(m.versions || []).slice(-4).map((v) => unreachable(v)
        ? h('span', { class: 'badge UNAVAILABLE', title: grpcMessage(v.error) }, 'model server unreachable')
        : h('span', { class: 'badge ' + v.state, title: v.error || '' }, 'v' + v.version + ' ' + v.state), ' ')),
      labels ? h('div', { class: 'muted small' }, labels) : null);
  }));
}

// drawCharts renders the last five minutes from state.history as SVG polylines.
function drawCharts() {
  if (state.view !== 'overview') return;
  const pts = state.history;
  lineChart($('#chart-tput'), [
    { cls: 's1', values: pts.map((p) => p.in), area: true },
    { cls: 's2', values: pts.map((p) => p.out) },
    { cls: 's3', values: pts.map((p) => p.dlq) },
  ], '/s');
  lineChart($('#chart-lat'), [
    { cls: 's1', values: pts.map((p) => p.p50) },
    { cls: 's4', values: pts.map((p) => p.p99) },
  ], ' ms');
}

const SVGNS = 'http://www.w3.org/2000/svg';
function svg(tag, attrs) {
  const el = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
}

// chartMax is the y scale of a chart: the largest value, unless a few
// outliers (the requests that waited through a pause, then finished at once)
// are far above the rest; then the 95th percentile sets the scale, so the
// normal values stay readable, and the outliers are drawn clipped at the top.
function chartMax(all) {
  if (!all.length) return 1;
  const sorted = all.slice().sort((a, b) => a - b);
  const top = sorted[sorted.length - 1];
  const p95 = sorted[Math.floor(0.95 * (sorted.length - 1))];
  const max = p95 > 0 && top > 4 * p95 ? 2 * p95 : top;
  return max <= 0 ? 1 : niceCeil(max * 1.1);
}

function lineChart(el, series, unit) {
  const W = 300, H = 90, N = 300;
  const all = series.flatMap((s) => s.values.filter((v) => v !== null && v !== undefined));
  const max = chartMax(all);
  el.dataset.max = max;
  el.dataset.clipped = all.some((v) => v > max) ? 'yes' : 'no';
  const kids = [];
  for (const f of [0.5, 1]) kids.push(svg('line', { class: 'grid-line', x1: 0, x2: W, y1: H - H * f + 0.5, y2: H - H * f + 0.5 }));
  for (const s of series) {
    const off = N - s.values.length;
    let d = '';
    let pen = false;
    let firstX = null, lastX = null;
    s.values.forEach((v, i) => {
      if (v === null || v === undefined) { pen = false; return; }
      const x = ((off + i) / (N - 1)) * W;
      const y = H - (Math.min(v, max) / max) * (H - 4);
      d += (pen ? 'L' : 'M') + x.toFixed(1) + ' ' + y.toFixed(1);
      pen = true;
      if (firstX === null) firstX = x;
      lastX = x;
    });
    if (!d) continue;
    if (s.area && firstX !== null) kids.push(svg('path', { class: 'area', d: d + 'L' + lastX.toFixed(1) + ' ' + H + 'L' + firstX.toFixed(1) + ' ' + H + 'Z' }));
    kids.push(svg('path', { class: 'series ' + s.cls, d }));
  }
  const label = svg('text', { x: 2, y: 9 });
  label.textContent = fmtRate(max) + unit + (all.some((v) => v > max) ? ' (higher values clipped)' : '');
  kids.push(label);
  el.replaceChildren(...kids);
}

function niceCeil(v) {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

// ---------------------------------------------------------------- DLQ

function enterDLQ() {
  const f = $('#dlq-filter');
  const params = new URLSearchParams(location.hash.split('?')[1] || '');
  for (const k of ['class', 'model', 'since']) if (params.has(k)) f.elements[k].value = params.get(k);
  loadDLQ(true);
}

function dlqFilter() {
  const f = $('#dlq-filter');
  const out = {};
  for (const k of ['class', 'model', 'since']) {
    const v = f.elements[k].value.trim();
    if (v) out[k] = v;
  }
  return out;
}

async function loadDLQ(reset) {
  const d = state.dlq;
  if (reset) {
    d.filter = dlqFilter();
    d.records = [];
    d.cursor = '';
    d.selected.clear();
  }
  const q = new URLSearchParams({ ...d.filter, limit: '50' });
  if (d.cursor) q.set('cursor', d.cursor);
  try {
    const res = await api('GET', '/dlq?' + q);
    d.records = d.records.concat(res.records);
    d.cursor = res.next_cursor;
    d.total = res.total;
    renderDLQ();
  } catch (e) { if (e.status !== 401) toast(e.message, true); }
}

function renderDLQ() {
  const d = state.dlq;
  const body = $('#dlq-table tbody');
  body.replaceChildren(...d.records.map((r) => {
    const cb = h('input', { type: 'checkbox', 'aria-label': 'Select ' + r.id, onclick: (ev) => {
      ev.stopPropagation();
      if (ev.target.checked) d.selected.add(r.id); else d.selected.delete(r.id);
      updateBulk();
    } });
    cb.checked = d.selected.has(r.id);
    return h('tr', { class: 'clickable' + (d.current === r.id ? ' selected' : ''), dataset: { id: r.id }, onclick: () => showRecord(r.id) },
      h('td', { class: 'check' }, cb),
      h('td', { class: 'nowrap', title: r.failed_at }, ago(r.failed_at)),
      h('td', {}, h('span', { class: 'badge ' + r.class }, r.class)),
      h('td', { class: 'hide-sm' }, r.model || '–'),
      h('td', { class: 'msg', title: r.message }, r.message),
      h('td', { class: 'hide-sm hide-detail mono small' }, r.source_topic ? r.source_topic + '/' + r.source_partition + '@' + r.source_offset : ''),
      h('td', { class: 'hide-sm hide-detail num' }, r.replays || ''));
  }));
  $('#dlq-empty').hidden = d.records.length > 0;
  $('#dlq-more').hidden = !d.cursor;
  $('#dlq-count').textContent = fmtInt(d.total) + ' matching' + (d.records.length < d.total ? ', ' + d.records.length + ' shown' : '');
  $('#dlq-replay-all').textContent = 'Replay all ' + fmtInt(d.total);
  $('#dlq-delete-all').textContent = 'Delete all ' + fmtInt(d.total);
  $('#dlq-replay-all').disabled = $('#dlq-delete-all').disabled = d.total === 0;
  updateBulk();
}

function updateBulk() {
  const n = state.dlq.selected.size;
  $('#dlq-replay-selected').disabled = $('#dlq-delete-selected').disabled = n === 0;
  $('#dlq-replay-selected').textContent = n ? 'Replay ' + n + ' selected' : 'Replay selected';
  $('#dlq-delete-selected').textContent = n ? 'Delete ' + n + ' selected' : 'Delete selected';
  const all = $('#dlq-check-all');
  all.checked = n > 0 && n === state.dlq.records.length;
  all.indeterminate = n > 0 && n < state.dlq.records.length;
}

async function showRecord(id, keepResult = false) {
  const d = state.dlq;
  try {
    const r = await api('GET', '/dlq/' + encodeURIComponent(id));
    d.current = r.id;
    d.currentRecord = r;
    $('#d-id').textContent = r.id;
    $('#d-class').textContent = r.class;
    $('#d-class').className = 'badge ' + r.class;
    $('#d-message').textContent = r.message;
    const meta = [
      ['Failed at', fmtTime(r.failed_at) + ' (' + ago(r.failed_at) + ')'],
      ['Model', r.model || '–'],
      ['Source', r.source_topic + ' partition ' + r.source_partition + ' offset ' + r.source_offset],
      ['Key', r.key !== undefined ? r.key : (r.key_base64 ? 'base64 ' + r.key_base64 : '(none)')],
      ['Attempts', r.attempts],
      ['Replays', r.replays + (r.last_replay_at ? ', last ' + fmtTime(r.last_replay_at) : '')],
      ['Size', fmtBytes(r.value_size)],
    ];
    $('#d-meta').replaceChildren(...meta.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
    const hb = $('#d-headers tbody');
    hb.replaceChildren(...(r.headers.length ? r.headers.map((x) => h('tr', {}, h('td', { class: 'mono' }, x.key),
      h('td', { class: 'mono' }, x.value_base64 ? 'base64 ' + x.value_base64 : x.value))) :
      [h('tr', {}, h('td', { class: 'muted' }, 'no headers'))]));
    const ta = $('#d-value');
    ta.value = r.value_base64 ? r.value_base64 : prettyMaybe(r.value);
    ta.dataset.base64 = r.value_base64 ? '1' : '';
    ta.dataset.original = ta.value;
    if (!keepResult) $('#d-result').hidden = true;
    $('#dlq-detail').hidden = false;
    $('.split').classList.add('with-detail');
    for (const tr of $$('#dlq-table tbody tr')) tr.classList.toggle('selected', tr.dataset.id === r.id);
  } catch (e) { if (e.status !== 401) toast(e.message, true); }
}

// prettyMaybe indents JSON for reading; the compact original is kept unless edited.
function prettyMaybe(v) {
  try { return JSON.stringify(JSON.parse(v), null, 2); } catch { return v; }
}

function closeRecord() {
  state.dlq.current = null;
  $('#dlq-detail').hidden = true;
  $('.split').classList.remove('with-detail');
  for (const tr of $$('#dlq-table tbody tr')) tr.classList.remove('selected');
}

async function replayCurrent(btn, wait) {
  const d = state.dlq;
  const r = d.currentRecord;
  const ta = $('#d-value');
  const body = { wait, delete: $('#d-delete-after').checked };
  if (ta.value !== ta.dataset.original) {
    // Send the edit; JSON is re-compacted so whitespace from pretty-printing is not sent.
    if (ta.dataset.base64) body.value_base64 = ta.value.trim();
    else {
      let v = ta.value;
      try { v = JSON.stringify(JSON.parse(v)); } catch { /* not JSON: send as typed */ }
      body.value = v;
    }
  }
  const out = $('#d-result');
  await run(btn, async () => {
    try {
      const res = await api('POST', '/dlq/' + encodeURIComponent(r.id) + '/replay', body);
      out.hidden = false;
      out.className = 'result ok';
      if (wait) {
        out.replaceChildren(h('strong', {}, 'Result' + (res.edited ? ' of the edited request' : '') + ' in ' + fmtMs(res.latency_ms) + ' ms'),
          h('pre', { id: 'd-result-json' }, JSON.stringify(res.result !== undefined ? res.result : res.result_text, null, 2)));
      } else {
        out.replaceChildren(h('strong', {}, 'Replayed to the requests topic.'));
      }
      out.scrollIntoView({ block: 'nearest' });
      toast('Replayed ' + r.id);
      if (body.delete) closeRecord(); else showRecord(r.id, true);
      loadDLQ(true);
    } catch (e) {
      if (e.status === 401) return;
      out.hidden = false;
      out.className = 'result bad';
      out.replaceChildren(h('strong', {}, 'Failed again'), h('pre', { id: 'd-result-error' }, e.message));
      out.scrollIntoView({ block: 'nearest' });
      showRecord(r.id, true);
      loadDLQ(true);
    }
  });
}

async function bulk(btn, action, body, confirmText) {
  if (!confirm(confirmText)) return;
  await run(btn, async () => {
    const res = await api('POST', '/dlq/' + action, body);
    toast(action === 'replay' ? 'Replayed ' + res.replayed + ' records' : 'Deleted ' + res.deleted + ' records');
    closeRecord();
    loadDLQ(true);
  });
}

function bindDLQ() {
  $('#dlq-filter').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams(dlqFilter()).toString();
    history.replaceState(null, '', '#dlq' + (q ? '?' + q : ''));
    closeRecord();
    loadDLQ(true);
  });
  $('#dlq-refresh').addEventListener('click', () => loadDLQ(true));
  $('#dlq-more').addEventListener('click', () => loadDLQ(false));
  $('#d-close').addEventListener('click', closeRecord);
  $('#dlq-check-all').addEventListener('change', (ev) => {
    for (const r of state.dlq.records) if (ev.target.checked) state.dlq.selected.add(r.id); else state.dlq.selected.delete(r.id);
    renderDLQ();
  });
  $('#d-replay-wait').addEventListener('click', (ev) => replayCurrent(ev.target, true));
  $('#d-replay').addEventListener('click', (ev) => replayCurrent(ev.target, false));
  $('#d-delete').addEventListener('click', (ev) => run(ev.target, async () => {
    const id = state.dlq.current;
    await api('DELETE', '/dlq/' + encodeURIComponent(id));
    toast('Deleted ' + id);
    closeRecord();
    loadDLQ(true);
  }));
  $('#dlq-replay-selected').addEventListener('click', (ev) => {
    const ids = [...state.dlq.selected];
    bulk(ev.target, 'replay', { ids }, 'Replay ' + ids.length + ' records to the requests topic?');
  });
  $('#dlq-delete-selected').addEventListener('click', (ev) => {
    const ids = [...state.dlq.selected];
    bulk(ev.target, 'delete', { ids }, 'Delete ' + ids.length + ' records? This cannot be undone.');
  });
  $('#dlq-replay-all').addEventListener('click', (ev) =>
    bulk(ev.target, 'replay', { filter: state.dlq.filter }, 'Replay all ' + state.dlq.total + ' matching records?'));
  $('#dlq-delete-all').addEventListener('click', (ev) =>
    bulk(ev.target, 'delete', { filter: state.dlq.filter }, 'Delete all ' + state.dlq.total + ' matching records? This cannot be undone.'));
}

// ---------------------------------------------------------------- models

function enterModels() {
  every(2000, loadModels);
  every(2000, loadRollout);
}

// parseSteps reads "10%:5m,50%:10m,100%" as the API's steps.
function parseSteps(text) {
  return text.split(',').map((s) => s.trim()).filter(Boolean).map((s) => {
    const [p, hold] = s.split(':');
    const step = { percent: Number(p.replace('%', '')) };
    if (hold) step.hold = hold.trim();
    return step;
  });
}

function pct(v) { return v === null || v === undefined ? '–' : nf2.format(100 * v) + '%'; }

async function loadRollout() {
  const model = $('#rollout-model').value.trim();
  if (!model) return;
  let r;
  try {
    r = await api('GET', '/rollouts/' + encodeURIComponent(model));
  } catch (e) {
    if (e.status === 404 || e.status === 501) {
      $('#rollout-status').textContent = 'No rollout of ' + model + '.';
      $('#rollout-report').replaceChildren();
      return;
    }
    if (e.status !== 401) toast(e.message, true);
    return;
  }
  const step = r.step >= 0 && r.steps ? ' step ' + (r.step + 1) + '/' + r.steps.length : '';
  $('#rollout-status').replaceChildren(
    h('span', { class: 'badge ' + (r.state === 'running' ? 'ok' : r.state === 'rolled_back' ? 'bad' : 'warn') }, r.state),
    ' ' + r.mode + ': v' + r.stable + ' → v' + r.candidate + ', ' + nf.format(r.percent) + '% of keys on the candidate' + step +
      (r.reason ? ' — ' + r.reason : ''));
  let rep;
  try { rep = await api('GET', '/rollouts/' + encodeURIComponent(model) + '/report'); } catch (e) { return; }
  $('#rollout-report').replaceChildren(...reportNodes(rep, 'rollout'));
}

// reportNodes draws a comparison report (a rollout's or a dataset replay's): a summary line
// (id prefix-summary), both versions' figures and the requests that differ most (prefix-top).
function reportNodes(rep, prefix) {
  const d = rep.difference || {};
  const side = (name, s) => h('tr', {}, h('td', {}, name + ' v' + s.version), h('td', {}, fmtInt(s.requests)),
    h('td', {}, pct(s.error_rate)), h('td', {}, fmtMs(s.p50_ms)), h('td', {}, fmtMs(s.p99_ms)));
  const top = (rep.top || []).slice(0, 10).map((c) => h('tr', {},
    h('td', {}, c.id || '–'), h('td', {}, c.k || '–'), h('td', {}, c.tp + '/' + c.p + '@' + c.o),
    h('td', {}, (c.s || []).map((x) => nf2.format(x)).join(', ')), h('td', {}, (c.c || []).map((x) => nf2.format(x)).join(', ')),
    h('td', {}, nf2.format(c.diff || 0))));
  return [
    h('p', { id: prefix + '-summary' }, 'Compared ' + fmtInt(rep.compared) + ' requests (' + rep.kind + '): agreement ' + pct(rep.agreement) +
      ', max difference ' + nf2.format(d.max || 0) + ', p99 difference ' + nf2.format(d.p99 || 0) +
      ', correlation ' + nf2.format(rep.correlation || 0) + ', threshold ' + rep.threshold + ' flips ' + pct(rep.flip_share) +
      (rep.dropped ? ', ' + fmtInt(rep.dropped) + ' skipped while busy' : '')),
    h('table', { class: 'table' }, h('thead', {}, h('tr', {}, h('th', {}, 'Version'), h('th', {}, 'Requests'), h('th', {}, 'Errors'), h('th', {}, 'p50 ms'), h('th', {}, 'p99 ms'))),
      h('tbody', {}, side('stable', rep.stable), side('candidate', rep.candidate))),
    top.length ? h('table', { class: 'table', id: prefix + '-top' }, h('thead', {}, h('tr', {}, h('th', {}, 'Request'), h('th', {}, 'Key'), h('th', {}, 'Source'),
      h('th', {}, 'Stable'), h('th', {}, 'Candidate'), h('th', {}, 'Diff'))), h('tbody', {}, ...top)) : null,
  ].filter(Boolean);
}

async function loadModels() {
  try {
    const res = await api('GET', '/models');
    const body = $('#models-table tbody');
    const rows = [];
    for (const m of res.models) {
      const byVersion = {};
      for (const [label, v] of Object.entries(m.labels || {})) (byVersion[v] = byVersion[v] || []).push(label);
      const versions = (m.versions || []).slice().sort((a, b) => b.version - a.version);
      versions.forEach((v, i) => {
        if (unreachable(v)) {
          rows.push(h('tr', { dataset: { model: m.name } },
            h('td', {}, i === 0 ? h('strong', {}, m.name) : ''),
            h('td', { colspan: 3 }, h('span', { class: 'badge UNAVAILABLE' }, 'model server unreachable'),
              h('div', { class: 'error-text small' }, grpcMessage(v.error)))));
          return;
        }
        rows.push(h('tr', { dataset: { model: m.name, version: v.version } },
          h('td', {}, i === 0 ? h('strong', {}, m.name) : ''),
          h('td', {}, 'v' + v.version),
          h('td', {}, h('span', { class: 'badge ' + v.state, title: v.error || '' }, v.state), v.error ? h('div', { class: 'error-text small' }, v.error) : null),
          h('td', {}, ...(byVersion[v.version] || []).map((l) => h('span', { class: 'badge' }, l)),
            m.serving_version === v.version ? h('span', { class: 'badge ok', title: 'requests that name no version go here' }, 'serving') : null,
            v.held ? h('span', { class: 'badge held', title: 'kept loaded whatever the version policy says: ' + v.held }, 'held: ' + v.held) : null)));
      });
      if (!versions.length) rows.push(h('tr', {}, h('td', {}, m.name), h('td', { colspan: 3, class: 'muted' }, 'no versions')));
    }
    body.replaceChildren(...rows);
  } catch (e) { if (e.status !== 401) toast(e.message, true); }
}

function bindModels() {
  $('#upload-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const f = ev.target;
    const name = f.elements.name.value.trim();
    const fd = new FormData();
    fd.append('file', f.elements.file.files[0]);
    if (f.elements.version.value) fd.append('version', f.elements.version.value);
    const status = $('#upload-status');
    status.textContent = 'Uploading…';
    run($('#upload-submit'), async () => {
      try {
        const res = await api('POST', '/models/' + encodeURIComponent(name) + '/versions', fd);
        status.textContent = 'Uploaded ' + res.name + ' version ' + res.version + ' (' + fmtBytes(res.bytes) + '); loading…';
        toast('Uploaded ' + res.name + ' v' + res.version);
        f.elements.file.value = '';
        f.elements.version.value = '';
        loadModels();
      } catch (e) {
        status.textContent = '';
        throw e;
      }
    });
  });
  $('#label-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const f = ev.target;
    run(f.querySelector('button'), async () => {
      const name = f.elements.name.value.trim(), label = f.elements.label.value.trim();
      await api('PUT', '/models/' + encodeURIComponent(name) + '/labels/' + encodeURIComponent(label),
        { version: Number(f.elements.version.value) });
      toast('Label ' + label + ' → ' + name + ' v' + f.elements.version.value);
      loadModels();
    });
  });
  $('#rollout-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const f = ev.target;
    run($('#rollout-start'), async () => {
      const spec = { model: f.elements.model.value.trim(), mode: f.elements.mode.value };
      if (f.elements.candidate.value) spec.candidate = Number(f.elements.candidate.value);
      if (spec.mode === 'split') {
        spec.steps = parseSteps(f.elements.steps.value);
        if (f.elements.maxdis.value) spec.guards = { max_disagreement: Number(f.elements.maxdis.value) };
      }
      const r = await api('POST', '/rollouts', spec);
      toast('Rollout ' + r.id + ' started');
      loadRollout();
    });
  });
  const rolloutAction = (id, action, body) => $(id).addEventListener('click', (ev) => run(ev.target, async () => {
    const model = $('#rollout-model').value.trim();
    const r = await api('POST', '/rollouts/' + encodeURIComponent(model) + '/' + action, body);
    toast('Rollout ' + r.id + ': ' + r.state);
    loadRollout();
    loadModels();
  }));
  // Moving the split by hand: a shadow becomes a split, a plan stops at this share.
  const setPercent = (btn) => run(btn, async () => {
    const model = $('#rollout-model').value.trim();
    const r = await api('PUT', '/rollouts/' + encodeURIComponent(model) + '/percent', { percent: Number($('#rollout-percent').value) });
    toast('Rollout ' + r.id + ': ' + nf.format(r.percent) + '% of keys on v' + r.candidate);
    loadRollout();
  });
  $('#rollout-set-percent').addEventListener('click', (ev) => setPercent(ev.target));
  $('#rollout-percent').addEventListener('keydown', (ev) => {
    if (ev.key !== 'Enter') return;
    ev.preventDefault(); // not the form's submit: that starts a rollout
    setPercent($('#rollout-set-percent'));
  });
  rolloutAction('#rollout-promote', 'promote');
  rolloutAction('#rollout-abort', 'abort', { reason: 'aborted from the dashboard' });
  $('#model-rollback').addEventListener('click', (ev) => run(ev.target, async () => {
    const model = $('#rollout-model').value.trim();
    const r = await api('POST', '/models/' + encodeURIComponent(model) + '/rollback');
    toast(model + ' serves version ' + r.serving_version);
    loadModels();
  }));
  $('#models-reload').addEventListener('click', (ev) => run(ev.target, async () => {
    await api('POST', '/models/reload');
    toast('Model repository reloaded');
    loadModels();
  }));
}

// ---------------------------------------------------------------- broker

function enterBroker() {
  if (!$('#test-value').value) randomRequest();
  every(3000, loadTopics);
}

async function loadTopics() {
  try {
    const res = await api('GET', '/topics');
    const box = $('#topics');
    box.replaceChildren(...res.topics.map((t) => {
      const hasLag = t.partitions.some((p) => p.lag >= 0);
      const hasOwner = t.partitions.some((p) => p.owner);
      const sum = (k) => t.partitions.reduce((a, p) => a + Math.max(0, p[k]), 0);
      return h('div', { class: 'topic', dataset: { topic: t.name } },
        h('h3', {}, t.name, h('span', { class: 'badge' }, t.role), t.group ? h('span', { class: 'muted small' }, 'group ' + t.group) : null,
          h('span', { class: 'muted small' }, t.partitions.length + ' partitions')),
        h('div', { class: 'table-wrap' }, h('table', { class: 'table compact' },
          h('thead', {}, h('tr', {}, h('th', {}, 'Partition'), h('th', { class: 'num hide-sm' }, 'Leader'), h('th', { class: 'num' }, 'Start'),
            h('th', { class: 'num' }, 'End'), hasOwner ? h('th', { class: 'hide-sm' }, 'Owner') : null, hasLag ? h('th', { class: 'num' }, 'Committed') : null, hasLag ? h('th', { class: 'num' }, 'Lag') : null)),
          h('tbody', {}, ...t.partitions.map((p) => h('tr', {},
            h('td', {}, p.partition), h('td', { class: 'num hide-sm' }, p.leader), h('td', { class: 'num' }, fmtInt(p.start_offset)),
            h('td', { class: 'num' }, fmtInt(p.end_offset)),
            hasOwner ? h('td', { class: 'hide-sm' }, p.owner || '–') : null,
            hasLag ? h('td', { class: 'num' }, p.committed >= 0 ? fmtInt(p.committed) : '–') : null,
            hasLag ? h('td', { class: 'num' + (p.lag > LAG_SCALE_FLOOR ? ' lag-hot' : '') }, p.lag >= 0 ? fmtInt(p.lag) : '–') : null)),
          hasLag ? h('tr', {}, h('td', {}, h('strong', {}, 'total')), h('td', { class: 'hide-sm' }), h('td', {}),
            h('td', { class: 'num' }, fmtInt(sum('end_offset'))), hasOwner ? h('td', { class: 'hide-sm' }) : null, h('td', {}), h('td', { class: 'num' }, h('strong', {}, fmtInt(sum('lag'))))) : null))));
    }));
    loadGroup();
    $('#topics-updated').textContent = 'updated ' + new Date().toLocaleTimeString();
  } catch (e) { if (e.status !== 401) toast(e.message, true); }
}

// loadGroup shows the requests topic's consumer group (GET /group) by member:
// the partitions each owns and their lag, its state as it announced it (so a
// pause on one instance shows on every dashboard) and its last heartbeat.
// "unassigned" collects partitions nobody owns (a rebalance).
async function loadGroup() {
  const card = $('#group-card');
  let g;
  try { g = await api('GET', '/group'); } catch (e) { card.hidden = true; return; }
  if (!g.members.length) { card.hidden = true; return; }
  card.hidden = false;
  const n = g.members.length;
  const dlq = g.dlq ? ' · DLQ follower ' + (g.dlq.behind > 0 ? fmtInt(g.dlq.behind) + ' behind' : 'up to date') : '';
  $('#group-summary').textContent = 'group ' + g.group + ' · ' + n + (n === 1 ? ' member' : ' members') + ' · total lag ' + fmtInt(g.total_lag) + dlq;
  const parts = (ps) => ps.map((p) => p.partition).join(', ');
  const lagCell = (lag, ps) => h('td', { class: 'num' + (lag > LAG_SCALE_FLOOR ? ' lag-hot' : ''), title: ps.map((p) => p.partition + ': ' + fmtInt(p.lag)).join(', ') }, fmtInt(lag));
  const rows = g.members.map((m) => h('tr', { dataset: { member: m.name, state: m.state } },
    h('td', {}, m.name, m.self ? h('span', { class: 'muted small' }, ' (this instance)') : null),
    h('td', {}, parts(m.partitions)),
    h('td', { class: 'member-state' }, h('span', { class: 'status-dot ' + stateClass(m.state) }), m.state.replace('_', ' ')),
    lagCell(m.lag, m.partitions),
    h('td', { class: 'hide-sm' }, m.host || '–'),
    h('td', { class: 'hide-sm' }, m.last_heartbeat ? ago(m.last_heartbeat) : '–')));
  if (g.unassigned.length) {
    const lag = g.unassigned.reduce((a, p) => a + p.lag, 0);
    rows.push(h('tr', { dataset: { member: 'unassigned' } }, h('td', {}, 'unassigned'), h('td', {}, parts(g.unassigned)),
      h('td', {}, '–'), lagCell(lag, g.unassigned), h('td', { class: 'hide-sm' }), h('td', { class: 'hide-sm' })));
  }
  $('#group-members tbody').replaceChildren(...rows);
}

let testCounter = 0;
function randomRequest() {
  const features = Array.from({ length: 16 }, () => Math.round(Math.random() * 1000) / 1000);
  $('#test-value').value = JSON.stringify({ request_id: 'dash-' + Date.now().toString(36) + '-' + (++testCounter), features });
}

function bindBroker() {
  $('#test-random').addEventListener('click', randomRequest);
  $('#test-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const key = $('#test-key').value.trim();
    const out = $('#test-result');
    run($('#test-send'), async () => {
      try {
        const res = await api('POST', '/test-request' + (key ? '?key=' + encodeURIComponent(key) : ''), $('#test-value').value);
        out.hidden = false;
        out.className = 'result ok';
        out.replaceChildren(h('strong', {}, 'Result in ' + fmtMs(res.latency_ms) + ' ms'),
          h('pre', { id: 'test-result-json' }, JSON.stringify(res.result !== undefined ? res.result : res.result_text, null, 2)));
      } catch (e) {
        if (e.status === 401) return;
        out.hidden = false;
        out.className = 'result bad';
        out.replaceChildren(h('strong', {}, 'Failed (' + e.status + ')'), h('pre', { id: 'test-result-error' }, e.message));
      }
    });
  });
}

// ---------------------------------------------------------------- ingress

function enterIngress() {
  if (state.snapshot) renderIngressRates(state.snapshot.ingress);
  every(2000, loadIngress);
}

async function loadIngress() {
  try {
    const s = await api('GET', '/ingress');
    $('#ingress-off').hidden = s.enabled;
    $('#ingress-on').hidden = !s.enabled;
    if (!s.enabled) return;
    $('#ing-server').textContent = s.server;
    // An external server's clients are not known here: shown as –, not 0.
    const clients = s.clients;
    $('#ing-clients').textContent = clients ? fmtInt((clients.mqtt || 0) + (clients.nats || 0)) : '–';
    $('#ing-clients-mqtt').textContent = clients ? fmtInt(clients.mqtt || 0) : '–';
    $('#ing-clients-nats').textContent = clients ? fmtInt(clients.nats || 0) : '–';
    $('#ing-listeners tbody').replaceChildren(...(s.listeners || []).map((l) => h('tr', { dataset: { protocol: l.protocol } },
      h('td', {}, l.protocol.toUpperCase()), h('td', { class: 'mono' }, l.address),
      h('td', {}, h('span', { class: 'badge ' + (l.tls ? 'ok' : '') }, l.tls ? 'TLS' : 'plain text')))));
    $('#ing-auth').textContent = (s.external ? 'Devices connect to the external server; its configuration decides who may' :
      s.anonymous ? 'Anonymous devices (loopback only)' : 'Devices need credentials') + ' · answers at MQTT QoS ' + s.answer_qos;
    $('#ing-inbox').textContent = fmtInt(s.inbox_pending) + ' requests waiting in the inbox · ' +
      fmtInt(s.ack_pending) + ' on their way to Kafka';
    const rej = s.rejects || [];
    $('#ing-rejects tbody').replaceChildren(...(rej.length ? rej.map((r) => h('tr', { dataset: { reason: r.reason } },
      h('td', { title: r.at }, fmtTime(r.at)), h('td', {}, h('span', { class: 'badge bad' }, r.reason)),
      h('td', { class: 'mono' }, r.client), h('td', { class: 'small' }, r.detail))) :
      [h('tr', {}, h('td', { colspan: 4, class: 'muted' }, 'No rejects since start.'))]));
  } catch (e) { if (e.status !== 401) toast(e.message, true); }
}

function renderIngressRates(r) {
  if (!r) return;
  const inps = r.in_per_sec || {};
  $('#ing-in-mqtt').textContent = fmtRate(inps.mqtt || 0);
  $('#ing-in-nats').textContent = fmtRate(inps.nats || 0);
  const out = r.answers_per_sec || {};
  $('#ing-out').textContent = fmtRate((out.result || 0) + (out.error || 0));
  const tot = r.in_total || {};
  $('#ing-totals').textContent = fmtInt((tot.mqtt || 0) + (tot.nats || 0)) + ' requests from devices since start · ' +
    fmtRate(out.error || 0) + ' error answers / s';
  const rateBars = (box, perSec, total, empty) => {
    const keys = Object.keys(total || {}).sort();
    const max = Math.max(0.001, ...keys.map((k) => perSec[k] || 0));
    bars(box, keys.map((k) => ({ key: k, label: k, value: perSec[k] || 0, max, err: true,
      text: fmtRate(perSec[k] || 0) + '/s', title: fmtInt(total[k]) + ' total' })), empty);
  };
  rateBars($('#ing-err-bars'), r.errors_per_sec || {}, r.errors_total, 'No errors.');
  rateBars($('#ing-rej-bars'), r.rejects_per_sec || {}, r.rejects_total, 'No rejects.');
}

// ---------------------------------------------------------------- sidecar

function enterSidecar() {
  every(2000, loadSidecar);
}

async function loadSidecar() {
  try {
    const s = await api('GET', '/sidecar');
    $('#sidecar-off').hidden = s.enabled;
    $('#sidecar-on').hidden = !s.enabled;
    if (!s.enabled) return;
    $('#sc-mode').textContent = s.mode;
    const meta = [
      ['State', h('span', { class: 'badge ' + stateClass(s.state), id: 'sc-state' }, s.state)],
      ['Restarts', h('span', { id: 'sc-restarts' }, s.restarts)],
      ['PID', s.pid || '–'], ['Binary', s.binary || '–'], ['Version', s.version || '–'],
      ['Started', s.started_at ? fmtTime(s.started_at) : '–'],
      ['Last exit', s.last_exit ? s.last_exit + (s.last_exit_at ? ' at ' + fmtTime(s.last_exit_at) : '') : '–'],
    ];
    $('#sc-meta').replaceChildren(...meta.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
    const eps = s.endpoints || [];
    $('#sc-endpoints tbody').replaceChildren(...(eps.length ? eps.map((e) => h('tr', {},
      h('td', { class: 'mono' }, e.address), h('td', {}, h('span', { class: 'badge ' + (e.healthy ? 'ok' : 'bad') }, e.healthy ? 'healthy' : 'unhealthy')),
      h('td', { class: 'muted small' }, e.detail || ''))) : [h('tr', {}, h('td', { class: 'muted' }, 'no endpoints'))]));
    $('#sc-ready').textContent = (s.ready_models || []).length ? 'Ready models: ' + s.ready_models.join(', ') : 'No models ready.';
    const log = $('#sc-log');
    const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.textContent = (s.log_tail || []).join('\n') || '(no output yet)';
    if (atBottom) log.scrollTop = log.scrollHeight;
  } catch (e) { if (e.status !== 401) toast(e.message, true); }
}

// ---------------------------------------------------------------- start

async function start() {
  try {
    const s = await api('GET', '/session');
    state.csrf = s.csrf_token || '';
    // The role decides which controls show (users.css, users.js); the API enforces it anyway.
    state.actor = s.actor || '';
    state.role = s.role || '';
    document.body.dataset.role = state.role;
    document.dispatchEvent(new CustomEvent('infergate:session', { detail: s }));
  } catch { return; }
  $('#logout').addEventListener('click', async () => {
    await fetch('/logout', { method: 'POST', headers: { 'X-CSRF-Token': state.csrf }, credentials: 'same-origin' });
    location.href = '/login';
  });
  bindDLQ();
  bindModels();
  bindBroker();
  for (const b of binders) b();
  connectEvents();
  window.addEventListener('hashchange', route);
  route();
}

document.addEventListener('DOMContentLoaded', start);
