package modelserver

import "github.com/infergate/infergate/inference/runtime"

// loadXGBoost loads a version directory's model.json (XGBoost's JSON model
// format) on the runtime's tree ensemble; see runtime.LoadXGBoostJSON for
// the signature it serves.
func loadXGBoost(data []byte) (*loadedModel, error) {
	m, err := runtime.LoadXGBoostJSON(data)
	if err != nil {
		return nil, err
	}
	return &loadedModel{eng: m, inputs: specs(m.Inputs()), outputs: specs(m.Outputs())}, nil
}
