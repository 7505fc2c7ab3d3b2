package bench

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/infergate/infergate/inference/modelserver"
	"github.com/infergate/infergate/inference/onnxrt"
	"github.com/infergate/infergate/inference/tensor"
)

// ModelName is the name a --model file is served under in the
// self-contained appliance, as its default model.
const ModelName = "bench"

// maxPayloadBytes bounds the pre-encoded requests of a --model run: a
// 3x64x64 image is ~110 KB of JSON, and 4096 of them would be most of a
// small machine's memory.
const maxPayloadBytes = 64 << 20

// isXGBoost tells an XGBoost JSON model from an ONNX file by its name.
func isXGBoost(path string) bool { return strings.EqualFold(filepath.Ext(path), ".json") }

// modelRow loads the --model file and returns the shape of one row of its
// single float32 input (the input's shape without the batch dimension).
func modelRow(path string) ([]int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--model: %w", err)
	}
	var m *onnxrt.Model
	if isXGBoost(path) {
		m, err = onnxrt.LoadXGBoostJSON(b)
	} else {
		m, err = onnxrt.Load(b)
	}
	if err != nil {
		return nil, fmt.Errorf("--model %s: %w", path, err)
	}
	in := m.Inputs()
	if len(in) != 1 || (in[0].DType != tensor.Float && in[0].DType != tensor.Half) || len(in[0].Shape) < 1 {
		return nil, fmt.Errorf("--model %s: the bench generates one float32 (or float16) input with a batch dimension; the model's inputs are %+v", path, in)
	}
	row := in[0].Shape[1:]
	for _, d := range row {
		if d < 1 {
			return nil, fmt.Errorf("--model %s: input %s has shape %v; the bench needs every dimension but the batch fixed", path, in[0].Name, in[0].Shape)
		}
	}
	return row, nil
}

// installModel copies the --model file into the model repository as
// version 1 of ModelName.
func installModel(path, modelsDir string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--model: %w", err)
	}
	dir := filepath.Join(modelsDir, ModelName, "1")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("bench: model repository: %w", err)
	}
	name := modelserver.ModelFileName
	if isXGBoost(path) {
		name = modelserver.XGBoostFileName
	}
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		return fmt.Errorf("bench: model repository: %w", err)
	}
	return nil
}

// newModelPayloads are requests for the --model file: short-form rows of
// standard normal values, nested to the row's shape. Fewer than n when n
// of them would pass maxPayloadBytes.
func newModelPayloads(n int, seed uint64, badEvery int, row []int64) payloads {
	elems := int64(1)
	for _, d := range row {
		elems *= d
	}
	if most := int(maxPayloadBytes / (elems*12 + 64)); n > most {
		n = max(most, 1)
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	p := payloads{vals: make([][]byte, n), badEvery: badEvery}
	for i := range n {
		b := []byte(`{"request_id":"bench-`)
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, `","features":`...)
		if p.bad(int64(i)) {
			b = append(b, `"not a list of numbers"}`...)
		} else {
			b = appendNested(b, row, rng)
			b = append(b, '}')
		}
		p.vals[i] = b
	}
	return p
}

// appendNested writes nested lists of the given shape with random values.
func appendNested(b []byte, shape []int64, rng *rand.Rand) []byte {
	if len(shape) == 0 {
		return strconv.AppendFloat(b, float64(float32(rng.NormFloat64())), 'g', -1, 32)
	}
	b = append(b, '[')
	for i := range shape[0] {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendNested(b, shape[1:], rng)
	}
	return append(b, ']')
}
