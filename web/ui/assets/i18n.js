// infergate dashboard: English and Simplified Chinese. The language comes from the browser
// (navigator.languages), can be switched in the top bar and is remembered (localStorage).
//
// Markup names its text with data-i18n="key" (data-i18n-placeholder, data-i18n-title for
// attributes); the English is the markup itself, read once at start, so it is written in
// one place. Text built in JavaScript calls t('key', {n: …}); its English is in I18N.en.
// A key missing in zh falls back to English; a missing key shows the key, which the
// browser test would catch.
'use strict';

const I18N = {
  en: {
    'logs.any': 'any',
    'logs.count': '{n} records shown',
    'logs.skipped': '{n} records arrived too fast to show (use the filters)',
    'pred.none': 'No predictions yet.',
    'pred.threshold': 'Anomaly threshold',
    'pred.threshold.save': 'Save',
    'pred.threshold.help': 'a model setting (admin); a new threshold starts the counts afresh',
    'pred.threshold.saved': '{model}: anomaly threshold {t}',
    'pred.anomalies': 'anomalies',
    'pred.scored': 'scored',
    'pred.share': 'anomalous',
    'pred.since': 'since {t} at threshold {th}',
    'pred.other': '{n} with several values (not scored)',
    'pred.chart': 'last 10 minutes, per {s} s: green normal, red anomalous (scale {n})',
    'pred.anomaly': 'anomaly',
    'pred.normal': 'normal',
    'pred.empty': 'No predictions yet.',
    'alert.lag': 'Consumer lag is {n} and growing: the appliance is not keeping up',
    'alert.dlq': '{p}% of requests are dead-lettered',
    'alert.circuit': 'The model server is not answering: the circuit is open, requests wait',
    'alert.models': 'The model server cannot be asked for its models',
    'alert.diskfull': 'Disk full: consumption is paused until space is freed',
    'alert.disknearly': 'Disk nearly full: {b} free in the data dir, under twice min_free_bytes',
    'alert.sev.critical': 'critical',
    'alert.sev.warning': 'warning',
    'alert.since': 'since {t}',
  },
  zh: {
    'nav.logs': '日志',
    'logs.level': '级别',
    'logs.level.debug': '调试及以上',
    'logs.level.info': '信息及以上',
    'logs.level.warn': '警告和错误',
    'logs.level.error': '错误',
    'logs.component': '组件',
    'logs.text': '文本',
    'logs.text.placeholder': '消息或字段值',
    'logs.filter': '筛选',
    'logs.pause': '暂停实时更新',
    'logs.th.time': '时间',
    'logs.th.level': '级别',
    'logs.th.component': '组件',
    'logs.th.message': '消息',
    'logs.empty': '没有匹配的日志记录。',
    'logs.any': '全部',
    'logs.count': '显示 {n} 条记录',
    'logs.skipped': '{n} 条记录来得太快未显示（请使用筛选）',
    'nav.predictions': '预测',
    'pred.none': '暂无预测。',
    'pred.threshold': '异常阈值',
    'pred.threshold.save': '保存',
    'pred.threshold.help': '模型设置（管理员）；新阈值会重新开始计数',
    'pred.threshold.saved': '{model}：异常阈值 {t}',
    'pred.anomalies': '异常',
    'pred.scored': '已评分',
    'pred.share': '异常比例',
    'pred.since': '自 {t} 起，阈值 {th}',
    'pred.other': '{n} 条多值输出（未评分）',
    'pred.chart': '最近 10 分钟，每 {s} 秒：绿色正常，红色异常（刻度 {n}）',
    'pred.anomaly': '异常',
    'pred.normal': '正常',
    'pred.empty': '暂无预测。',
    'pred.recent': '最近的预测',
    'pred.recent.help': '最新的在前；分数达到或超过模型阈值即为异常',
    'pred.th.time': '时间',
    'pred.th.model': '模型',
    'pred.th.request': '请求',
    'pred.th.key': '键',
    'pred.th.score': '分数',
    'pred.th.source': '来源',
    'alert.lag': '消费延迟为 {n} 且仍在增长：设备处理跟不上',
    'alert.dlq': '{p}% 的请求进入了死信队列',
    'alert.circuit': '模型服务器无响应：熔断已打开，请求在等待',
    'alert.models': '无法向模型服务器查询模型',
    'alert.diskfull': '磁盘已满：在释放空间之前暂停消费',
    'alert.disknearly': '磁盘快满了：数据目录剩余 {b}，低于 min_free_bytes 的两倍',
    'alert.sev.critical': '严重',
    'alert.sev.warning': '警告',
    'alert.since': '自 {t} 起',
  },
};

const LANGS = { en: 'English', zh: '中文' };
const LANG_KEY = 'infergate.lang';

// pickLang: the remembered choice, else the browser's first language we have.
function pickLang() {
  const saved = localStorage.getItem(LANG_KEY);
  if (saved && I18N[saved]) return saved;
  for (const l of navigator.languages || [navigator.language || 'en']) {
    const base = String(l).toLowerCase().split('-')[0];
    if (I18N[base]) return base;
  }
  return 'en';
}

let lang = 'en';

// t returns the text of key in the current language, with {name} replaced from params.
function t(key, params) {
  let s = (I18N[lang] && I18N[lang][key]) ?? I18N.en[key] ?? key;
  if (params) s = s.replace(/\{(\w+)\}/g, (m, k) => (params[k] !== undefined ? String(params[k]) : m));
  return s;
}

// applyI18n translates the marked-up text under root; the first call learns the English.
function applyI18n(root = document) {
  for (const [attr, prop] of [['data-i18n', 'textContent'], ['data-i18n-placeholder', 'placeholder'], ['data-i18n-title', 'title']]) {
    for (const el of root.querySelectorAll('[' + attr + ']')) {
      const key = el.getAttribute(attr);
      if (!(key in I18N.en)) I18N.en[key] = el[prop];
      el[prop] = t(key);
    }
  }
}

function setLang(l) {
  lang = I18N[l] ? l : 'en';
  document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
  applyI18n();
  const sel = document.querySelector('#lang');
  if (sel) sel.value = lang;
}

document.addEventListener('DOMContentLoaded', () => {
  const sel = document.querySelector('#lang');
  if (sel) {
    sel.replaceChildren(...Object.entries(LANGS).map(([k, name]) => {
      const o = document.createElement('option');
      o.value = k;
      o.textContent = name;
      return o;
    }));
    sel.addEventListener('change', () => {
      localStorage.setItem(LANG_KEY, sel.value);
      setLang(sel.value);
      // Text built by the views is redrawn in the new language.
      if (typeof route === 'function') route();
    });
  }
  setLang(pickLang());
});
