// infergate dashboard: English and Simplified Chinese. The language comes from the browser
// (navigator.languages), can be switched in the top bar and is remembered (localStorage);
// switching reloads the page, so every view is drawn anew in the new language.
//
// Two tables. I18N holds text by key: markup marked data-i18n="key" (data-i18n-placeholder,
// data-i18n-title for attributes; the English is the markup itself, read once at start) and
// text built in JavaScript with t('key', {n: …}). ZH_PHRASES translates the English the
// older views write as is (app.js, the static page): in Chinese, every text node the page
// shows — at start and whenever a view draws — is looked up whole, then against ZH_PATTERNS
// for text with numbers in it. Identifiers (error classes, model states, metric and rule
// names, setting keys) are not translated: they are what logs, the API and docs say.
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
    'settings.file': 'An admin\'s changes are checked like the config file and written to {file}. Live settings apply at once; the others after a restart.',
    'settings.secret': 'a secret: set it in the config file or the environment',
    'settings.pending': 'after restart: {v}',
    'settings.pending.help': 'in the config file; the running appliance still uses the value to the left',
    'settings.live': 'live',
    'settings.live.help': 'a change applies at once, without a restart',
    'settings.restart': 'after restart',
    'settings.restart.help': 'a change is written to the config file and takes effect after a restart',
    'settings.dirty': '{n} changed',
    'settings.applied': 'Applied now: {list}',
    'settings.afterRestart': 'Written, takes effect after restart: {list}',
    'settings.nochange': 'Nothing changed.',
    'settings.refused': 'Not saved: see the problems above the table.',
  },
  zh: {
    'nav.logs': '日志',
    'settings.title': '设置',
    'settings.filter': '筛选',
    'settings.filter.placeholder': '键或文本',
    'settings.onlyset': '只看非默认值的设置',
    'settings.reset': '放弃更改',
    'settings.save': '保存更改',
    'settings.th.key': '设置',
    'settings.th.value': '值',
    'settings.th.applies': '生效方式',
    'settings.th.source': '来源',
    'settings.th.default': '默认值',
    'settings.th.actor': '操作人',
    'settings.file': '管理员的更改按配置文件的规则检查，并写入 {file}。实时设置立即生效；其他设置在重启后生效。',
    'settings.secret': '密钥：请在配置文件或环境变量中设置',
    'settings.pending': '重启后：{v}',
    'settings.pending.help': '已写入配置文件；运行中的设备仍使用左侧的值',
    'settings.live': '实时',
    'settings.live.help': '更改立即生效，无需重启',
    'settings.restart': '重启后',
    'settings.restart.help': '更改写入配置文件，重启后生效',
    'settings.dirty': '已更改 {n} 项',
    'settings.applied': '已立即生效：{list}',
    'settings.afterRestart': '已写入，重启后生效：{list}',
    'settings.nochange': '没有更改。',
    'settings.refused': '未保存：请查看表格上方的问题。',
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


// English as the page writes it → Simplified Chinese.
const ZH_PHRASES = {
  'Overview': '概览', 'DLQ': '死信队列', 'Models': '模型', 'Broker': '消息代理', 'Ingress': '接入', 'Sidecar': '边车',
  'Settings': '设置', 'Users': '用户', 'Log out': '退出登录', 'connecting…': '连接中…', 'live': '实时', 'reconnecting…': '重新连接中…',
  'Throughput': '吞吐量', 'requests / s': '请求 / 秒', 'in': '输入', 'results': '结果', 'dead-lettered': '进入死信',
  'Latency': '延迟', 'end to end, ms': '端到端，毫秒', 'predict p99': '预测 p99', 'Consumer lag': '消费延迟', 'Errors': '错误',
  'dead-lettered / s by class': '按类别每秒进入死信数', 'Open the DLQ': '打开死信队列', 'Class': '类别', 'all': '全部', 'Model': '模型',
  'Failed within': '失败时间范围', 'any time': '任意时间', '15 min': '15 分钟', '1 hour': '1 小时', '24 hours': '24 小时', '7 days': '7 天',
  'Filter': '筛选', 'Replay selected': '重放所选', 'Delete selected': '删除所选', 'Replay all matching': '重放全部匹配项',
  'Delete all matching': '删除全部匹配项', 'Failed': '失败时间', 'Error': '错误', 'Source': '来源', 'Replays': '重放次数',
  'No dead-lettered records match.': '没有匹配的死信记录。', 'Load more': '加载更多', 'Record': '记录', 'Headers': '消息头', 'Value': '值',
  'edit to fix the request before replaying': '重放前可编辑以修正请求', 'Replay & wait for result': '重放并等待结果', 'Replay': '重放',
  'delete after': '之后删除', 'Delete': '删除', 'Reload repository': '重新加载模型仓库', 'Version': '版本', 'State': '状态', 'Labels': '标签',
  'Upload a version': '上传新版本', 'Model name': '模型名称', 'ONNX file': 'ONNX 文件', 'Upload': '上传', 'Rollout': '发布',
  'No rollout.': '没有进行中的发布。', 'Candidate version': '候选版本', 'Mode': '模式', 'shadow (candidate scores a copy)': '影子（候选版本对副本评分）',
  'planned split': '按计划分流', 'Steps': '步骤', 'Roll back when disagreement exceeds': '分歧超过此值时回滚', 'Start': '开始', 'Promote': '提升',
  'Abort': '中止', 'Roll back the model': '回滚模型', 'Set a label': '设置标签', 'Label': '标签', 'Set label': '设置标签',
  "Candidate's share of keys (%)": '候选版本的键占比（%）', 'Set percent': '设置比例', 'Datasets: capture and replay': '数据集：捕获与重放',
  'requests saved from the requests topic or the DLQ, scored against two versions': '从请求主题或死信队列保存的请求，用两个版本评分',
  'From': '来源', 'requests topic': '请求主题', 'Newest': '最新', 'Capture': '捕获', 'Dataset': '数据集', 'Stable version': '稳定版本',
  'Records': '记录数', 'Selection': '选择', 'Created': '创建时间', 'Last report': '上次报告', 'No datasets.': '没有数据集。',
  'Consumer group': '消费组', 'Members of the group sharing the requests topic (docs/scaling.md), the partitions each owns and their lag, and the state each member announced.':
    '共享请求主题的消费组成员（docs/scaling.md）、各自拥有的分区及其延迟，以及各成员通告的状态。', 'Member': '成员', 'Partitions': '分区', 'Lag': '延迟',
  'Host': '主机', 'Last heartbeat': '最近心跳', '(this instance)': '（本实例）', 'paused': '已暂停', 'unknown': '未知',
  'Topics': '主题', 'Send a test request': '发送测试请求',
  'Produced to the requests topic; the result (or why it was dead-lettered) appears below.': '发送到请求主题；结果（或进入死信的原因）显示在下方。',
  'Key': '键', 'Send': '发送', 'New random features': '新的随机特征',
  'The edge ingress is off: devices cannot publish over MQTT or NATS. Start with': '边缘接入已关闭：设备无法通过 MQTT 或 NATS 发布。启动时使用',
  '(setting': '（设置', ') to take requests from MQTT and NATS devices.': '）以接收来自 MQTT 和 NATS 设备的请求。', 'Devices': '设备',
  'connected': '已连接', 'Traffic': '流量', 'messages / s': '消息 / 秒', 'MQTT in': 'MQTT 输入', 'NATS in': 'NATS 输入', 'answers out': '应答输出',
  'per second by stage': '按阶段每秒', 'Rejects': '拒绝', 'per second by reason': '按原因每秒', 'Recent rejects': '最近的拒绝',
  'refused connections, publishes and subscriptions, newest first': '被拒绝的连接、发布和订阅，最新的在前', 'When': '时间', 'Reason': '原因',
  'Client': '客户端', 'Detail': '详情',
  'Not in sidecar mode: the embedded model server is serving the models. Start with': '不是边车模式：模型由内嵌模型服务器提供。启动时使用',
  'or': '或', 'to supervise TensorFlow Serving.': '以监管 TensorFlow Serving。', 'Endpoints': '端点', 'Log tail': '日志末尾',
  'Effective settings': '生效的设置', 'secrets redacted': '已隐藏密钥', 'Audit log': '审计日志', 'Action': '操作', 'Sections': '栏目',
  'Live updates': '实时更新', 'Throughput, last 5 minutes': '吞吐量，最近 5 分钟', 'Latency, last 5 minutes': '延迟，最近 5 分钟', 'any': '任意',
  'Reload': '重新加载', 'Select all': '全选', 'Close': '关闭', 'next': '下一个', 'highest': '最高', 'optional': '可选',
  'Attempts': '尝试次数', 'Anonymous devices (loopback only)': '匿名设备（仅本机回环）', 'Binary': '可执行文件', 'Candidate': '候选',
  'Committed': '已提交', 'Delete selected': '删除所选', 'Diff': '差值', 'End': '结束偏移', 'Failed again': '再次失败', 'Failed at': '失败于',
  'Last exit': '上次退出', 'Leader': '主副本', 'Model repository reloaded': '模型仓库已重新加载', 'Model server': '模型服务器',
  'No admin actions yet.': '暂无管理操作。', 'No consumer lag reported yet.': '尚未报告消费延迟。', 'No errors.': '没有错误。',
  'No models ready.': '没有就绪的模型。', 'No models reported yet.': '尚未报告模型。', 'No rejects since start.': '启动以来没有拒绝。',
  'No rejects.': '没有拒绝。', 'Owner': '拥有者', 'Partition': '分区', 'Pause': '暂停', 'Pipeline paused': '流水线已暂停',
  'Pipeline resumed': '流水线已恢复', 'Pipeline': '流水线', 'Replayed to the requests topic.': '已重放到请求主题。', 'Request': '请求',
  'Requests': '请求数', 'Restarts': '重启次数', 'Result': '结果', 'Resume': '恢复', 'Size': '大小', 'Stable': '稳定版', 'Started': '启动于',
  'Store': '存储', 'Uploading…': '上传中…', 'model server unreachable': '模型服务器不可达', 'no versions': '没有版本', 'no headers': '没有消息头',
  'no endpoints': '没有端点', 'healthy': '健康', 'unhealthy': '不健康', 'plain text': '明文', 'total': '总计', 'serving': '正在服务',
  'Devices need credentials': '设备需要凭据', 'unassigned': '未分配', 'partition': '分区', 'Sidecar mode': '边车模式',
  'Streaming inference appliance': '流式推理设备', 'User name': '用户名', 'Password': '密码', 'Log in': '登录',
  'or with the admin token (first login, scripts) or an API token': '或使用管理员令牌（首次登录、脚本）或 API 令牌登录', 'Token': '令牌',
  'paste the token': '粘贴令牌', 'Log in with a token': '使用令牌登录', 'The admin token was printed when infergate first started and is kept in':
    '管理员令牌在 infergate 首次启动时打印，并保存在', '. An admin adds users under Users.': '中。管理员可在“用户”中添加用户。',
};

// Text with numbers in it: [pattern, Chinese with $1…].
const ZH_PATTERNS = [
  [/^total (.+)$/, '总计 $1'],
  [/^(.+) requests, (.+) results, (.+) dead-lettered since start$/, '启动以来 $1 个请求、$2 个结果、$3 个进入死信'],
  [/^batch size avg (.+) · (.+) batches in flight(?: · circuit (.+))?$/, '平均批大小 $1 · $2 个批次处理中 · 熔断 $3'],
  [/^(.+) records in the DLQ store \((.+)\)$/, '死信存储中 $1 条记录（$2）'],
  [/^(.+) matching, (.+) shown$/, '$1 条匹配，显示 $2 条'],
  [/^(.+) matching$/, '$1 条匹配'],
  [/^Replay all (.+)$/, '全部重放（$1）'],
  [/^Delete all (.+)$/, '全部删除（$1）'],
  [/^Replay (.+) selected$/, '重放所选 $1 条'],
  [/^Delete (.+) selected$/, '删除所选 $1 条'],
  [/^updated (.+)$/, '更新于 $1'],
  [/^(\d+) partitions$/, '$1 个分区'],
  [/^group (.+)$/, '消费组 $1'],
  [/^infergate (.+) · (.+) · delivery (.+) · up since (.+)$/, 'infergate $1 · $2 · 投递语义 $3 · 运行自 $4'],
  [/^lag unavailable: (.+)$/, '延迟不可用：$1'],
  [/^Result in (.+) ms$/, '结果用时 $1 毫秒'],
  [/^Result of the edited request in (.+) ms$/, '编辑后请求的结果用时 $1 毫秒'],
  [/^Failed \((\d+)\)$/, '失败（$1）'],
  [/^(\d+) s ago$/, '$1 秒前'], [/^(\d+) min ago$/, '$1 分钟前'], [/^(\d+) h ago$/, '$1 小时前'], [/^(\d+) d ago$/, '$1 天前'],
  [/^(.+) requests waiting in the inbox · (.+) on their way to Kafka$/, '收件箱中 $1 个请求等待 · $2 个正在发往 Kafka'],
  [/^(.+) requests from devices since start · (.+) error answers \/ s$/, '启动以来来自设备的 $1 个请求 · 每秒 $2 个错误应答'],
  [/^Ready models: (.+)$/, '就绪模型：$1'],
  [/^No rollout of (.+)\.$/, '$1 没有进行中的发布。'],
  [/^Replayed (.+) records$/, '已重放 $1 条记录'],
  [/^Deleted (.+) records$/, '已删除 $1 条记录'],
  [/^Replayed (.+)$/, '已重放 $1'],
  [/^Deleted (.+)$/, '已删除 $1'],
  [/^(.+) total$/, '共 $1'],
  [/^(.+) member(s?)$/, '$1 个成员'],
];

// zh returns the Chinese of an English text, or undefined.
function zh(text) {
  if (ZH_PHRASES[text] !== undefined) return ZH_PHRASES[text];
  for (const [re, out] of ZH_PATTERNS) if (re.test(text)) return text.replace(re, out);
  return undefined;
}

const I18N_SKIP = 'script, style, pre, code, textarea, [data-i18n], .mono, #lang';

// translateNode puts the Chinese of the text nodes under node in place (and of placeholders,
// titles and aria-labels). Text with no translation is left as it is.
function translateNode(node) {
  if (lang !== 'zh') return;
  if (node.nodeType === Node.TEXT_NODE) {
    const p = node.parentElement;
    if (!p || p.closest(I18N_SKIP)) return;
    const raw = node.nodeValue;
    const text = raw.trim();
    if (!text) return;
    // The component card's "Broker · embedded": translate each part.
    const out = text.includes(' · ') ? text.split(' · ').map((x) => zh(x) ?? x).join(' · ') : zh(text);
    if (out !== undefined && out !== text) node.nodeValue = raw.replace(text, out);
    return;
  }
  if (node.nodeType !== Node.ELEMENT_NODE) return;
  const els = [node, ...node.querySelectorAll('*')];
  for (const el of els) {
    if (el.closest(I18N_SKIP)) continue;
    for (const attr of ['placeholder', 'title', 'aria-label']) {
      const v = el.getAttribute(attr);
      const z = v && zh(v.trim());
      if (z !== undefined && z !== v) el.setAttribute(attr, z);
    }
  }
  const walker = document.createTreeWalker(node, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) translateNode(n);
}

// The views draw as data arrives: translate what they add or change.
const i18nObserver = new MutationObserver((records) => {
  for (const r of records) {
    if (r.type === 'characterData') translateNode(r.target);
    else for (const n of r.addedNodes) translateNode(n);
  }
});

// Users view (users.js) keeps its text in one table; its Chinese.
const ZH_USERS = {
  nav: '用户', title: '用户', you: '你的账户', signedInAs: '登录身份', role: '角色',
  viaToken: '你正在使用管理员令牌登录。它没有密码，也没有自己的 API 令牌：请为自己创建一个用户，或在下方轮换令牌。',
  roleHelp: { viewer: '查看者：可查看一切，不能更改', operator: '操作员：还可暂停和恢复流水线、重放和删除死信记录、发送测试请求', admin: '管理员：还可管理模型、设置、用户和管理员令牌' },
  changePassword: '修改密码', oldPassword: '当前密码', newPassword: '新密码（至少 10 个字符）', savePassword: '修改密码', passwordChanged: '密码已修改',
  tokens: '你的 API 令牌', apiTokens: 'API 令牌', tokensHelp: '供脚本使用：发送 "Authorization: Bearer <token>"。令牌以你的角色执行操作；只保存其哈希，因此只显示一次。',
  tokenName: '令牌名称', createToken: '创建令牌', revoke: '撤销', revoked: '令牌已撤销', noTokens: '没有 API 令牌。', newToken: '新令牌（请立即复制，只显示一次）：',
  created: '创建于', users: '所有用户', name: '名称', password: '密码（至少 10 个字符）', createUser: '创建用户', userCreated: '用户已创建', setRole: '设置角色',
  roleSet: '角色已更改', resetPassword: '重置密码', passwordReset: '密码已重置', newPasswordFor: '新密码，用户', del: '删除', deleted: '用户已删除',
  confirmDelete: '删除用户 %s？其会话和 API 令牌将失效。', noUsers: '还没有用户：管理员令牌是唯一的登录方式。', actions: '操作', adminToken: '管理员令牌',
  adminTokenHelp: '<data dir>/admin-token 中的初始令牌：首次登录和本机 CLI 使用它。轮换会将新令牌写入该文件；旧令牌立即失效，其会话结束。',
  adminTokenFixed: '管理员令牌由 http.admin_token 或 INFERGATE_ADMIN_TOKEN 设置：请在那里修改并重启。', rotate: '轮换管理员令牌',
  confirmRotate: '轮换管理员令牌？旧令牌及其会话将失效；CLI 会从文件读取新令牌。', rotated: '新的管理员令牌（也已写入 admin-token 文件）：',
  roleNames: { viewer: '查看者', operator: '操作员', admin: '管理员' },
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
  if (lang === 'zh') {
    if (typeof USERS_TEXT === 'object') {
      // users.js drew its view in English when it loaded: learn its phrases, then let it
      // write Chinese from now on.
      const learn = (en, z) => {
        for (const [k, v] of Object.entries(z)) {
          if (typeof v === 'object') learn(en[k] || {}, v);
          else if (typeof en[k] === 'string') ZH_PHRASES[en[k]] = v;
        }
      };
      learn(USERS_TEXT, ZH_USERS);
      Object.assign(USERS_TEXT, ZH_USERS);
    }
    translateNode(document.body);
    const title = zh(document.title.replace(/ · infergate$/, ''));
    if (title) document.title = title + ' · infergate';
    i18nObserver.observe(document.body, { subtree: true, childList: true, characterData: true });
  }
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
      // Every view is drawn anew in the new language.
      location.reload();
    });
  }
  setLang(pickLang());
});
