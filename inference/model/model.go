// Package model holds the few types every model server speaks in: which model
// to call (Spec), what it accepts and returns (Signature), and what a call
// returned (Result). The in-process model server, the TF Serving gRPC client
// and the pipeline all use them, so a Predictor can be either server.
package model

import (
	"github.com/infergate/infergate/inference/tensor"
)

// DefaultSignature is the signature used when a request names none.
const DefaultSignature = "serving_default"

// Spec selects a model, as TF Serving's ModelSpec does.
type Spec struct {
	Name string
	// Version 0 means the latest available version. Version and Label are
	// mutually exclusive.
	Version int64
	Label   string
	// Signature "" means DefaultSignature.
	Signature string
}

// SignatureName returns the signature to use, applying the default.
func (s Spec) SignatureName() string {
	if s.Signature == "" {
		return DefaultSignature
	}
	return s.Signature
}

// TensorSpec describes one input or output of a signature. Shape uses -1 for a
// dimension of any size (the batch dimension, usually); a nil Shape means the
// rank is unknown.
type TensorSpec struct {
	Name  string // the alias clients use in inputs/outputs maps
	DType tensor.DType
	Shape []int64
}

// Signature is one SignatureDef of a model.
type Signature struct {
	Method  string // e.g. "tensorflow/serving/predict"
	Inputs  []TensorSpec
	Outputs []TensorSpec
}

// Input returns the input spec with the given alias.
func (s *Signature) Input(name string) (TensorSpec, bool) {
	for _, in := range s.Inputs {
		if in.Name == name {
			return in, true
		}
	}
	return TensorSpec{}, false
}

// Metadata is what GetModelMetadata returns: the version that answered and
// its signatures by name.
type Metadata struct {
	Name       string
	Version    int64
	Signatures map[string]*Signature
}

// Result is what a Predict returned: the outputs (batch dimension first) and
// the model version that actually served the call.
type Result struct {
	Outputs map[string]*tensor.Tensor
	Version int64
}

// PredictMethod is the method name of predict signatures.
const PredictMethod = "tensorflow/serving/predict"
