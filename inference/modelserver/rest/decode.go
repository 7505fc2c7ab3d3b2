package rest

import (
	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/tensor"
)

// DecodeInputs reads a TF Serving REST predict body ("inputs", columnar, or
// "instances", rows) against sig, exactly as the :predict endpoint does; for
// tools that feed a model a request file (`infergate model bench --input`).
// Errors are gRPC INVALID_ARGUMENT statuses naming what is wrong.
func DecodeInputs(body []byte, sig *model.Signature) (map[string]*tensor.Tensor, error) {
	req, err := decodePredict(body, func(string) (*model.Signature, error) { return sig, nil })
	if err != nil {
		return nil, err
	}
	return req.inputs, nil
}
