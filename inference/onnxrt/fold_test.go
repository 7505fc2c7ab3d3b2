package onnxrt_test

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	onnxpb "github.com/infergate/infergate/proto/onnx"

	"github.com/infergate/infergate/inference/onnxrt"
)

// foldBomb is a model of a few hundred bytes whose constants fold into n
// tensors of elems float32 zeros each (ConstantOfShape of a constant shape),
// every one under the per-constant cap.
func foldBomb(n int, elems int64) []byte {
	shape := &onnxpb.TensorProto{Name: "shape", Dims: []int64{1}, DataType: int32(onnxpb.TensorProto_INT64), Int64Data: []int64{elems}}
	var nodes []*onnxpb.NodeProto
	for i := range n {
		nodes = append(nodes, op("ConstantOfShape", fmt.Sprint("c", i), []string{"shape"}, []string{fmt.Sprint("c", i)}))
	}
	nodes = append(nodes, op("Add", "y", []string{"x", "c0"}, []string{"y"}))
	return graph(13, []*onnxpb.ValueInfoProto{floatInput("x", 1)}, []string{"y"}, []*onnxpb.TensorProto{shape}, nodes...)
}

// TestFoldedConstantsTotalCap is row 5 of issue 9: many folded constants,
// each under the per-constant cap, must not add up without bound. The load
// fails with an error naming the limit, and allocates about the limit, not
// what the model asks for.
func TestFoldedConstantsTotalCap(t *testing.T) {
	const limit = 8 << 20
	bomb := foldBomb(64, 1<<20) // 64 × 4 MiB = 256 MiB of zeros from a tiny file
	t.Logf("model: %d bytes", len(bomb))

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := onnxrt.LoadWithOptions(bomb, onnxrt.LoadOptions{MaxFoldedBytes: limit})
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "constant folding needs more than 8388608 bytes in total") ||
		!strings.Contains(err.Error(), "max_folded_constant_bytes") {
		t.Fatalf("err = %v", err)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 2*limit {
		t.Fatalf("loading allocated %d bytes, want at most %d (twice the limit)", got, 2*limit)
	}

	// Under the limit the same construction loads.
	if _, err := onnxrt.LoadWithOptions(foldBomb(2, 1<<20), onnxrt.LoadOptions{MaxFoldedBytes: limit}); err != nil {
		t.Fatalf("two folded constants of 4 MiB under an 8 MiB limit: %v", err)
	}
}

// TestInitializerDimsWithoutData: an initializer whose dims ask for 2^28
// elements of float64 or int32 but that carries no data used to be
// allocated (1 or 2 GiB) before its data was checked; found by
// FuzzLoadAllocs. It fails to load with a small allocation.
func TestInitializerDimsWithoutData(t *testing.T) {
	for _, dt := range []onnxpb.TensorProto_DataType{onnxpb.TensorProto_DOUBLE, onnxpb.TensorProto_INT32, onnxpb.TensorProto_BOOL} {
		init := &onnxpb.TensorProto{Name: "w", Dims: []int64{1 << 14, 1 << 14}, DataType: int32(dt), RawData: []byte{1}}
		b := graph(13, []*onnxpb.ValueInfoProto{floatInput("x", 1)}, []string{"y"}, []*onnxpb.TensorProto{init},
			op("Add", "y", []string{"x", "w"}, []string{"y"}))
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := onnxrt.Load(b)
		runtime.ReadMemStats(&after)
		if err == nil || !strings.Contains(err.Error(), "raw_data has 1") {
			t.Fatalf("%s: err = %v", dt, err)
		}
		if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20 {
			t.Fatalf("%s: refusing a %d-byte file allocated %d bytes", dt, len(b), got)
		}
	}
}
