package inference

import (
	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/tensor"
)

// Decoded is what DecodeRequest found in a record, for tests of the decoder.
type Decoded struct {
	ID     string // request_id as JSON text
	Spec   model.Spec
	Inputs map[string]*tensor.Tensor
	Rows   int64
}

// DecodeRequest decodes value as the pipeline does for a model whose
// signature is sig, and returns the error class with the error.
func DecodeRequest(value []byte, sig *model.Signature, defaultInput string) (*Decoded, string, error) {
	env, err := parseEnvelope(value)
	if err != nil {
		return nil, classOf(err), err
	}
	si := newSigInfo(model.DefaultSignature, sig, defaultInput)
	ins, rows, err := decodeInputs(&env, si)
	if err != nil {
		return nil, classOf(err), err
	}
	d := &Decoded{ID: string(env.id), Spec: env.spec(), Inputs: map[string]*tensor.Tensor{}, Rows: rows}
	for i, in := range sig.Inputs {
		d.Inputs[in.Name] = ins[i]
	}
	return d, "", nil
}

// AppendJSONString exposes the result encoder's string writer.
func AppendJSONString(b []byte, s string) []byte { return appendJSONString(b, s) }
