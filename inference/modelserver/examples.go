package modelserver

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/tensor"
	"github.com/infergate/infergate/proto/servingpb"
	"github.com/infergate/infergate/proto/tfpb"
)

// Classify and Regress serve TF's Example-based APIs for the models where the
// mapping is obvious: one float32 input of shape [-1, N] (or [-1]) and one
// float32 output. Each tf.Example supplies the input's N values in the
// feature named after the input (or in its only feature), as a float_list or
// int64_list; context features of ExampleListWithContext apply to every
// example. Other models answer INVALID_ARGUMENT saying why.

func (p *predictionService) Regress(ctx context.Context, req *servingpb.RegressionRequest) (*servingpb.RegressionResponse, error) {
	start := time.Now()
	resp, err := p.regress(ctx, req)
	p.record(req.GetModelSpec().GetName(), "Regress", start, err)
	return resp, err
}

func (p *predictionService) regress(ctx context.Context, req *servingpb.RegressionRequest) (*servingpb.RegressionResponse, error) {
	serv, sigName, out, rows, err := p.runExamples(ctx, req.GetModelSpec(), req.GetInput())
	if err != nil {
		return nil, err
	}
	vals := out.Float32s()
	if int64(len(vals)) != rows {
		return nil, status.Errorf(codes.InvalidArgument,
			"Regress needs one value per example; the model's output has shape %s", tensor.ShapeString(out.Shape))
	}
	res := &servingpb.RegressionResult{Regressions: make([]*servingpb.Regression, rows)}
	for i, v := range vals {
		res.Regressions[i] = &servingpb.Regression{Value: v}
	}
	return &servingpb.RegressionResponse{ModelSpec: responseSpec(serv, sigName), Result: res}, nil
}

func (p *predictionService) Classify(ctx context.Context, req *servingpb.ClassificationRequest) (*servingpb.ClassificationResponse, error) {
	start := time.Now()
	resp, err := p.classify(ctx, req)
	p.record(req.GetModelSpec().GetName(), "Classify", start, err)
	return resp, err
}

// classify reports the output row of each example as scores; class labels
// are the column indexes ("0", "1", …), since an ONNX graph has no label
// vocabulary.
func (p *predictionService) classify(ctx context.Context, req *servingpb.ClassificationRequest) (*servingpb.ClassificationResponse, error) {
	serv, sigName, out, rows, err := p.runExamples(ctx, req.GetModelSpec(), req.GetInput())
	if err != nil {
		return nil, err
	}
	vals := out.Float32s()
	if rows == 0 || len(vals)%int(rows) != 0 {
		return nil, status.Errorf(codes.InvalidArgument, "Classify: the model's output has shape %s", tensor.ShapeString(out.Shape))
	}
	k := len(vals) / int(rows)
	res := &servingpb.ClassificationResult{Classifications: make([]*servingpb.Classifications, rows)}
	for i := range int(rows) {
		c := &servingpb.Classifications{Classes: make([]*servingpb.Class, k)}
		for j := range k {
			c.Classes[j] = &servingpb.Class{Label: strconv.Itoa(j), Score: vals[i*k+j]}
		}
		res.Classifications[i] = c
	}
	return &servingpb.ClassificationResponse{ModelSpec: responseSpec(serv, sigName), Result: res}, nil
}

func (p *predictionService) runExamples(ctx context.Context, ms *servingpb.ModelSpec, input *servingpb.Input) (*servable, string, *tensor.Tensor, int64, error) {
	if ms == nil {
		return nil, "", nil, 0, status.Error(codes.InvalidArgument, "Missing ModelSpec")
	}
	name, hasVersion, version, label := specFields(ms)
	serv, err := p.m.tab.Load().lookup(name, hasVersion, version, label)
	if err != nil {
		return nil, "", nil, 0, err
	}
	sig, err := serv.signature(ms.GetSignatureName())
	if err != nil {
		return nil, "", nil, 0, err
	}
	in, err := exampleInputSpec(sig)
	if err != nil {
		return nil, "", nil, 0, err
	}
	var examples []*tfpb.Example
	var context *tfpb.Example
	switch k := input.GetKind().(type) {
	case *servingpb.Input_ExampleList:
		examples = k.ExampleList.GetExamples()
	case *servingpb.Input_ExampleListWithContext:
		examples = k.ExampleListWithContext.GetExamples()
		context = k.ExampleListWithContext.GetContext()
	}
	if len(examples) == 0 {
		return nil, "", nil, 0, status.Error(codes.InvalidArgument, "Input is empty")
	}
	width := int64(1)
	if len(in.Shape) == 2 {
		width = in.Shape[1]
	}
	if lim := p.lim.MaxRequestRows; lim > 0 && int64(len(examples)) > lim {
		return nil, "", nil, 0, status.Errorf(codes.InvalidArgument,
			"request has %d examples, more than the limit of %d rows: %s", len(examples), lim, settingRows)
	}
	var data []float32
	for i, ex := range examples {
		vals, err := exampleValues(ex, context, in.Name)
		if err != nil {
			return nil, "", nil, 0, status.Errorf(codes.InvalidArgument, "example %d: %v", i, err)
		}
		if width < 0 {
			width = int64(len(vals))
		}
		if i == 0 {
			// Every example may take its values from one shared context
			// feature: bound rows × width before building anything.
			n := int64(len(examples)) * max(width, 1)
			if lim := p.lim.MaxRequestElements; lim > 0 && (width > lim || n > lim) {
				return nil, "", nil, 0, p.lim.TooManyElements(n)
			}
			var release func()
			if ctx, release, err = p.adm.admit(ctx, n*4); err != nil {
				return nil, "", nil, 0, err
			}
			defer release()
		}
		if int64(len(vals)) != width {
			return nil, "", nil, 0, status.Errorf(codes.InvalidArgument, "example %d: feature %q has %d values, the model's input %q needs %d",
				i, in.Name, len(vals), in.Name, width)
		}
		data = append(data, vals...)
	}
	rows := int64(len(examples))
	t := tensor.FromFloat32(data, rows, width)
	if len(in.Shape) == 1 {
		t = tensor.FromFloat32(data, rows)
	}
	outs, err := serv.run(ctx, map[string]*tensor.Tensor{in.Name: t}, serv.outNames)
	if err != nil {
		return nil, "", nil, 0, err
	}
	return serv, ms.GetSignatureName(), outs[sig.Outputs[0].Name], rows, nil
}

func exampleInputSpec(sig *model.Signature) (model.TensorSpec, error) {
	if len(sig.Inputs) != 1 || len(sig.Outputs) != 1 {
		return model.TensorSpec{}, status.Errorf(codes.InvalidArgument,
			"Classify and Regress need a model with one input and one output; this one has %d and %d (use Predict)", len(sig.Inputs), len(sig.Outputs))
	}
	in := sig.Inputs[0]
	if in.DType != tensor.Float || len(in.Shape) < 1 || len(in.Shape) > 2 || sig.Outputs[0].DType != tensor.Float {
		return model.TensorSpec{}, status.Errorf(codes.InvalidArgument,
			"Classify and Regress need a float32 input of shape [-1] or [-1, N] and a float32 output; input %q is %s %s (use Predict)",
			in.Name, in.DType, tensor.ShapeString(in.Shape))
	}
	return in, nil
}

// exampleValues finds the input's values: the feature named like the input,
// else the example's only feature, else the context's feature of that name.
func exampleValues(ex, context *tfpb.Example, name string) ([]float32, error) {
	feats := ex.GetFeatures().GetFeature()
	f, ok := feats[name]
	if !ok && len(feats) == 1 {
		for _, only := range feats {
			f, ok = only, true
		}
	}
	if !ok {
		f, ok = context.GetFeatures().GetFeature()[name]
	}
	if !ok {
		return nil, fmt.Errorf("no feature %q", name)
	}
	switch k := f.GetKind().(type) {
	case *tfpb.Feature_FloatList:
		return k.FloatList.GetValue(), nil
	case *tfpb.Feature_Int64List:
		v := make([]float32, len(k.Int64List.GetValue()))
		for i, x := range k.Int64List.GetValue() {
			v[i] = float32(x)
		}
		return v, nil
	}
	return nil, fmt.Errorf("feature %q must be a float_list or int64_list", name)
}
