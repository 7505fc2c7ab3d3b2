package demo_test

import (
	"slices"
	"testing"

	"github.com/infergate/infergate/inference/demo"
	"github.com/infergate/infergate/inference/onnxrt"
	"github.com/infergate/infergate/inference/tensor"
)

func TestEmbeddedModelSignature(t *testing.T) {
	m, err := onnxrt.Load(demo.ONNX)
	if err != nil {
		t.Fatal(err)
	}
	in, out := m.Inputs(), m.Outputs()
	if len(in) != 1 || in[0].Name != demo.InputName || !slices.Equal(in[0].Shape, []int64{-1, demo.Channels}) {
		t.Errorf("inputs = %+v", in)
	}
	if len(out) != 1 || out[0].Name != demo.OutputName || !slices.Equal(out[0].Shape, []int64{-1, 1}) {
		t.Errorf("outputs = %+v", out)
	}
}

// score runs the model over readings and returns the mean score, checking
// every score is in [0, 1].
func score(t *testing.T, m *onnxrt.Model, readings [][]float32) float64 {
	t.Helper()
	flat := slices.Concat(readings...)
	out, err := m.Run(map[string]*tensor.Tensor{demo.InputName: tensor.FromFloat32(flat, int64(len(readings)), demo.Channels)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, s := range out[demo.OutputName].Float32s() {
		if s < 0 || s > 1 {
			t.Fatalf("score %g outside [0, 1]", s)
		}
		sum += float64(s)
	}
	return sum / float64(len(readings))
}

// The generator must draw from the distribution the model was trained on:
// if the two drift apart, the model stops telling anomalies from normal
// readings, and this fails.
func TestModelSeparatesGeneratedAnomalies(t *testing.T) {
	m, err := onnxrt.Load(demo.ONNX)
	if err != nil {
		t.Fatal(err)
	}
	g := demo.NewGenerator(42)
	var normal, anomalous [][]float32
	for range 2000 {
		normal = append(normal, g.Normal())
		anomalous = append(anomalous, g.Anomalous())
	}
	mn, ma := score(t, m, normal), score(t, m, anomalous)
	t.Logf("mean score: normal %.4f, anomalous %.4f", mn, ma)
	if ma <= mn {
		t.Fatalf("mean anomaly score %.4f is not above mean normal score %.4f", ma, mn)
	}
	// The training script reports near 0 and near 1 on held-out data; leave
	// room, but a model that barely separates them is broken too.
	if mn > 0.2 || ma < 0.8 {
		t.Errorf("scores do not separate: normal %.4f, anomalous %.4f", mn, ma)
	}
}

func TestReadingMixAndDeterminism(t *testing.T) {
	a, b := demo.NewGenerator(7), demo.NewGenerator(7)
	anomalies := 0
	const n = 20000
	for i := range n {
		ra, fa := a.Reading()
		rb, fb := b.Reading()
		if !slices.Equal(ra, rb) || fa != fb {
			t.Fatalf("reading %d differs between generators with the same seed", i)
		}
		if len(ra) != demo.Channels {
			t.Fatalf("reading has %d channels", len(ra))
		}
		if fa {
			anomalies++
		}
	}
	// 5% expected; binomial sd is about 0.15%, so these bounds never flake.
	if r := float64(anomalies) / n; r < 0.04 || r > 0.06 {
		t.Errorf("anomaly ratio %.4f, want about %.2f", r, demo.DefaultAnomalyRatio)
	}
	c := demo.NewGenerator(7)
	c.SetAnomalyRatio(1)
	for range 100 {
		if _, anomalous := c.Reading(); !anomalous {
			t.Fatal("ratio 1 produced a normal reading")
		}
	}
}
