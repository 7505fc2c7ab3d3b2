package modelserver

import (
	"context"
	"encoding/json"
	"math"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/infergate/infergate/inference/tfserving"
	"github.com/infergate/infergate/proto/servingpb"
	"github.com/infergate/infergate/proto/tfpb"
)

func floatExample(name string, vals []float32) *tfpb.Example {
	return &tfpb.Example{Features: &tfpb.Features{Feature: map[string]*tfpb.Feature{
		name: {Kind: &tfpb.Feature_FloatList{FloatList: &tfpb.FloatList{Value: vals}}}}}}
}

func TestClassifyAndRegress(t *testing.T) {
	idBase := t.TempDir()
	writeVersion(t, idBase, 1, identityModel(t, vi{"a", onnxFloat, []int64{-1, 2}}, vi{"b", onnxFloat, []int64{-1, 2}}))
	s := startServer(t, testConfig(demoRepo(t), tfserving.ModelConfig{Name: "two", BasePath: idBase}))
	c := dial(t, s.GRPCAddr())
	ctx := context.Background()
	ref := loadDemoCase(t)
	var examples []*tfpb.Example
	for i := range int(ref.Rows) {
		examples = append(examples, floatExample("input", ref.Input[i*16:(i+1)*16]))
	}
	input := &servingpb.Input{Kind: &servingpb.Input_ExampleList{ExampleList: &servingpb.ExampleList{Examples: examples}}}

	rr, err := c.pred.Regress(ctx, &servingpb.RegressionRequest{ModelSpec: specFor("demo"), Input: input})
	if err != nil {
		t.Fatal(err)
	}
	var got []float32
	for _, r := range rr.Result.Regressions {
		got = append(got, r.Value)
	}
	if err := near(got, ref.Output, 1e-5); err != nil || rr.ModelSpec.GetVersion().GetValue() != 1 {
		t.Fatalf("regress: %v %v", err, rr.ModelSpec)
	}

	cr, err := c.pred.Classify(ctx, &servingpb.ClassificationRequest{ModelSpec: specFor("demo"), Input: input})
	if err != nil {
		t.Fatal(err)
	}
	if len(cr.Result.Classifications) != int(ref.Rows) || cr.Result.Classifications[0].Classes[0].Label != "0" ||
		cr.Result.Classifications[2].Classes[0].Score != got[2] {
		t.Fatalf("classify %v", cr.Result)
	}

	// Context features fill in for every example.
	withCtx := &servingpb.Input{Kind: &servingpb.Input_ExampleListWithContext{ExampleListWithContext: &servingpb.ExampleListWithContext{
		Examples: []*tfpb.Example{{}, {}}, Context: floatExample("input", ref.Input[:16])}}}
	rr, err = c.pred.Regress(ctx, &servingpb.RegressionRequest{ModelSpec: specFor("demo"), Input: withCtx})
	// Two rows here, all rows above: the runtime's kernel depends on the
	// row count, so equal within 1e-5.
	if err != nil || len(rr.Result.Regressions) != 2 || math.Abs(float64(rr.Result.Regressions[1].Value-got[0])) > 1e-5 {
		t.Fatalf("with context: %v %v", rr, err)
	}

	for _, tc := range []struct {
		name string
		req  *servingpb.RegressionRequest
		msg  string
	}{
		{"two inputs", &servingpb.RegressionRequest{ModelSpec: specFor("two"), Input: input}, "one input and one output"},
		{"wrong width", &servingpb.RegressionRequest{ModelSpec: specFor("demo"), Input: &servingpb.Input{Kind: &servingpb.Input_ExampleList{
			ExampleList: &servingpb.ExampleList{Examples: []*tfpb.Example{floatExample("input", []float32{1, 2})}}}}}, "needs 16"},
		{"empty", &servingpb.RegressionRequest{ModelSpec: specFor("demo"), Input: &servingpb.Input{}}, "Input is empty"},
	} {
		_, err := c.pred.Regress(ctx, tc.req)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	if _, err := c.pred.Regress(ctx, &servingpb.RegressionRequest{ModelSpec: specFor("nope"), Input: input}); status.Code(err) != codes.NotFound {
		t.Errorf("unknown model: %v", err)
	}

	// The same through REST's :regress and :classify.
	var sb strings.Builder
	sb.WriteString(`{"examples": [`)
	for i := range int(ref.Rows) {
		if i > 0 {
			sb.WriteString(",")
		}
		row, _ := json.Marshal(ref.Input[i*16 : (i+1)*16])
		sb.WriteString(`{"input": ` + string(row) + `}`)
	}
	sb.WriteString(`]}`)
	code, body, _ := httpDo(t, "POST", "http://"+s.RESTAddr()+"/v1/models/demo:regress", sb.String())
	var rest struct{ Result []float32 }
	if err := json.Unmarshal(body, &rest); code != 200 || err != nil {
		t.Fatalf("REST regress: %d %s", code, body)
	}
	if err := near(rest.Result, ref.Output, 1e-5); err != nil {
		t.Fatalf("REST regress: %v: %s", err, body)
	}
	code, body, _ = httpDo(t, "POST", "http://"+s.RESTAddr()+"/v1/models/demo:classify", sb.String())
	if code != 200 || !strings.Contains(string(body), `"result"`) {
		t.Fatalf("REST classify: %d %s", code, body)
	}
}
