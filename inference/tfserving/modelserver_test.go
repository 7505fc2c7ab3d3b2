package tfserving_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/infergate/infergate/inference/demo"
	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/modelserver"
	"github.com/infergate/infergate/inference/tensor"
	"github.com/infergate/infergate/inference/tfserving"
	"github.com/infergate/infergate/proto/servingpb"
)

// startModelServer runs infergate's embedded model server with the demo
// model on random ports until the test ends.
func startModelServer(t testing.TB) (*modelserver.Server, string) {
	t.Helper()
	dir := t.TempDir()
	if err := demo.Install(dir); err != nil {
		t.Fatal(err)
	}
	mc := modelserver.DefaultConfig()
	mc.GRPCListen, mc.RESTListen = "127.0.0.1:0", ""
	mc.Models = []tfserving.ModelConfig{{Name: demo.Name, BasePath: filepath.Join(dir, demo.Name)}}
	mc.Limits = modelserver.Limits{}
	srv, err := modelserver.New(mc, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("model server: %v", err)
		}
	})
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := srv.WaitReady(wctx); err != nil {
		t.Fatal(err)
	}
	return srv, srv.GRPCAddr()
}

func demoBatch(n int) *tensor.Tensor {
	g := demo.NewGenerator(1)
	data := make([]float32, 0, n*demo.Channels)
	for range n {
		r, _ := g.Reading()
		data = append(data, r...)
	}
	return tensor.FromFloat32(data, int64(n), demo.Channels)
}

// The client against infergate's own server, and the same answers as the
// in-process path.
func TestAgainstEmbeddedModelServer(t *testing.T) {
	srv, addr := startModelServer(t)
	c := dial(t, tfserving.DefaultConfig(addr))
	ctx := context.Background()

	md, err := c.Metadata(ctx, model.Spec{Name: demo.Name})
	if err != nil {
		t.Fatal(err)
	}
	sig := md.Signatures[model.DefaultSignature]
	if md.Version != 1 || sig == nil ||
		!reflect.DeepEqual(sig.Inputs, []model.TensorSpec{{Name: demo.InputName, DType: tensor.Float, Shape: []int64{-1, demo.Channels}}}) ||
		!reflect.DeepEqual(sig.Outputs, []model.TensorSpec{{Name: demo.OutputName, DType: tensor.Float, Shape: []int64{-1, 1}}}) {
		t.Fatalf("demo metadata = %+v %+v", md, sig)
	}

	in := map[string]*tensor.Tensor{demo.InputName: demoBatch(32)}
	res, err := c.Predict(ctx, model.Spec{Name: demo.Name}, in)
	if err != nil {
		t.Fatal(err)
	}
	out := res.Outputs[demo.OutputName]
	if res.Version != 1 || out == nil || tensor.ShapeString(out.Shape) != "[32,1]" {
		t.Fatalf("predict = version %d, %+v", res.Version, out)
	}
	for i, v := range out.Float32s() {
		if !(v >= 0 && v <= 1) {
			t.Errorf("score %d = %v, outside [0,1]", i, v)
		}
	}
	local, err := srv.InProcess().Predict(ctx, model.Spec{Name: demo.Name}, in)
	if err != nil {
		t.Fatal(err)
	}
	if !tensor.Equal(local.Outputs[demo.OutputName], out) {
		t.Errorf("gRPC and in-process answers differ: %v vs %v", out.Data, local.Outputs[demo.OutputName].Data)
	}

	st, err := c.Status(ctx, demo.Name, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 1 || st[0].Version != 1 || !st[0].Available() {
		t.Errorf("status = %+v", st)
	}

	_, err = c.Predict(ctx, model.Spec{Name: "nope"}, in)
	wantCode(t, err, codes.NotFound, "nope")
	_, err = c.Predict(ctx, model.Spec{Name: demo.Name}, map[string]*tensor.Tensor{demo.InputName: tensor.FromFloat32(make([]float32, 3), 1, 3)})
	wantCode(t, err, codes.InvalidArgument, "")

	// A config naming a model without a base path is refused with its code.
	bad := &servingpb.ModelServerConfig{Config: &servingpb.ModelServerConfig_ModelConfigList{ModelConfigList: &servingpb.ModelConfigList{
		Config: []*servingpb.ModelConfig{{Name: "x"}},
	}}}
	if err := c.Reload(ctx, bad); err == nil {
		t.Error("reload with a model without base_path succeeded")
	}
}

// BenchmarkPredictDemoGRPC is one gRPC Predict of the demo model through
// the client, at batch 1, 32 and 256 rows.
func BenchmarkPredictDemoGRPC(b *testing.B) {
	_, addr := startModelServer(b)
	c := dial(b, tfserving.DefaultConfig(addr))
	for _, n := range []int{1, 32, 256} {
		in := map[string]*tensor.Tensor{demo.InputName: demoBatch(n)}
		b.Run(fmt.Sprintf("batch%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Predict(context.Background(), model.Spec{Name: demo.Name}, in); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "predictions/s")
		})
	}
}
