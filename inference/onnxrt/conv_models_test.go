package onnxrt_test

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/infergate/infergate/inference/onnxrt"
	"github.com/infergate/infergate/inference/tensor"
)

// convCases is testdata/conv_cases.json, written by export_cnn.py.
type convCases map[string]struct {
	InputShape []int64 `json:"input_shape"`
	Outputs    []struct {
		Batch  int64     `json:"batch"`
		Shape  []int64   `json:"shape"`
		Stride int       `json:"stride"`
		Data   []float32 `json:"data"`
	} `json:"outputs"`
}

func readConvCases(t testing.TB) convCases {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "conv_cases.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cc convCases
	if err := json.Unmarshal(b, &cc); err != nil {
		t.Fatal(err)
	}
	return cc
}

// convInput is export_cnn.py's input: element i of image b is
// sin(0.01·i + 0.7·b), rounded to float32.
func convInput(batch int64, shape []int64) *tensor.Tensor {
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	v := make([]float32, batch*n)
	for b := range batch {
		for i := range n {
			v[b*n+i] = float32(math.Sin(0.01*float64(i) + 0.7*float64(b)))
		}
	}
	return tensor.FromFloat32(v, append([]int64{batch}, shape...)...)
}

// The convolution models exported from torch match torch's outputs (rtol
// 1e-4, atol 1e-5) at batch 1 and 3, at opsets 13 and 17, with one thread
// and two, on a fresh and a pooled state, with the micro-kernel the CPU
// selects and with the portable Go one forced.
func TestConvModelsMatchTorch(t *testing.T) {
	cc := readConvCases(t)
	for _, name := range []string{"cnn2d", "cnn1d", "mobilenet", "resnet"} {
		c, ok := cc[name]
		if !ok {
			t.Fatalf("conv_cases.json has no %s", name)
		}
		for _, opset := range []int{13, 17} {
			for _, variant := range []string{"threads=1", "threads=2", "portable"} {
				t.Run(fmt.Sprintf("%s/opset%d/%s", name, opset, variant), func(t *testing.T) {
					if opset == 17 && variant != "threads=2" {
						t.Skip("torch emits the same operators at both opsets; the slow variants run at 13")
					}
					threads := 2
					switch variant {
					case "threads=1":
						threads = 1
					case "portable":
						if !onnxrt.UsePortableKernel(t) {
							t.Skip("the portable micro-kernel is the only one on this CPU; covered above")
						}
					}
					m, err := onnxrt.LoadFileWithOptions(filepath.Join("testdata", fmt.Sprintf("%s_opset%d.onnx", name, opset)),
						onnxrt.LoadOptions{Threads: threads})
					if err != nil {
						t.Fatal(err)
					}
					for _, want := range c.Outputs {
						// The slow paths (one thread, the portable kernel) run
						// one batch size once; two threads run both twice.
						runs := 2
						if variant != "threads=2" {
							if (variant == "portable") != (want.Batch == 1) {
								continue
							}
							runs = 1
						}
						for run := range runs {
							out, err := m.Run(map[string]*tensor.Tensor{"input": convInput(want.Batch, c.InputShape)}, nil)
							if err != nil {
								t.Fatal(err)
							}
							checkSampled(t, fmt.Sprintf("batch %d run %d", want.Batch, run), out["output"], want.Shape, want.Stride, want.Data)
						}
					}
				})
			}
		}
	}
}

func checkSampled(t *testing.T, what string, got *tensor.Tensor, shape []int64, stride int, want []float32) {
	t.Helper()
	if fmt.Sprint(got.Shape) != fmt.Sprint(shape) {
		t.Fatalf("%s: shape %v, want %v", what, got.Shape, shape)
	}
	g := got.Data.([]float32)
	bad := 0
	for i, w := range want {
		v := g[i*stride]
		if d := math.Abs(float64(v - w)); d > 1e-5+1e-4*math.Abs(float64(w)) || v != v {
			if bad < 5 {
				t.Errorf("%s: output[%d] = %v, torch %v", what, i*stride, v, w)
			}
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d values differ", what, bad, len(want))
	}
}

// In steady state a convolution model allocates only its results, with two
// threads as with one: weights are packed at load, im2col panels and work
// items come from pools.
func TestConvModelAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	cc := readConvCases(t)
	for _, name := range []string{"cnn2d", "mobilenet", "resnet", "cnn1d"} {
		for _, threads := range []int{1, 2} {
			t.Run(fmt.Sprintf("%s/threads=%d", name, threads), func(t *testing.T) {
				m, err := onnxrt.LoadFileWithOptions(filepath.Join("testdata", name+"_opset13.onnx"), onnxrt.LoadOptions{Threads: threads})
				if err != nil {
					t.Fatal(err)
				}
				in := map[string]*tensor.Tensor{"input": convInput(4, cc[name].InputShape)}
				allocs := testing.AllocsPerRun(20, func() {
					if _, err := m.Run(in, nil); err != nil {
						t.Fatal(err)
					}
				})
				// As TestRunAllocations: the map, and the output's tensor,
				// shape, data and interface box.
				if allocs > 6 {
					t.Errorf("Run allocates %.1f times per call, want at most 6", allocs)
				}
			})
		}
	}
}

// BenchmarkConvModels times the exported conv models at batch 1 and 32 with
// 1 and 2 threads: go test -bench ConvModels -run XXX ./inference/onnxrt/
func BenchmarkConvModels(b *testing.B) {
	cc := readConvCases(b)
	for _, name := range []string{"cnn2d", "cnn1d", "mobilenet", "resnet"} {
		for _, threads := range []int{1, 2} {
			m, err := onnxrt.LoadFileWithOptions(filepath.Join("testdata", name+"_opset13.onnx"), onnxrt.LoadOptions{Threads: threads})
			if err != nil {
				b.Fatal(err)
			}
			for _, batch := range []int64{1, 32} {
				in := map[string]*tensor.Tensor{"input": convInput(batch, cc[name].InputShape)}
				b.Run(fmt.Sprintf("%s/threads=%d/batch=%d", name, threads, batch), func(b *testing.B) {
					for b.Loop() {
						if _, err := m.Run(in, nil); err != nil {
							b.Fatal(err)
						}
					}
					b.ReportMetric(float64(batch)*float64(b.N)/b.Elapsed().Seconds(), "pred/s")
				})
			}
		}
	}
}
