package pipeline

import (
	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/recordcodec"
	"github.com/infergate/infergate/inference/tensor"
)

// Request is a request record read by the pipeline's own parser, for code
// that scores requests outside the pipeline (a rollout's replay of a saved
// dataset): it names the same model, and decodes to the same tensors, as the
// pipeline would.
type Request struct {
	// Spec is the model the request asks for: the body's "model", else the
	// record's model header, else the default model; Version, Label and
	// Signature as the request names them.
	Spec model.Spec
	// ID is request_id as JSON text ("\"r-1\"", "17"), "" if absent.
	ID string
	// After Decode: the tensors by input name, the rows the request adds to
	// a batch, and whether its signature stacks requests along dim 0.
	Inputs    map[string]*tensor.Tensor
	Rows      int64
	Batchable bool
	Signature string // the signature decoded against

	env recordcodec.Envelope
}

// ParseRequest reads a request record's value. headerModel is the record's
// model header ("" if none), defaultModel pipeline.default_model. A
// malformed request is an error of class decode.
func ParseRequest(value []byte, headerModel, defaultModel string) (*Request, error) {
	env, err := recordcodec.ParseEnvelope(value)
	if err != nil {
		return nil, err
	}
	name := env.Model
	if name == "" {
		name = headerModel
	}
	if name == "" {
		name = defaultModel
	}
	return &Request{Spec: model.Spec{Name: name, Version: env.Version, Label: env.Label, Signature: env.Signature},
		ID: string(env.ID), env: env}, nil
}

// Decode reads the request's tensors against md, the metadata of the model
// version that is to score it, with the checks the pipeline makes (errors of
// class decode or validation). defaultInput is pipeline.default_input.
func (r *Request) Decode(md *model.Metadata, defaultInput string) error {
	name := signatureName(r.env.Signature, md)
	e := &metaEntry{key: metaKey{name: r.Spec.Name, version: md.Version}, meta: md}
	si, err := e.signature(name, defaultInput)
	if err != nil {
		return err
	}
	ins, rows, err := recordcodec.DecodeInputs(&r.env, si.Signature)
	if err != nil {
		return err
	}
	r.Inputs = make(map[string]*tensor.Tensor, len(ins))
	for i, t := range ins {
		r.Inputs[si.Sig.Inputs[i].Name] = t
	}
	r.Rows, r.Batchable, r.Signature = rows, si.Batchable, name
	return nil
}

// signatureName is the signature a request uses: the one it names, else
// serving_default, else the model's only one.
func signatureName(requested string, md *model.Metadata) string {
	if requested != "" {
		return requested
	}
	sig := model.DefaultSignature
	if _, ok := md.Signatures[sig]; !ok && len(md.Signatures) == 1 {
		for only := range md.Signatures {
			sig = only
		}
	}
	return sig
}
