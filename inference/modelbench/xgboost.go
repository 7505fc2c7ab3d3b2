package modelbench

import (
	"fmt"
	"os"

	"github.com/infergate/infergate/inference/onnxrt"
	"github.com/infergate/infergate/inference/tensor"
)

// XGBoost's JSON model format, as the model server loads it from
// <model>/<version>/model.json (onnxrt.LoadXGBoostJSON). Tree evaluation
// uses one thread, whatever threads says.
func init() {
	Formats = append(Formats, Format{Name: "XGBoost JSON", FileName: "model.json", Ext: ".json", Load: loadXGBoost})
}

func loadXGBoost(path string, _ int) (*Model, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m, err := onnxrt.LoadXGBoostJSON(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &Model{Format: "XGBoost JSON", Path: path, Inputs: specs(m.Inputs()), Outputs: specs(m.Outputs()),
		Run: func(in map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) { return m.Run(in, nil) }}, nil
}
