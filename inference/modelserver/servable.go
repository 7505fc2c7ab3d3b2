package modelserver

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/tensor"
	"github.com/infergate/infergate/inference/tfserving"
)

// servable is one loaded model version. It is immutable once published, so
// request goroutines read it without locks.
type servable struct {
	name    string
	version int64
	eng     engine
	sig     *model.Signature // model.DefaultSignature, the only one an ONNX graph has
	// outNames are the graph output names in signature order (all outputs).
	outNames []string
	meta     *model.Metadata
	sigAny   *anypb.Any // SignatureDefMap for GetModelMetadata, built once
	batch    *batcher   // nil when batching is off
}

func newServable(name string, version int64, lm *loadedModel, batching *tfserving.BatchingConfig) (*servable, error) {
	sig := &model.Signature{
		Method:  model.PredictMethod,
		Inputs:  slices.Clone(lm.inputs),
		Outputs: slices.Clone(lm.outputs),
	}
	s := &servable{name: name, version: version, eng: lm.eng, sig: sig}
	for _, o := range sig.Outputs {
		s.outNames = append(s.outNames, o.Name)
	}
	s.meta = &model.Metadata{Name: name, Version: version, Signatures: map[string]*model.Signature{model.DefaultSignature: sig}}
	a, err := signatureDefMapAny(s.meta.Signatures)
	if err != nil {
		return nil, fmt.Errorf("build signature_def: %w", err)
	}
	s.sigAny = a
	if batching != nil {
		s.batch = newBatcher(s, *batching)
	}
	return s, nil
}

// signature returns the named signature or TF's error for an unknown one.
func (s *servable) signature(name string) (*model.Signature, error) {
	if name == "" || name == model.DefaultSignature {
		return s.sig, nil
	}
	// TF answers FAILED_PRECONDITION here (predict_util.cc), not INVALID_ARGUMENT.
	return nil, status.Errorf(codes.FailedPrecondition, "Serving signature key %q not found.", name)
}

// checkInputNames applies TF's request checks on input aliases: the count
// first, then each alias.
func checkInputNames[V any](sig *model.Signature, inputs map[string]V) error {
	if len(inputs) != len(sig.Inputs) {
		return inputSizeError(sig, inputs)
	}
	for _, in := range sig.Inputs {
		if _, ok := inputs[in.Name]; !ok {
			// Same count but a signature input is missing, so some alias is unknown.
			for _, alias := range sortedKeys(inputs) {
				if _, ok := sig.Input(alias); !ok {
					return status.Errorf(codes.InvalidArgument,
						"input tensor alias not found in signature: %s. Inputs expected to be in the set {%s}.",
						alias, strings.Join(sigNames(sig.Inputs), ","))
				}
			}
		}
	}
	return nil
}

func inputSizeError[V any](sig *model.Signature, inputs map[string]V) error {
	req := sortedKeys(inputs)
	want := sigNames(sig.Inputs)
	var extra, missing []string
	for _, r := range req {
		if !slices.Contains(want, r) {
			extra = append(extra, r)
		}
	}
	for _, w := range want {
		if _, ok := inputs[w]; !ok {
			missing = append(missing, w)
		}
	}
	return status.Errorf(codes.InvalidArgument,
		"input size does not match signature: %d!=%d len({%s}) != len({%s}). Sent extra: {%s}. Missing but required: {%s}.",
		len(req), len(want), strings.Join(req, ","), strings.Join(want, ","), strings.Join(extra, ","), strings.Join(missing, ","))
}

// checkInputTensors checks dtype, shape and data of every input against the
// signature. Names were checked by checkInputNames.
func checkInputTensors(sig *model.Signature, inputs map[string]*tensor.Tensor) error {
	for i := range sig.Inputs {
		spec := &sig.Inputs[i]
		t := inputs[spec.Name]
		if t == nil {
			return status.Errorf(codes.InvalidArgument, "input %q is nil", spec.Name)
		}
		// DT_FLOAT for a DT_HALF input is an extension (TF Serving refuses
		// it): the runtime rounds it, and clients written when float16
		// models showed float32 signatures keep working.
		if t.DType != spec.DType && !(spec.DType == tensor.Half && t.DType == tensor.Float) {
			return status.Errorf(codes.InvalidArgument, "input %q: expects dtype %s, got %s", spec.Name, spec.DType, t.DType)
		}
		if !tensor.Compatible(spec.Shape, t.Shape) {
			return status.Errorf(codes.InvalidArgument, "input %q: shape %s is not compatible with the signature's shape %s",
				spec.Name, tensor.ShapeString(t.Shape), tensor.ShapeString(spec.Shape))
		}
		if err := t.Validate(); err != nil {
			return status.Errorf(codes.InvalidArgument, "input %q: %v", spec.Name, err)
		}
	}
	return nil
}

// outputNames resolves an output filter (aliases) to graph output names,
// with TF's errors. An empty filter means every output.
func (s *servable) outputNames(sig *model.Signature, filter []string) ([]string, error) {
	if len(filter) == 0 {
		return s.outNames, nil
	}
	out := make([]string, 0, len(filter))
	for _, alias := range filter {
		found := false
		for _, o := range sig.Outputs {
			if o.Name == alias {
				found = true
				break
			}
		}
		if !found {
			return nil, status.Errorf(codes.InvalidArgument,
				"output tensor alias not found in signature: %s Outputs expected to be in the set {%s}.",
				alias, strings.Join(sigNames(sig.Outputs), ","))
		}
		if slices.Contains(out, alias) {
			return nil, status.Errorf(codes.InvalidArgument, "duplicate output tensor alias: %s", alias)
		}
		out = append(out, alias)
	}
	return out, nil
}

// run executes the model (through the batcher when batching is on). Inputs
// were validated.
func (s *servable) run(ctx context.Context, inputs map[string]*tensor.Tensor, outputs []string) (map[string]*tensor.Tensor, error) {
	if err := ctx.Err(); err != nil {
		return nil, status.FromContextError(err).Err()
	}
	if s.batch != nil {
		return s.batch.submit(ctx, inputs, outputs)
	}
	return s.runDirect(inputs, outputs)
}

func (s *servable) runDirect(inputs map[string]*tensor.Tensor, outputs []string) (map[string]*tensor.Tensor, error) {
	out, err := s.eng.Run(inputs, outputs)
	if err != nil {
		return nil, engineError(err)
	}
	return out, nil
}

func engineError(err error) error {
	if _, ok := status.FromError(err); ok && status.Code(err) != codes.Unknown {
		return err
	}
	if isInvalidInput(err) {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	return status.Errorf(codes.Internal, "running the model: %v", err)
}

// table is the immutable set of servable versions that requests read
// through an atomic pointer; every change publishes a new one.
type table struct {
	models map[string]*modelTable
}

type modelTable struct {
	latest   *servable // highest AVAILABLE version
	versions map[int64]*servable
	labels   map[string]int64
}

// lookup resolves a request's model spec. hasVersion distinguishes an
// explicit version 0 from "latest".
func (t *table) lookup(name string, hasVersion bool, version int64, label string) (*servable, error) {
	mt := t.models[name]
	if label != "" {
		if hasVersion {
			return nil, status.Error(codes.InvalidArgument, "version and version_label are mutually exclusive")
		}
		v, ok := int64(0), false
		if mt != nil {
			v, ok = mt.labels[label]
		}
		if !ok {
			// TF checks the label before the model, so an unknown model with a
			// label also lands here.
			return nil, status.Errorf(codes.InvalidArgument, "Unrecognized servable version label: %s", label)
		}
		hasVersion, version = true, v
	}
	if !hasVersion {
		if mt == nil || mt.latest == nil {
			return nil, status.Errorf(codes.NotFound, "Servable not found for request: Latest(%s)", name)
		}
		return mt.latest, nil
	}
	var s *servable
	if mt != nil {
		s = mt.versions[version]
	}
	if s == nil {
		return nil, status.Errorf(codes.NotFound, "Servable not found for request: Specific(%s, %d)", name, version)
	}
	return s, nil
}

func sigNames(specs []model.TensorSpec) []string {
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	sort.Strings(names)
	return names
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

var errStopped = errors.New("model server stopped")
