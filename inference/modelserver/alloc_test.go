package modelserver

import (
	goruntime "runtime"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/infergate/infergate/proto/servingpb"
	"github.com/infergate/infergate/proto/tfpb"
)

// FuzzDecodeInputsAllocs: whatever PredictRequest arrives, checking it
// against the limits and decoding its tensors allocates at most a bound
// proportional to the message plus one set by MaxRequestElements, and what
// decodes stays within the limits. A bound on bytes, not a timing.
func FuzzDecodeInputsAllocs(f *testing.F) {
	seed := func(inputs map[string]*tfpb.TensorProto) {
		b, err := proto.Marshal(&servingpb.PredictRequest{ModelSpec: specFor("m"), Inputs: inputs})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	seed(map[string]*tfpb.TensorProto{"x": floatProto([]int64{16777216, 16}, []float32{1}, false)})
	seed(map[string]*tfpb.TensorProto{"x": floatProto([]int64{2, 4}, []float32{1, 2, 3, 4, 5, 6, 7, 8}, true)})
	seed(map[string]*tfpb.TensorProto{"s": {Dtype: tfpb.DataType_DT_STRING, TensorShape: shapeProto(64, 64), StringVal: [][]byte{[]byte("a")}}})
	seed(map[string]*tfpb.TensorProto{"a": floatProto([]int64{1000}, []float32{1}, false), "b": floatProto([]int64{1000, 4}, nil, false)})

	lim := Limits{MaxRequestElements: 4096, MaxRequestRows: 1024}
	f.Fuzz(func(t *testing.T, b []byte) {
		var req servingpb.PredictRequest
		if proto.Unmarshal(b, &req) != nil {
			return
		}
		var before, after goruntime.MemStats
		var elements int64
		goruntime.ReadMemStats(&before)
		if _, err := lim.checkInputs(req.GetInputs()); err == nil {
			if in, err := decodeInputs(req.GetInputs()); err == nil {
				for _, t := range in {
					elements += int64(t.Len())
				}
			}
		}
		goruntime.ReadMemStats(&after)
		if elements > lim.MaxRequestElements {
			t.Fatalf("decoded %d elements past a limit of %d", elements, lim.MaxRequestElements)
		}
		got := after.TotalAlloc - before.TotalAlloc
		if bound := 64*uint64(len(b)) + uint64(lim.MaxRequestElements)*24 + 64<<10; got > bound {
			t.Fatalf("a %d-byte request allocated %d bytes decoding, over the bound %d", len(b), got, bound)
		}
	})
}

func shapeProto(dims ...int64) *tfpb.TensorShapeProto {
	p := &tfpb.TensorShapeProto{}
	for _, d := range dims {
		p.Dim = append(p.Dim, &tfpb.TensorShapeProto_Dim{Size: d})
	}
	return p
}
