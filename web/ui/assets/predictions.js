// infergate dashboard: the Predictions view — the pipeline's recent answers and, per model,
// how many scored at or above its anomaly threshold (GET /api/v1/predictions), with a chart
// of the last ten minutes and the threshold as a model setting (PUT
// /api/v1/models/{name}/threshold, admin). Loaded after app.js, whose helpers it uses.
'use strict';

function enterPredictions() {
  every(2000, loadPredictions);
}

async function loadPredictions() {
  try {
    const v = await api('GET', '/predictions?limit=50');
    renderPredictionModels(v);
    renderPredictionFeed(v.recent);
  } catch (e) { if (e.status !== 401) toast(e.message, true); }
}

function renderPredictionModels(v) {
  const box = $('#pred-models');
  if (!v.models.length) {
    box.replaceChildren(h('p', { class: 'muted small' }, t('pred.none')));
    return;
  }
  // Cards are kept by model so a threshold being typed is not wiped by the next refresh.
  const old = new Map($$('.pred-model', box).map((c) => [c.dataset.model, c]));
  box.replaceChildren(...v.models.map((m) => {
    let card = old.get(m.model);
    if (!card) {
      const input = h('input', { type: 'number', step: 'any', class: 'pred-threshold', size: 6, 'aria-label': t('pred.threshold') });
      card = h('article', { class: 'card pred-model', dataset: { model: m.model } },
        h('div', { class: 'card-head' }, h('h2', {}, m.model), h('span', { class: 'muted small pred-since' })),
        h('div', { class: 'bignums' },
          h('div', {}, h('span', { class: 'big pred-anomalies' }), h('span', { class: 'label' }, h('i', { class: 'dot c3' }), t('pred.anomalies'))),
          h('div', {}, h('span', { class: 'big pred-scored' }), h('span', { class: 'label' }, h('i', { class: 'dot c2' }), t('pred.scored'))),
          h('div', {}, h('span', { class: 'big pred-share' }), h('span', { class: 'label' }, t('pred.share')))),
        svg('svg', { class: 'chart pred-chart', viewBox: '0 0 300 60', preserveAspectRatio: 'none' }),
        h('p', { class: 'muted small pred-chart-label' }),
        h('form', { class: 'toolbar pred-threshold-form', 'data-need': 'admin', onsubmit: (ev) => {
          ev.preventDefault();
          run(ev.target.querySelector('button'), async () => {
            const th = Number(input.value);
            await api('PUT', '/models/' + encodeURIComponent(m.model) + '/threshold', { threshold: th });
            toast(t('pred.threshold.saved', { model: m.model, t: th }));
            input.dataset.edited = '';
            loadPredictions();
          });
        } },
        h('label', { class: 'inline' }, t('pred.threshold'), input),
        h('button', { type: 'submit' }, t('pred.threshold.save')),
        h('span', { class: 'muted small' }, t('pred.threshold.help'))));
      input.addEventListener('input', () => { input.dataset.edited = '1'; });
    }
    const input = $('.pred-threshold', card);
    if (!input.dataset.edited) input.value = m.threshold;
    $('.pred-anomalies', card).textContent = fmtInt(m.anomalies);
    $('.pred-scored', card).textContent = fmtInt(m.scored);
    $('.pred-share', card).textContent = m.scored ? nf2.format((100 * m.anomalies) / m.scored) + '%' : '–';
    $('.pred-since', card).textContent = t('pred.since', { t: fmtTime(m.since), th: m.threshold }) +
      (m.other ? ' · ' + t('pred.other', { n: fmtInt(m.other) }) : '');
    const max = anomalyChart($('.pred-chart', card), m.buckets || [], v.bucket_seconds);
    $('.pred-chart-label', card).textContent = t('pred.chart', { n: fmtInt(max), s: v.bucket_seconds });
    return card;
  }));
}

// anomalyChart draws the last ten minutes as stacked bars, normal below and anomalous on
// top, and returns the scale (the most predictions in one interval).
function anomalyChart(el, buckets, seconds) {
  const W = 300, H = 60, N = 60;
  const end = Math.floor(Date.now() / 1000 / seconds) * seconds;
  const byStart = new Map(buckets.map((b) => [Math.floor(new Date(b.t).getTime() / 1000), b]));
  const max = Math.max(1, ...buckets.map((b) => b.normal + b.anomalous));
  const bw = W / N;
  const kids = [];
  for (let i = 0; i < N; i++) {
    const b = byStart.get(end - (N - 1 - i) * seconds);
    if (!b) continue;
    const x = i * bw + 0.5;
    const hn = (b.normal / max) * (H - 10), ha = (b.anomalous / max) * (H - 10);
    if (hn > 0) kids.push(svg('rect', { class: 'bar-normal', x, y: H - hn, width: bw - 1, height: hn }));
    if (ha > 0) kids.push(svg('rect', { class: 'bar-anomalous', x, y: H - hn - ha, width: bw - 1, height: Math.max(ha, 1.5) }));
  }
  el.dataset.bars = String(buckets.length);
  el.replaceChildren(...kids);
  return max;
}

function renderPredictionFeed(recent) {
  const body = $('#pred-table tbody');
  body.replaceChildren(...(recent.length ? recent.map((p) => h('tr', { dataset: { model: p.model, anomaly: p.anomaly ? '1' : '' } },
    h('td', { class: 'nowrap', title: p.time }, fmtTime(p.time)),
    h('td', {}, p.model + ' v' + p.version),
    h('td', { class: 'mono small' }, p.request_id || '–'),
    h('td', { class: 'mono small hide-sm' }, p.key || '–'),
    h('td', { class: 'num mono' }, p.score !== undefined ? p.score.toFixed(4) : (p.values || []).map((x) => nf2.format(x)).join(', ')),
    h('td', {}, p.score === undefined ? '' : h('span', { class: 'badge ' + (p.anomaly ? 'bad' : 'ok') }, p.anomaly ? t('pred.anomaly') : t('pred.normal'))),
    h('td', { class: 'mono small hide-sm' }, p.topic + '/' + p.partition + '@' + p.offset))) :
    [h('tr', {}, h('td', { colspan: 7, class: 'muted' }, t('pred.empty')))]));
}

views.predictions = { enter: enterPredictions };
