package recordcodec

import (
	"fmt"

	"github.com/infergate/infergate/inference/model"
)

// Signature is a model signature prepared for decoding requests against it.
type Signature struct {
	Name string
	Sig  *model.Signature
	// Default is the input that the short form's "features" feed, -1 if
	// there is none (DefaultErr says why).
	Default    int
	DefaultErr string
	// Batchable: every input and output has a leading dimension of any
	// size, so requests can be stacked along it and results split back.
	Batchable bool
}

// NewSignature prepares sig, named name. defaultInput is the input the
// short form feeds (pipeline.default_input); "" means the only one.
func NewSignature(name string, sig *model.Signature, defaultInput string) *Signature {
	si := &Signature{Name: name, Sig: sig, Default: -1, Batchable: len(sig.Inputs) > 0}
	switch {
	case defaultInput != "":
		for i, in := range sig.Inputs {
			if in.Name == defaultInput {
				si.Default = i
			}
		}
		if si.Default < 0 {
			si.DefaultErr = fmt.Sprintf("signature %q has no input %q (pipeline.default_input)", name, defaultInput)
		}
	case len(sig.Inputs) == 1:
		si.Default = 0
	default:
		si.DefaultErr = fmt.Sprintf("signature %q has %d inputs, so \"features\" is ambiguous", name, len(sig.Inputs))
	}
	leads := func(shape []int64) bool { return shape == nil || (len(shape) > 0 && shape[0] == -1) }
	for _, in := range sig.Inputs {
		si.Batchable = si.Batchable && leads(in.Shape)
	}
	for _, out := range sig.Outputs {
		si.Batchable = si.Batchable && leads(out.Shape)
	}
	return si
}

func (si *Signature) inputIndex(name []byte) int {
	for i, in := range si.Sig.Inputs {
		if in.Name == string(name) {
			return i
		}
	}
	return -1
}
