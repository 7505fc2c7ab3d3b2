// time_models.js: µs per call of ONNX models under ONNX Runtime (onnxruntime-node),
// the yardstick docs/runtime.md compares the embedded runtime with.
//
//   npm install --ignore-scripts onnxruntime-node     (in a scratch directory; the CPU library ships inside)
//   NODE_PATH=<scratch>/node_modules node time_models.js --threads 1 --batch 1,32 \
//       MODEL.onnx:INPUT:DIMS [MODEL.onnx:INPUT:DIMS ...]
//
// DIMS is the input shape with N for the batch, e.g. lstm.onnx:x:N,50,8. Inputs are fixed
// pseudo-random float32 values in [-1, 1). Per model and batch size: 50 warm-up calls, then
// calls for at least 2 s (at least 20); prints the median of 5 rounds as one JSON line per
// measurement: {"model", "batch", "us_per_call"}.
const ort = require("onnxruntime-node");

function arg(name, def) {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : def;
}

function rand(n, seed) {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = s / 2147483648 - 1;
  }
  return a;
}

async function main() {
  const threads = parseInt(arg("--threads", "1"), 10);
  const batches = arg("--batch", "1,32").split(",").map(Number);
  const specs = process.argv.slice(2).filter((a, i, all) => a.includes(":") && !all[i - 1]?.startsWith("--"));
  for (const spec of specs) {
    const [model, input, dims] = spec.split(":");
    const sess = await ort.InferenceSession.create(model, {
      intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: "sequential", graphOptimizationLevel: "all",
    });
    for (const n of batches) {
      const shape = dims.split(",").map((d) => (d === "N" ? n : Number(d)));
      const size = shape.reduce((a, b) => a * b, 1);
      const feeds = { [input]: new ort.Tensor("float32", rand(size, n), shape) };
      for (let i = 0; i < 50; i++) await sess.run(feeds);
      const rounds = [];
      for (let r = 0; r < 5; r++) {
        let calls = 0;
        const t0 = process.hrtime.bigint();
        let t = t0;
        while (calls < 20 || t - t0 < 400000000n) {
          await sess.run(feeds);
          calls++;
          t = process.hrtime.bigint();
        }
        rounds.push(Number(t - t0) / 1000 / calls);
      }
      rounds.sort((a, b) => a - b);
      console.log(JSON.stringify({ model: model.split("/").pop(), batch: n, us_per_call: +rounds[2].toFixed(1) }));
    }
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
