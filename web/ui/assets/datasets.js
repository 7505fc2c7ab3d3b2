// infergate dashboard: datasets on the Models view — requests captured from the requests
// topic or the DLQ (POST /api/v1/datasets), listed (GET), replayed against two versions of
// a model with the rollout's comparison report (POST /api/v1/datasets/{name}/replay; the last
// replay's report from GET …/report) and deleted. Captures, replays and deletes are admin
// actions. Loaded after app.js, whose helpers (h, $, api, run, toast, every, reportNodes) it uses.
'use strict';

{
  const enterBase = views.models.enter;
  views.models.enter = () => {
    enterBase();
    every(5000, loadDatasets);
  };
  binders.push(bindDatasets);
}

async function loadDatasets() {
  let res;
  try {
    res = await api('GET', '/datasets');
  } catch (e) {
    if (e.status !== 401 && e.status !== 501) toast(e.message, true);
    return;
  }
  const list = res.datasets || [];
  $('#datasets-table tbody').replaceChildren(...(list.length ? list.map((d) => h('tr', { dataset: { name: d.name } },
    h('td', {}, h('strong', {}, d.name)), h('td', {}, d.source), h('td', {}, fmtInt(d.records)),
    h('td', {}, d.selection + (d.truncated ? ' (truncated at the size limit)' : '')), h('td', {}, ago(d.created_at)),
    h('td', {}, h('button', { type: 'button', class: 'ghost dataset-report', onclick: (ev) => showReplay(ev.target, d.name) }, 'Last report'),
      h('button', { type: 'button', class: 'danger dataset-delete', 'data-need': 'admin', onclick: (ev) => deleteDataset(ev.target, d.name) }, 'Delete'))))
    : [h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'No datasets.'))]));
  // Keep the choice of the replay form across refreshes.
  const sel = $('#replay-dataset');
  const chosen = sel.value;
  sel.replaceChildren(...list.map((d) => h('option', { value: d.name }, d.name)));
  if (list.some((d) => d.name === chosen)) sel.value = chosen;
}

function renderReplay(rep) {
  const r = rep.rollout || {};
  const st = r.replay || {};
  $('#replay-report').replaceChildren(
    h('p', { id: 'replay-meta' }, 'Dataset ' + st.dataset + ', model ' + r.model + ': v' + r.stable + ' (stable) against v' + r.candidate +
      ', ' + fmtInt(st.scored) + ' of ' + fmtInt(st.records) + ' records scored' +
      (st.undecodable ? ', ' + fmtInt(st.undecodable) + ' undecodable' : '') + (st.other_model ? ', ' + fmtInt(st.other_model) + ' of another model' : '')),
    ...reportNodes(rep, 'replay'));
}

function showReplay(btn, name) {
  run(btn, async () => {
    try {
      renderReplay(await api('GET', '/datasets/' + encodeURIComponent(name) + '/report'));
    } catch (e) {
      if (e.status !== 404) throw e;
      $('#replay-report').replaceChildren(h('p', { class: 'muted' }, name + ' has not been replayed.'));
    }
  });
}

function deleteDataset(btn, name) {
  if (!confirm('Delete dataset ' + name + '?')) return;
  run(btn, async () => {
    await api('DELETE', '/datasets/' + encodeURIComponent(name));
    toast('Deleted dataset ' + name);
    loadDatasets();
  });
}

function bindDatasets() {
  $('#capture-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const f = ev.target;
    run($('#capture-submit'), async () => {
      const body = { name: f.elements.name.value.trim(), source: f.elements.source.value };
      if (f.elements.last.value) body.last = Number(f.elements.last.value);
      if (f.elements.model.value.trim()) body.model = f.elements.model.value.trim();
      const d = await api('POST', '/datasets', body);
      toast('Captured ' + d.name + ': ' + d.records + ' records');
      await loadDatasets();
      $('#replay-dataset').value = d.name;
    });
  });
  $('#replay-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const f = ev.target;
    const name = f.elements.dataset.value;
    if (!name) { toast('Capture a dataset first', true); return; }
    run($('#replay-submit'), async () => {
      const body = {};
      if (f.elements.candidate.value) body.candidate = Number(f.elements.candidate.value);
      if (f.elements.stable.value) body.stable = Number(f.elements.stable.value);
      $('#replay-report').replaceChildren(h('p', { class: 'muted' }, 'Replaying ' + name + '…'));
      try {
        renderReplay(await api('POST', '/datasets/' + encodeURIComponent(name) + '/replay', body));
      } catch (e) {
        $('#replay-report').replaceChildren();
        throw e;
      }
    });
  });
}
