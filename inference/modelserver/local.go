package modelserver

import (
	"context"

	"google.golang.org/grpc/status"

	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/tensor"
)

// Local calls the server in-process: no proto encoding, no network hop, the
// same checks and gRPC status codes as the gRPC API. It satisfies the
// pipeline's Predictor interface. A request costs one atomic load and two map
// lookups before the model runs; it takes no locks.
type Local struct {
	m *manager
}

// InProcess returns the in-process client. It works before Run (answering
// NOT_FOUND until models load) and after it.
func (s *Server) InProcess() *Local { return s.local }

// Predict runs the model named by spec on inputs (batch dimension first) and
// returns every output of the signature and the version that served.
// Inputs are read, never modified; the outputs belong to the caller.
func (l *Local) Predict(ctx context.Context, spec model.Spec, inputs map[string]*tensor.Tensor) (*model.Result, error) {
	serv, err := l.m.tab.Load().lookup(spec.Name, spec.Version != 0, spec.Version, spec.Label)
	if err != nil {
		return nil, err
	}
	sig, err := serv.signature(spec.Signature)
	if err != nil {
		return nil, err
	}
	if err := checkInputNames(sig, inputs); err != nil {
		return nil, err
	}
	if err := checkInputTensors(sig, inputs); err != nil {
		return nil, err
	}
	out, err := serv.run(ctx, inputs, serv.outNames)
	if err != nil {
		return nil, err
	}
	return &model.Result{Outputs: out, Version: serv.version}, nil
}

// Metadata returns the signatures of the version spec selects.
func (l *Local) Metadata(ctx context.Context, spec model.Spec) (*model.Metadata, error) {
	if err := ctx.Err(); err != nil {
		return nil, status.FromContextError(err).Err()
	}
	serv, err := l.m.tab.Load().lookup(spec.Name, spec.Version != 0, spec.Version, spec.Label)
	if err != nil {
		return nil, err
	}
	// A copy, so a caller editing it cannot change what others see.
	md := &model.Metadata{Name: serv.name, Version: serv.version, Signatures: make(map[string]*model.Signature, 1)}
	for name, sig := range serv.meta.Signatures {
		c := *sig
		c.Inputs = cloneSpecs(sig.Inputs)
		c.Outputs = cloneSpecs(sig.Outputs)
		md.Signatures[name] = &c
	}
	return md, nil
}

func cloneSpecs(in []model.TensorSpec) []model.TensorSpec {
	out := make([]model.TensorSpec, len(in))
	for i, s := range in {
		out[i] = s
		if s.Shape != nil {
			out[i].Shape = append([]int64{}, s.Shape...)
		}
	}
	return out
}
