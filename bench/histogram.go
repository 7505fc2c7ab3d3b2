package bench

import (
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// Latencies are recorded in microseconds: 1 µs resolution, up to an hour,
// three significant figures (a recorded value is within 0.1 % of the true
// one). That is about 180 KiB per histogram, so the bench keeps only two:
// the whole measured window and the current one-second interval.
const (
	histMin     = 1
	histMax     = int64(time.Hour / time.Microsecond)
	histSigFigs = 3
)

func newHist() *hdr.Histogram { return hdr.New(histMin, histMax, histSigFigs) }

// recordLatency records d, clamped to the histogram's range, so a request
// that took longer than an hour (or a clock step backwards) is still counted.
func recordLatency(h *hdr.Histogram, d time.Duration) {
	us := int64(d / time.Microsecond)
	_ = h.RecordValue(min(max(us, histMin), histMax))
}

// Percentiles is the latency summary of a histogram, in milliseconds.
type Percentiles struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
}

func usToMS(us int64) float64 { return float64(us) / 1000 }

// summarize reads the summary of h. HDR reports the highest value
// equivalent to the recorded one (within 0.1 %), never an interpolation.
func summarize(h *hdr.Histogram) Percentiles {
	if h.TotalCount() == 0 {
		return Percentiles{}
	}
	v := h.ValueAtPercentilesSlice([]float64{50, 90, 99, 99.9})
	return Percentiles{
		Count: h.TotalCount(),
		Mean:  h.Mean() / 1000,
		P50:   usToMS(v[0]),
		P90:   usToMS(v[1]),
		P99:   usToMS(v[2]),
		P999:  usToMS(v[3]),
		Max:   usToMS(h.Max()),
	}
}

// CurvePoint is one point of the latency-by-percentile curve.
type CurvePoint struct {
	Percentile float64 `json:"percentile"`
	MS         float64 `json:"ms"`
}

// curvePercentiles are the points of the latency-by-percentile plot: dense
// where tails live (each "nine" gets the same width on the plot's axis).
var curvePercentiles = []float64{0, 10, 20, 30, 40, 50, 60, 70, 75, 80, 85, 90, 92.5, 95, 96, 97, 97.5, 98, 98.5, 99,
	99.25, 99.5, 99.6, 99.7, 99.75, 99.8, 99.85, 99.9, 99.925, 99.95, 99.96, 99.97, 99.975, 99.98, 99.985, 99.99, 99.995, 99.999, 100}

func curve(h *hdr.Histogram) []CurvePoint {
	if h.TotalCount() == 0 {
		return nil
	}
	vs := h.ValueAtPercentilesSlice(curvePercentiles)
	out := make([]CurvePoint, len(vs))
	for i, v := range vs {
		out[i] = CurvePoint{Percentile: curvePercentiles[i], MS: usToMS(v)}
	}
	out[len(out)-1].MS = usToMS(h.Max())
	return out
}
