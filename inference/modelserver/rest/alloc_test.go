package rest

import (
	"context"
	goruntime "runtime"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// FuzzPredictBodyAllocs: whatever the body, the REST decoder behind
// WithLimits allocates at most a bound proportional to the body (plus one
// set by the limit), and the value count it refuses on never undercounts
// the tensor elements the body decodes to. A bound, not a timing.
func FuzzPredictBodyAllocs(f *testing.F) {
	for _, s := range []string{
		`{"instances": [{"f32": [1, 2], "s": "a"}, {"f32": [3, NaN], "s": {"b64": "/w=="}}]}`,
		`{"signature_name": "one", "instances": [[1, 2], [3, 4]]}`,
		`{"signature_name": "one", "inputs": [[1, 2e-3]]}`,
		`{"inputs": {"i32": [[1], [2]], "i64": 9007199254740993, "b": [true], "u8": [255], "i16": [-1], "i8": [[[-128]]], "f64": -Infinity}}`,
		`{"signature_name": "strs", "inputs": ["a\"b\\", {"b64": "YWJj"}, "k\":"]}`,
		`{"signature_name": "one", "instances": [[1,2],[1,2],[1,2],[1,2],[1,2],[1,2],[1,2],[1,2]]}`,
	} {
		f.Add([]byte(s))
	}
	const maxValues = 4096
	h := &handler{maxValues: maxValues, tooMany: func(n int64) error {
		return status.Errorf(codes.InvalidArgument, "%d values", n)
	}}
	f.Fuzz(func(t *testing.T, body []byte) {
		var before, after goruntime.MemStats
		var elements, counted int64
		goruntime.ReadMemStats(&before)
		_, release, err := h.bound(context.Background(), body)
		if err == nil {
			release()
			counted, _ = countJSON(body)
			if req, err := decodePredict(body, fuzzLookup); err == nil {
				for _, in := range req.inputs {
					elements += int64(in.Len())
				}
			}
		}
		goruntime.ReadMemStats(&after)
		if elements > counted {
			t.Fatalf("the body decodes to %d elements but countJSON counted %d values: %q", elements, counted, body)
		}
		got := after.TotalAlloc - before.TotalAlloc
		if limit := 160*uint64(len(body)) + maxValues*48 + 64<<10; got > limit {
			t.Fatalf("a %d-byte body allocated %d bytes, over the bound %d: %q", len(body), got, limit, body)
		}
	})
}
