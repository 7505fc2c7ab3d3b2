// infergate dashboard: the alert banner, on every view — the shipped alert rules
// (deploy/prometheus-alerts.yml) whose conditions hold, computed by the appliance from the
// same metrics and sent with every snapshot. Loaded after app.js, whose helpers it uses.
'use strict';

// alertText words an alert in the reader's language from its rule name and value.
function alertText(a) {
  switch (a.name) {
    case 'InfergateConsumerLagGrowing': return t('alert.lag', { n: fmtInt(a.value) });
    case 'InfergateDLQRateHigh': return t('alert.dlq', { p: nf.format(100 * a.value) });
    case 'InfergateModelServerUnreachable': return a.value ? t('alert.circuit') : t('alert.models');
    case 'InfergateDiskFull': return t('alert.diskfull');
    case 'InfergateDiskNearlyFull': return t('alert.disknearly', { b: fmtBytes(a.value) });
  }
  return a.summary;
}

// The page each alert sends the operator to.
const ALERT_LINKS = { InfergateConsumerLagGrowing: '#broker', InfergateDLQRateHigh: '#dlq', InfergateModelServerUnreachable: '#models' };

function renderAlerts(s) {
  const box = $('#alerts');
  const alerts = s.alerts || [];
  box.hidden = alerts.length === 0;
  box.replaceChildren(...alerts.map((a) => h('div', { class: 'alert alert-' + a.severity, dataset: { alert: a.name }, title: a.name + ': ' + a.summary },
    h('span', { class: 'badge ' + (a.severity === 'critical' ? 'bad' : 'warn') }, t('alert.sev.' + a.severity)),
    ' ', ALERT_LINKS[a.name] ? h('a', { href: ALERT_LINKS[a.name] }, alertText(a)) : alertText(a),
    h('span', { class: 'muted small' }, ' · ' + t('alert.since', { t: fmtTime(a.since) }) + ' · ' + a.name))));
}

snapshotHooks.push(renderAlerts);
