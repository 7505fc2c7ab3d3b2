// Times an ONNX model with onnxruntime-node (CPU) at a batch size and thread
// count, the way `infergate model bench` times the embedded runtime:
// warm-up, then calls until the duration has passed; prints JSON with the
// median and mean wall time per call and the process CPU time per call.
//
//   npm install --ignore-scripts      (once, in this directory)
//   node bench.js MODEL.onnx --batch 32 --threads 1 [--duration 2] [--dynamic-dim 1]
//
// Inputs are random: standard normal floats, 0/1 integers; dimension 0 is
// the batch and any other open dimension gets --dynamic-dim.
'use strict';
const ort = require('onnxruntime-node');

function arg(name, def) {
  const i = process.argv.indexOf('--' + name);
  return i >= 0 ? process.argv[i + 1] : def;
}

function normal() {
  let u = 0, v = 0;
  while (u === 0) u = Math.random();
  while (v === 0) v = Math.random();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

async function main() {
  const file = process.argv[2];
  const batch = parseInt(arg('batch', '1'), 10);
  const threads = parseInt(arg('threads', '1'), 10);
  const duration = parseFloat(arg('duration', '2')) * 1000;
  const dyn = parseInt(arg('dynamic-dim', '1'), 10);
  const session = await ort.InferenceSession.create(file, {
    intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
  const feeds = {};
  for (const name of session.inputNames) {
    const meta = session.inputMetadata ? session.inputMetadata.find((m) => m.name === name) : null;
    const dims = (meta && meta.shape) || [];
    const shape = dims.map((d, i) => (typeof d === 'number' && d >= 0 ? d : (i === 0 ? batch : dyn)));
    const n = shape.reduce((a, b) => a * b, 1);
    const type = meta && meta.type ? meta.type : 'float32';
    if (type === 'int64') {
      const data = new BigInt64Array(n);
      for (let i = 0; i < n; i++) data[i] = BigInt(Math.random() < 0.5 ? 0 : 1);
      feeds[name] = new ort.Tensor('int64', data, shape);
    } else {
      const data = new Float32Array(n);
      for (let i = 0; i < n; i++) data[i] = normal();
      feeds[name] = new ort.Tensor('float32', data, shape);
    }
  }
  const warmStart = Date.now();
  for (let i = 0; i < 3 || Date.now() - warmStart < duration / 10; i++) await session.run(feeds);
  const times = [];
  const cpu0 = process.cpuUsage();
  const start = process.hrtime.bigint();
  while (times.length < 5 || Number(process.hrtime.bigint() - start) / 1e6 < duration) {
    const t = process.hrtime.bigint();
    await session.run(feeds);
    times.push(Number(process.hrtime.bigint() - t) / 1e3);
  }
  const total = Number(process.hrtime.bigint() - start) / 1e3;
  const cpu = process.cpuUsage(cpu0);
  times.sort((a, b) => a - b);
  const med = times[Math.floor(times.length / 2)];
  console.log(JSON.stringify({
    model: file, runtime: 'onnxruntime-node ' + require('onnxruntime-node/package.json').version,
    threads, batch, calls: times.length, us_per_call: med, mean_us_per_call: total / times.length,
    cpu_us_per_call: (cpu.user + cpu.system) / times.length, predictions_per_s: batch / (med / 1e6),
  }));
}

main().catch((e) => { console.error(e); process.exit(1); });
