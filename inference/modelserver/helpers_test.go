package modelserver

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/infergate/infergate/inference/demo"
	"github.com/infergate/infergate/inference/tfserving"
	"github.com/infergate/infergate/internal/testutil"
	onnxpb "github.com/infergate/infergate/proto/onnx"
	"github.com/infergate/infergate/proto/servingpb"
)

// ---- test models, built as ONNX protos ----

type vi struct {
	name  string
	et    int32   // ONNX element type
	shape []int64 // -1 = dynamic ("batch")
}

const (
	onnxFloat  = 1
	onnxUint8  = 2
	onnxInt8   = 3
	onnxInt16  = 5
	onnxInt32  = 6
	onnxInt64  = 7
	onnxString = 8
	onnxBool   = 9
	onnxUint16 = 4 // the runtime has no unsigned 16-bit tensors
)

func valueInfo(v vi) *onnxpb.ValueInfoProto {
	shape := &onnxpb.TensorShapeProto{}
	for _, d := range v.shape {
		dim := &onnxpb.TensorShapeProto_Dimension{}
		if d < 0 {
			dim.Value = &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: "batch"}
		} else {
			dim.Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d}
		}
		shape.Dim = append(shape.Dim, dim)
	}
	return &onnxpb.ValueInfoProto{Name: v.name, Type: &onnxpb.TypeProto{
		Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{ElemType: v.et, Shape: shape}}}}
}

func buildModel(t testing.TB, inputs, outputs []vi, nodes []*onnxpb.NodeProto, inits []*onnxpb.TensorProto) []byte {
	t.Helper()
	g := &onnxpb.GraphProto{Name: "test", Node: nodes, Initializer: inits}
	for _, v := range inputs {
		g.Input = append(g.Input, valueInfo(v))
	}
	for _, v := range outputs {
		g.Output = append(g.Output, valueInfo(v))
	}
	m := &onnxpb.ModelProto{IrVersion: 7, OpsetImport: []*onnxpb.OperatorSetIdProto{{Version: 13}}, Graph: g, ProducerName: "modelserver-test"}
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// identityModel passes every input through: input name "<n>" → output "<n>_out".
func identityModel(t testing.TB, inputs ...vi) []byte {
	var outs []vi
	var nodes []*onnxpb.NodeProto
	for _, in := range inputs {
		out := vi{in.name + "_out", in.et, in.shape}
		outs = append(outs, out)
		nodes = append(nodes, &onnxpb.NodeProto{OpType: "Identity", Input: []string{in.name}, Output: []string{out.name}})
	}
	return buildModel(t, inputs, outs, nodes, nil)
}

// addModel computes y = x + c for input "x" float32 [-1, 4]; versions use
// different c so a test can tell which version answered.
func addModel(t testing.TB, c float32) []byte {
	raw := make([]byte, 16)
	for i := range 4 {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(c))
	}
	init := &onnxpb.TensorProto{Name: "c", Dims: []int64{4}, DataType: onnxFloat, RawData: raw}
	return buildModel(t,
		[]vi{{"x", onnxFloat, []int64{-1, 4}}},
		[]vi{{"y", onnxFloat, []int64{-1, 4}}},
		[]*onnxpb.NodeProto{{OpType: "Add", Input: []string{"x", "c"}, Output: []string{"y"}}},
		[]*onnxpb.TensorProto{init})
}

// writeVersion writes model bytes as base/<v>/model.onnx (directly, not
// atomically: tests of half-written versions rely on that).
func writeVersion(t testing.TB, base string, v int64, model []byte) {
	t.Helper()
	dir := filepath.Join(base, strconv.FormatInt(v, 10))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ModelFileName), model, 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeVersionAtomic writes through a temp dir and a rename, as operators should.
func writeVersionAtomic(t testing.TB, base string, v int64, model []byte) {
	t.Helper()
	if err := writeVersionDir(base, filepath.Join(base, strconv.FormatInt(v, 10)), model); err != nil {
		t.Fatal(err)
	}
}

// ---- server harness ----

func testConfig(models ...tfserving.ModelConfig) Config {
	c := DefaultConfig()
	c.GRPCListen, c.RESTListen = "127.0.0.1:0", "127.0.0.1:0"
	c.Models = models
	c.FileSystemPoll = 20 * time.Millisecond
	c.Limits = Limits{} // none, as TF: the tests of the limits set them
	// The tests of TF's reload semantics call it unauthenticated;
	// TestReloadRPCNeedsAdminToken covers the default and the token.
	c.ReloadRPC = ReloadRPCOpen
	return c
}

// startServer runs a server until the test ends and waits until it is ready.
func startServer(t testing.TB, cfg Config) *Server {
	t.Helper()
	s, err := New(cfg, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	wctx, wcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer wcancel()
	if err := s.WaitReady(wctx); err != nil {
		t.Fatalf("WaitReady: %v; models: %+v", err, s.Models())
	}
	return s
}

// demoRepo writes the demo model as version 1 into a fresh base path.
func demoRepo(t testing.TB) tfserving.ModelConfig {
	dir := t.TempDir()
	if err := demo.Install(dir); err != nil {
		t.Fatal(err)
	}
	return demo.ModelConfig(dir)
}

type clients struct {
	pred   servingpb.PredictionServiceClient
	models servingpb.ModelServiceClient
	conn   *grpc.ClientConn
}

func dial(t testing.TB, addr string) clients {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<30), grpc.MaxCallSendMsgSize(1<<30)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return clients{servingpb.NewPredictionServiceClient(conn), servingpb.NewModelServiceClient(conn), conn}
}

// demoCase is the reference input and torch's output for the demo model.
type demoCase struct {
	Input  []float32
	Rows   int64
	Output []float32
}

func loadDemoCase(t testing.TB) demoCase {
	t.Helper()
	b, err := os.ReadFile("../onnxrt/testdata/demo.json")
	if err != nil {
		t.Skipf("demo test vectors: %v", err)
	}
	var f struct {
		Cases []struct {
			Inputs, Outputs map[string]struct {
				Shape []int64
				Data  []float32
			}
		}
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	c := f.Cases[0]
	in, out := c.Inputs[demo.InputName], c.Outputs[demo.OutputName]
	return demoCase{Input: in.Data, Rows: in.Shape[0], Output: out.Data}
}

func near(a, b []float32, tol float64) error {
	if len(a) != len(b) {
		return fmt.Errorf("len %d != %d", len(a), len(b))
	}
	for i := range a {
		if math.Abs(float64(a[i]-b[i])) > tol {
			return fmt.Errorf("value %d: %v != %v", i, a[i], b[i])
		}
	}
	return nil
}
