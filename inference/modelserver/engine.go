package modelserver

// engine.go is the only file that knows how models are executed: the
// pure-Go ONNX runtime (inference/onnxrt).

import (
	"errors"

	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/onnxrt"
	"github.com/infergate/infergate/inference/tensor"
)

// engine runs a loaded model; safe for concurrent use.
type engine interface {
	Run(inputs map[string]*tensor.Tensor, outputs []string) (map[string]*tensor.Tensor, error)
}

type loadedModel struct {
	eng             engine
	inputs, outputs []model.TensorSpec
}

func isInvalidInput(err error) bool { return errors.Is(err, onnxrt.ErrInvalidInput) }

// loadONNX loads a model; maxFolded bounds its folded constants (0: the
// runtime's default); threads is the goroutines one call may use (0: all
// cores).
func loadONNX(data []byte, maxFolded int64, threads int) (*loadedModel, error) {
	m, err := onnxrt.LoadWithOptions(data, onnxrt.LoadOptions{MaxFoldedBytes: maxFolded, Threads: threads})
	if err != nil {
		return nil, err
	}
	return &loadedModel{eng: m, inputs: specs(m.Inputs()), outputs: specs(m.Outputs())}, nil
}

func specs(in []onnxrt.TensorSpec) []model.TensorSpec {
	out := make([]model.TensorSpec, len(in))
	for i, s := range in {
		out[i] = model.TensorSpec{Name: s.Name, DType: s.DType, Shape: s.Shape}
	}
	return out
}
