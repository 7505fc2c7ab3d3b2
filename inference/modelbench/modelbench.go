// Package modelbench loads a model the way the model server would and times
// it on its own: microseconds per call and predictions per second at the
// batch sizes asked, for sizing a machine (`infergate model bench`).
package modelbench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/onnxrt"
	"github.com/infergate/infergate/inference/tensor"
)

// Model is a loaded model, whatever its file format.
type Model struct {
	Format  string // "ONNX", …
	Path    string // the file loaded
	Inputs  []model.TensorSpec
	Outputs []model.TensorSpec
	Run     func(inputs map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error)
}

// Format is one model file format the bench can load. A version directory
// is searched for each format's FileName in order; a file is matched by its
// Ext. To add a format, append to Formats.
type Format struct {
	Name     string
	FileName string // in a model-repository version directory
	Ext      string // of a file given directly
	Load     func(path string, threads int) (*Model, error)
}

// Formats lists the formats in the order a version directory is searched.
var Formats = []Format{
	{Name: "ONNX", FileName: "model.onnx", Ext: ".onnx", Load: loadONNX},
}

func loadONNX(path string, threads int) (*Model, error) {
	m, err := onnxrt.LoadFileWithOptions(path, onnxrt.LoadOptions{Threads: threads})
	if err != nil {
		return nil, err
	}
	return &Model{Format: "ONNX", Path: path, Inputs: specs(m.Inputs()), Outputs: specs(m.Outputs()),
		Run: func(in map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) { return m.Run(in, nil) }}, nil
}

func specs(in []onnxrt.TensorSpec) []model.TensorSpec {
	out := make([]model.TensorSpec, len(in))
	for i, s := range in {
		out[i] = model.TensorSpec{Name: s.Name, DType: s.DType, Shape: s.Shape}
	}
	return out
}

// Open loads a model file, a model-repository version directory
// (<model>/<version>/model.onnx …) or a model directory (its highest
// numbered version). threads is the runtime's thread count (0: all cores).
func Open(path string, threads int) (*Model, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		file, err := findInDir(path)
		if err != nil {
			return nil, err
		}
		path = file
	}
	for _, f := range Formats {
		if strings.EqualFold(filepath.Ext(path), f.Ext) || filepath.Base(path) == f.FileName {
			return f.Load(path, threads)
		}
	}
	return nil, fmt.Errorf("%s: unknown model format (known: %s)", path, formatList())
}

func formatList() string {
	var s []string
	for _, f := range Formats {
		s = append(s, fmt.Sprintf("%s (*%s, or %s in a version directory)", f.Name, f.Ext, f.FileName))
	}
	return strings.Join(s, ", ")
}

// findInDir returns the model file of a version directory, or of the highest
// version of a model directory.
func findInDir(dir string) (string, error) {
	for _, f := range Formats {
		p := filepath.Join(dir, f.FileName)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	best := int64(-1)
	for _, e := range entries {
		if v, err := strconv.ParseInt(e.Name(), 10, 64); err == nil && e.IsDir() && v > best {
			best = v
		}
	}
	if best < 0 {
		return "", fmt.Errorf("%s holds no model file (%s) and no numbered version directory", dir, formatList())
	}
	return findInDir(filepath.Join(dir, strconv.FormatInt(best, 10)))
}

// RandomInputs makes inputs that fit the signature: dimension 0, if open,
// is batch; any other open dimension is dyn. Floats are standard normal,
// integers 0 or 1 (safe as indices), bools random.
func RandomInputs(specs []model.TensorSpec, batch, dyn int, seed uint64) (map[string]*tensor.Tensor, error) {
	rng := rand.New(rand.NewPCG(seed, 11))
	out := make(map[string]*tensor.Tensor, len(specs))
	for _, s := range specs {
		if s.Shape == nil {
			return nil, fmt.Errorf("input %q has an unknown rank: give an input file (--input)", s.Name)
		}
		shape := slices.Clone(s.Shape)
		for i, d := range shape {
			if d < 0 {
				shape[i] = int64(dyn)
				if i == 0 {
					shape[i] = int64(batch)
				}
			}
		}
		t, err := tensor.New(s.DType, shape...)
		if err != nil {
			return nil, fmt.Errorf("input %q: %w", s.Name, err)
		}
		switch d := t.Data.(type) {
		case []float32:
			for i := range d {
				d[i] = float32(rng.NormFloat64())
			}
			if s.DType == tensor.Half {
				tensor.RoundHalf(d)
			}
		case []float64:
			for i := range d {
				d[i] = rng.NormFloat64()
			}
		case []int64:
			for i := range d {
				d[i] = rng.Int64N(2)
			}
		case []int32:
			for i := range d {
				d[i] = rng.Int32N(2)
			}
		case []int16:
			for i := range d {
				d[i] = int16(rng.IntN(2))
			}
		case []int8:
			for i := range d {
				d[i] = int8(rng.IntN(2))
			}
		case []uint8:
			for i := range d {
				d[i] = uint8(rng.IntN(2))
			}
		case []bool:
			for i := range d {
				d[i] = rng.IntN(2) == 1
			}
		default:
			return nil, fmt.Errorf("input %q has type %s, for which no random values are made: give an input file (--input)", s.Name, s.DType)
		}
		out[s.Name] = t
	}
	return out, nil
}

// BatchOf is the batch size of inputs: dimension 0 of the first input in
// signature order (1 for a scalar).
func BatchOf(specs []model.TensorSpec, inputs map[string]*tensor.Tensor) int {
	for _, s := range specs {
		if t, ok := inputs[s.Name]; ok && len(t.Shape) > 0 {
			return int(t.Shape[0])
		}
	}
	return 1
}

// Result is one batch size's timing.
type Result struct {
	Batch             int     `json:"batch"`
	Calls             int     `json:"calls"`
	MicrosPerCall     float64 `json:"us_per_call"`       // median wall time of one call
	MeanMicrosPerCall float64 `json:"mean_us_per_call"`  // mean wall time
	CPUMicrosPerCall  float64 `json:"cpu_us_per_call"`   // process CPU time per call (all threads); 0 if unknown
	PredictionsPerSec float64 `json:"predictions_per_s"` // batch / median
}

// Measure runs the model on inputs: a few warm-up calls (at least 3, or
// 10% of d), then calls until d has passed (at least 5). The median call is
// what a request sees on an otherwise idle machine; CPU time says how much
// of the machine it took.
func Measure(ctx context.Context, m *Model, inputs map[string]*tensor.Tensor, d time.Duration) (Result, error) {
	batch := BatchOf(m.Inputs, inputs)
	warm := time.Now()
	for i := 0; i < 3 || time.Since(warm) < d/10; i++ {
		if _, err := m.Run(inputs); err != nil {
			return Result{}, err
		}
	}
	var times []time.Duration
	cpu0 := processCPU()
	start := time.Now()
	for len(times) < 5 || time.Since(start) < d {
		if err := ctx.Err(); err != nil {
			return Result{}, err
		}
		t := time.Now()
		if _, err := m.Run(inputs); err != nil {
			return Result{}, err
		}
		times = append(times, time.Since(t))
	}
	total := time.Since(start)
	cpu := processCPU() - cpu0
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	med := times[len(times)/2]
	r := Result{Batch: batch, Calls: len(times),
		MicrosPerCall:     float64(med) / 1e3,
		MeanMicrosPerCall: float64(total) / 1e3 / float64(len(times)),
		PredictionsPerSec: float64(batch) / med.Seconds()}
	if cpu > 0 {
		r.CPUMicrosPerCall = float64(cpu) / 1e3 / float64(len(times))
	}
	return r, nil
}

// ParseBatches reads "1,32".
func ParseBatches(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, errors.New("want positive batch sizes separated by commas, such as 1,32")
		}
		out = append(out, n)
	}
	return out, nil
}

// KernelName says which GEMM micro-kernel the runtime uses on this CPU.
func KernelName() string { return onnxrt.KernelName() }
