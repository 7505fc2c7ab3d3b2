// Package demo is infergate's bundled demo model, in one place: the model
// file and its signature, installing it into a model repository (Install,
// ModelConfig), the traffic generator the appliance's --demo mode and the
// bench feed it with (Generator, AppendRequest), and reading its score back
// from a result (Score).
//
// The model (demo.onnx, trained and exported by train.py in this directory)
// scores one reading of 16 sensor channels: input "input" float32 [-1, 16],
// output "output" float32 [-1, 1], an anomaly score in [0, 1].
package demo

import (
	_ "embed"
	"math"
	"math/rand/v2"
)

// ONNX is the demo model file, embedded so the binary can write it into the
// model repository on first start without anything else on disk.
//
//go:embed demo.onnx
var ONNX []byte

// Model signature facts, for callers that build requests without reading the
// model's metadata.
const (
	Name       = "demo"
	InputName  = "input"
	OutputName = "output"
	Channels   = 16
)

// Generator makes sensor readings from the distribution the demo model was
// trained on (train.py documents the same distribution; keep them in step).
//
// Normal operation, one reading:
//
//	theta ~ U[0, 2π)   position in the machine's cycle
//	a     ~ U[0.8, 1.2] load
//	for channel c in 0..15:
//	    h_c = 1 + c%3, phi_c = 2πc/16, o_c = 0.25(c%4) − 0.375
//	    x_c = o_c + a·sin(h_c·theta + phi_c) + N(0, 0.05²)
//
// Anomalies are normal readings with one fault, each fault equally likely:
//
//	spike: 1–3 distinct channels each get ±U[2, 4] added (sign per channel)
//	drift: 4–8 distinct channels all get the same offset ±U[0.8, 1.6]
//	stuck: 3–6 distinct channels are all set to one value v ~ U[−1.5, 1.5], no noise
//
// A Generator is not safe for concurrent use; give each goroutine its own.
type Generator struct {
	rng          *rand.Rand
	anomalyRatio float64
}

// DefaultAnomalyRatio is the share of anomalous readings Reading produces.
const DefaultAnomalyRatio = 0.05

// NewGenerator returns a generator whose sequence is fixed by seed.
func NewGenerator(seed int64) *Generator {
	return &Generator{
		rng:          rand.New(rand.NewPCG(uint64(seed), 0x696e666572676174)),
		anomalyRatio: DefaultAnomalyRatio,
	}
}

// SetAnomalyRatio sets the share (clamped to [0, 1]) of anomalous readings.
func (g *Generator) SetAnomalyRatio(r float64) {
	g.anomalyRatio = min(max(r, 0), 1)
}

// Reading returns one reading of Channels values and whether it is anomalous.
func (g *Generator) Reading() (features []float32, anomalous bool) {
	if g.rng.Float64() < g.anomalyRatio {
		return g.Anomalous(), true
	}
	return g.Normal(), false
}

// Normal returns a reading of normal operation.
func (g *Generator) Normal() []float32 {
	x := make([]float32, Channels)
	theta := g.uniform(0, 2*math.Pi)
	a := g.uniform(0.8, 1.2)
	for c := range Channels {
		h := float64(1 + c%3)
		phi := 2 * math.Pi * float64(c) / Channels
		o := 0.25*float64(c%4) - 0.375
		x[c] = float32(o + a*math.Sin(h*theta+phi) + 0.05*g.rng.NormFloat64())
	}
	return x
}

// Anomalous returns a reading with one fault: a spike, a drift or a stuck group.
func (g *Generator) Anomalous() []float32 {
	x := g.Normal()
	switch g.rng.IntN(3) {
	case 0: // spike
		for _, c := range g.channels(1 + g.rng.IntN(3)) {
			x[c] += float32(g.sign() * g.uniform(2, 4))
		}
	case 1: // drift
		d := float32(g.sign() * g.uniform(0.8, 1.6))
		for _, c := range g.channels(4 + g.rng.IntN(5)) {
			x[c] += d
		}
	default: // stuck
		v := float32(g.uniform(-1.5, 1.5))
		for _, c := range g.channels(3 + g.rng.IntN(4)) {
			x[c] = v
		}
	}
	return x
}

func (g *Generator) uniform(lo, hi float64) float64 { return lo + (hi-lo)*g.rng.Float64() }

func (g *Generator) sign() float64 {
	if g.rng.IntN(2) == 0 {
		return -1
	}
	return 1
}

// channels picks k distinct channels.
func (g *Generator) channels(k int) []int {
	return g.rng.Perm(Channels)[:k]
}
