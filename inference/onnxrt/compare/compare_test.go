//go:build compare

// Package compare benchmarks infergate's runtime against gomlx + onnx-gomlx
// (simplego backend, pure Go), the only library shared/model-runtimes.md
// found correct on every model. It is a separate module with a build tag so
// neither the main module's go.mod nor the binary carries gomlx:
//
//	cd inference/onnxrt/compare && go test -tags compare -bench . -count 3
package compare

import (
	"fmt"
	"math"
	"os"
	"testing"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/backends/simplego"
	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/onnx-gomlx/onnx"

	"github.com/infergate/infergate/inference/demo"
	"github.com/infergate/infergate/inference/onnxrt"
	"github.com/infergate/infergate/inference/tensor"
)

// models are the two MLPs compared: the demo and model-runtimes.md's mlp.
// beforeSigmoid names the value feeding the final Sigmoid, which onnx-gomlx
// v0.3.4 cannot convert: the graph is called up to it and gomlx's own
// Sigmoid applied.
var models = []struct {
	name, file, beforeSigmoid string
}{
	{"demo", "", "/4/Gemm_output_0"},
	{"mlp64", "../testdata/mlp64.onnx", "/4/Gemm_output_0"},
}

func modelBytes(tb testing.TB, file string) []byte {
	if file == "" {
		return demo.ONNX
	}
	b, err := os.ReadFile(file)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

type gomlxModel struct {
	exec *context.Exec
}

func newGomlx(tb testing.TB, b []byte, beforeSigmoid, config string) *gomlxModel {
	tb.Helper()
	m, err := onnx.Parse(b)
	if err != nil {
		tb.Fatal(err)
	}
	ctx := context.New()
	if err := m.VariablesToContext(ctx); err != nil {
		tb.Fatal(err)
	}
	var backend backends.Backend
	if backend, err = simplego.New(config); err != nil {
		tb.Fatal(err)
	}
	exec, err := context.NewExec(backend, ctx.Reuse(), func(ctx *context.Context, x *Node) *Node {
		out := m.CallGraph(ctx, x.Graph(), map[string]*Node{"input": x}, beforeSigmoid)
		return Sigmoid(out[0])
	})
	if err != nil {
		tb.Fatal(err)
	}
	return &gomlxModel{exec: exec}
}

func (g *gomlxModel) run(tb testing.TB, data []float32, n int) []float32 {
	out, err := g.exec.Exec1(tensors.FromFlatDataAndDimensions(data, n, 16))
	if err != nil {
		tb.Fatal(err)
	}
	flat, err := tensors.CopyFlatData[float32](out)
	if err != nil {
		tb.Fatal(err)
	}
	out.FinalizeAll()
	return flat
}

func readings(n int) []float32 {
	gen := demo.NewGenerator(3)
	data := make([]float32, 0, n*16)
	for range n {
		r, _ := gen.Reading()
		data = append(data, r...)
	}
	return data
}

// Both runtimes must agree before their speed means anything.
func TestAgree(t *testing.T) {
	for _, mm := range models {
		b := modelBytes(t, mm.file)
		ours, err := onnxrt.Load(b)
		if err != nil {
			t.Fatal(err)
		}
		g := newGomlx(t, b, mm.beforeSigmoid, "")
		for _, n := range []int{1, 7, 256} {
			data := readings(n)
			res, err := ours.Run(map[string]*tensor.Tensor{"input": tensor.FromFloat32(data, int64(n), 16)}, nil)
			if err != nil {
				t.Fatal(err)
			}
			want := g.run(t, data, n)
			var worst float64
			for i, v := range res["output"].Float32s() {
				worst = max(worst, math.Abs(float64(v-want[i])))
			}
			t.Logf("%s batch %d: largest difference %.2g", mm.name, n, worst)
			if worst > 1e-5 {
				t.Errorf("%s batch %d: runtimes differ by %g", mm.name, n, worst)
			}
		}
	}
}

func BenchmarkCompare(b *testing.B) {
	for _, mm := range models {
		mb := modelBytes(b, mm.file)
		ours, err := onnxrt.Load(mb)
		if err != nil {
			b.Fatal(err)
		}
		gomlxDefault := newGomlx(b, mb, mm.beforeSigmoid, "")
		gomlxSeq := newGomlx(b, mb, mm.beforeSigmoid, "ops_sequential")
		for _, n := range []int{1, 32, 256} {
			data := readings(n)
			report := func(b *testing.B) {
				b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "predictions/s")
			}
			b.Run(fmt.Sprintf("model=%s/runtime=infergate/batch=%d", mm.name, n), func(b *testing.B) {
				in := map[string]*tensor.Tensor{"input": tensor.FromFloat32(data, int64(n), 16)}
				for b.Loop() {
					if _, err := ours.Run(in, nil); err != nil {
						b.Fatal(err)
					}
				}
				report(b)
			})
			for _, g := range []struct {
				name string
				m    *gomlxModel
			}{{"gomlx-simplego", gomlxDefault}, {"gomlx-simplego-sequential", gomlxSeq}} {
				b.Run(fmt.Sprintf("model=%s/runtime=%s/batch=%d", mm.name, g.name, n), func(b *testing.B) {
					g.m.run(b, data, n) // compile for this shape outside the timing
					for b.Loop() {
						g.m.run(b, data, n)
					}
					report(b)
				})
			}
		}
	}
}
