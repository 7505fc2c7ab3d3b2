package modelserver

import "github.com/infergate/infergate/inference/onnxrt"

// loadXGBoost loads a version directory's model.json (XGBoost's JSON model
// format) on the runtime's tree ensemble; see onnxrt.LoadXGBoostJSON for
// the signature it serves.
func loadXGBoost(data []byte) (*loadedModel, error) {
	m, err := onnxrt.LoadXGBoostJSON(data)
	if err != nil {
		return nil, err
	}
	return &loadedModel{eng: m, inputs: specs(m.Inputs()), outputs: specs(m.Outputs())}, nil
}
