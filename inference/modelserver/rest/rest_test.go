package rest

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/infergate/infergate/inference/tfserving/tfservingtest"
	"github.com/infergate/infergate/proto/servingpb"
)

func serve(t *testing.T, svc *tfservingtest.Service) string {
	t.Helper()
	h := NewHandler(svc, svc, nil)
	// TF Serving bounds REST calls with --rest_api_timeout_in_ms; the
	// embedding server does the same by wrapping the context.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), time.Second)
		defer cancel()
		h.ServeHTTP(w, r.WithContext(ctx))
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

type reply struct {
	code int
	body string
	ct   string
}

func do(t *testing.T, method, url, body string) reply {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{code: resp.StatusCode, body: string(b), ct: resp.Header.Get("Content-Type")}
}

func TestPredictFormats(t *testing.T) {
	base := serve(t, tfservingtest.NewService())
	cases := []struct {
		name, path, body, want string
	}{
		{"row, several outputs → list of objects", "/v1/models/arith:predict",
			`{"instances": [{"x": [1, 2], "y": [3, 4]}, {"x": [5, 6], "y": [7, 8.5]}]}`,
			`{"predictions":[{"product":[3.0,8.0],"sum":[4.0,6.0]},{"product":[35.0,51.0],"sum":[12.0,14.5]}]}`},
		{"row, one output → plain list per instance", "/v1/models/arith:predict",
			`{"signature_name": "scale", "instances": [[1, 2], [3, 4.25]]}`,
			`{"predictions":[[2.0,4.0],[6.0,8.5]]}`},
		{"row, named single input", "/v1/models/arith:predict",
			`{"signature_name": "scale", "instances": [{"x": [1, 2]}]}`,
			`{"predictions":[[2.0,4.0]]}`},
		{"columnar, several outputs → object", "/v1/models/arith:predict",
			`{"inputs": {"x": [[1, 2]], "y": [[3, 4]]}}`,
			`{"outputs":{"product":[[3.0,8.0]],"sum":[[4.0,6.0]]}}`},
		{"columnar, one output → the value", "/v1/models/arith:predict",
			`{"signature_name": "scale", "inputs": [[1e3, -0.5]]}`,
			`{"outputs":[[2000.0,-1.0]]}`},
		{"version in the path", "/v1/models/arith/versions/1:predict",
			`{"signature_name":"scale","inputs":[[1,1]]}`, `{"outputs":[[2.0,2.0]]}`},
		{"label in the path", "/v1/models/arith/labels/canary:predict",
			`{"signature_name":"scale","inputs":[[1,1]]}`, `{"outputs":[[2.0,2.0]]}`},
		{"NaN and Infinity in, as TF writes them out", "/v1/models/echo:predict",
			`{"inputs": {"f32": [NaN, Infinity, -Infinity, 0.1], "f64": [-Inf, 1e-310]}}`,
			`{"outputs":{"f32":[NaN,Infinity,-Infinity,0.1],"f64":[-Infinity,1e-310]}}`},
		{"every dtype", "/v1/models/echo:predict",
			`{"inputs": {"i32": [-2147483648, 7], "i64": [9007199254740993], "b": [true, false], ` +
				`"s": ["h\u00e9llo \"q\"", {"b64": "/w=="}, {"b64": "YWJj"}], "u8": [255, 0], "i16": [-32768], "i8": [127]}}`,
			`{"outputs":{"b":[true,false],"i16":[-32768],"i32":[-2147483648,7],"i64":[9007199254740993],"i8":[127],` +
				`"s":["héllo \"q\"",{"b64":"/w=="},"abc"],"u8":[255,0]}}`},
		{"empty batch", "/v1/models/echo:predict", `{"inputs": {"f32": []}}`, `{"outputs":[]}`},
		{"row format, every dtype by instance", "/v1/models/echo:predict",
			`{"instances": [{"f32": 1, "s": "a"}, {"f32": 2.5, "s": {"b64": "Yg=="}}]}`,
			`{"predictions":[{"f32":1.0,"s":"a"},{"f32":2.5,"s":"b"}]}`},
		{"content-encoded response", "/v1/models/echo:predict",
			`{"signature_name": "content", "inputs": {"i64": [1, -1]}}`, `{"outputs":[1,-1]}`},
	}
	for _, c := range cases {
		r := do(t, "POST", base+c.path, c.body)
		if r.code != 200 || r.body != c.want {
			t.Errorf("%s:\n got %d %s\nwant 200 %s", c.name, r.code, r.body, c.want)
		}
		if r.ct != "application/json" {
			t.Errorf("%s: Content-Type %q", c.name, r.ct)
		}
	}
}

func TestErrors(t *testing.T) {
	base := serve(t, tfservingtest.NewService())
	cases := []struct {
		name, method, path, body string
		code                     int
		msg                      string
	}{
		{"unknown model", "POST", "/v1/models/nope:predict", `{"inputs": [1]}`, 404, "Servable not found for request: Latest(nope)"},
		{"unknown version", "POST", "/v1/models/arith/versions/9:predict", `{"inputs": [1]}`, 404, "Specific(arith, 9)"},
		{"unknown label", "POST", "/v1/models/arith/labels/beta:predict", `{"inputs": [1]}`, 400, "beta"},
		{"version and label", "POST", "/v1/models/arith/versions/1/labels/stable:predict", `{}`, 400, "cannot be supplied"},
		{"version and label (status)", "GET", "/v1/models/arith/versions/1/labels/stable", ``, 400, "cannot be supplied"},
		{"not /v1", "GET", "/v2/models/arith", ``, 404, "Not found"},
		{"root", "GET", "/", ``, 404, "Not found"},
		{"malformed /v1 path", "GET", "/v1/modelz/arith", ``, 400, "Malformed request: GET /v1/modelz/arith"},
		{"unknown verb", "POST", "/v1/models/arith:explain", `{}`, 400, "Malformed request"},
		{"GET on predict", "GET", "/v1/models/arith:predict", ``, 400, "Malformed request"},
		{"POST on status", "POST", "/v1/models/arith", `{}`, 400, "Malformed request"},
		{"non-numeric version", "GET", "/v1/models/arith/versions/x", ``, 400, "Malformed request"},
		{"not JSON", "POST", "/v1/models/arith:predict", `{"inputs": [1,}`, 400, "JSON Parse error"},
		{"not an object", "POST", "/v1/models/arith:predict", `[1]`, 400, "not an object"},
		{"neither key", "POST", "/v1/models/arith:predict", `{"x": 1}`, 400, "Missing 'inputs' or 'instances' key"},
		{"both keys", "POST", "/v1/models/arith:predict", `{"inputs": 1, "instances": [1]}`, 400, "only one of"},
		{"unknown signature", "POST", "/v1/models/arith:predict", `{"signature_name": "nope", "inputs": 1}`, 400, `"nope" not found`},
		{"wrong input count", "POST", "/v1/models/arith:predict", `{"inputs": {"x": [[1, 2]]}}`, 400, "input size does not match signature"},
		{"unknown input", "POST", "/v1/models/arith:predict", `{"inputs": {"x": [[1, 2]], "z": [[1, 2]]}}`, 400, `"z"`},
		{"plain list for two inputs", "POST", "/v1/models/arith:predict", `{"instances": [[1, 2]]}`, 400, "2 input tensors"},
		{"string for a float", "POST", "/v1/models/arith:predict", `{"inputs": {"x": [["a", 2]], "y": [[1, 2]]}}`, 400, `input "x": value[0][0]: expected a number for DT_FLOAT, got string`},
		{"fraction for an int", "POST", "/v1/models/echo:predict", `{"inputs": {"i32": [1.5]}}`, 400, `input "i32": value[0]: expected an integer for DT_INT32, got 1.5`},
		{"int out of range", "POST", "/v1/models/echo:predict", `{"inputs": {"i8": [128]}}`, 400, `input "i8": value[0]: 128 is out of range for DT_INT8`},
		{"number for a bool", "POST", "/v1/models/echo:predict", `{"inputs": {"b": [1]}}`, 400, `input "b"`},
		{"bad base64", "POST", "/v1/models/echo:predict", `{"inputs": {"s": [{"b64": "!!"}]}}`, 400, `input "s": value[0]: 'b64' value is not base64`},
		{"ragged lists", "POST", "/v1/models/arith:predict", `{"inputs": {"x": [[1, 2], [3]], "y": [[1, 2], [3, 4]]}}`, 400, `input "x": lists of unequal lengths`},
		{"ragged depth", "POST", "/v1/models/echo:predict", `{"inputs": {"f32": [1, [2]]}}`, 400, `value[1] is a list`},
		{"instances differ", "POST", "/v1/models/arith:predict", `{"instances": [{"x": [1, 2], "y": [1, 2]}, {"x": [1, 2]}]}`, 400, "instance 1"},
		{"empty instances", "POST", "/v1/models/arith:predict", `{"instances": []}`, 400, "empty"},
		{"shape the model rejects", "POST", "/v1/models/arith:predict", `{"inputs": {"x": [1, 2], "y": [1, 2]}}`, 400, "shape"},
		{"deadline", "POST", "/v1/models/slow:predict", `{"inputs": [1]}`, 504, "deadline"},
		{"classify unimplemented", "POST", "/v1/models/echo:classify", `{"examples": [{"x": 1}]}`, 501, "no classification signature"},
		{"regress bad body", "POST", "/v1/models/arith:regress", `{"examples": {"x": 1}}`, 400, "'examples' must be a list"},
		{"status of unknown model", "GET", "/v1/models/nope", ``, 404, "nope"},
		{"metadata of unknown model", "GET", "/v1/models/nope/metadata", ``, 404, "Servable not found"},
	}
	for _, c := range cases {
		r := do(t, c.method, base+c.path, c.body)
		var e struct{ Error string }
		if err := json.Unmarshal([]byte(r.body), &e); err != nil {
			t.Errorf("%s: body %q is not {\"error\": ...}: %v", c.name, r.body, err)
			continue
		}
		if r.code != c.code || !strings.Contains(e.Error, c.msg) {
			t.Errorf("%s: got %d %q, want %d containing %q", c.name, r.code, e.Error, c.code, c.msg)
		}
		if r.ct != "application/json" {
			t.Errorf("%s: Content-Type %q", c.name, r.ct)
		}
	}
}

// A service that implements nothing answers 501 everywhere, cleanly.
func TestUnimplementedService(t *testing.T) {
	srv := httptest.NewServer(NewHandler(servingpb.UnimplementedPredictionServiceServer{}, servingpb.UnimplementedModelServiceServer{}, nil))
	defer srv.Close()
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/models/m:classify", `{"examples": [{"a": 1}]}`},
		{"POST", "/v1/models/m:regress", `{"examples": [{"a": "s"}]}`},
		{"POST", "/v1/models/m:predict", `{"inputs": [1]}`},
		{"GET", "/v1/models/m", ``},
		{"GET", "/v1/models/m/metadata", ``},
	} {
		if r := do(t, c.method, srv.URL+c.path, c.body); r.code != 501 || !strings.Contains(r.body, `"error"`) {
			t.Errorf("%s %s = %d %s, want 501", c.method, c.path, r.code, r.body)
		}
	}
}

func TestBodyLimit(t *testing.T) {
	old := maxBodyBytes
	maxBodyBytes = 1 << 10
	defer func() { maxBodyBytes = old }()
	base := serve(t, tfservingtest.NewService())
	body := `{"inputs": [` + strings.Repeat("1,", 1<<10) + `1]}`
	if r := do(t, "POST", base+"/v1/models/echo:predict", body); r.code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized body: %d %s", r.code, r.body)
	}
}

func TestStatus(t *testing.T) {
	base := serve(t, tfservingtest.NewService())
	cases := []struct{ path, want string }{
		{"/v1/models/arith", `{"model_version_status":[` +
			`{"version":"2","state":"AVAILABLE","status":{"error_code":"OK","error_message":""}},` +
			`{"version":"1","state":"AVAILABLE","status":{"error_code":"OK","error_message":""}}]}`},
		{"/v1/models/arith/labels/stable", `{"model_version_status":[{"version":"1","state":"AVAILABLE","status":{"error_code":"OK","error_message":""}}]}`},
		{"/v1/models/broken/versions/3", `{"model_version_status":[{"version":"3","state":"END","status":{"error_code":"UNKNOWN","error_message":"Failed to load: model.onnx is truncated"}}]}`},
	}
	for _, c := range cases {
		r := do(t, "GET", base+c.path, "")
		if r.code != 200 || !jsonEqual(t, r.body, c.want) {
			t.Errorf("GET %s = %d %s\nwant %s", c.path, r.code, r.body, c.want)
		}
	}
}

func jsonEqual(t *testing.T, a, b string) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal([]byte(a), &x); err != nil {
		t.Fatalf("%q: %v", a, err)
	}
	if err := json.Unmarshal([]byte(b), &y); err != nil {
		t.Fatalf("%q: %v", b, err)
	}
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return string(xb) == string(yb)
}

func TestMetadata(t *testing.T) {
	base := serve(t, tfservingtest.NewService())
	r := do(t, "GET", base+"/v1/models/arith/metadata", "")
	dim := func(n string) string { return `{"size":"` + n + `","name":""}` }
	info := func(name string) string {
		return `{"name":"` + name + `","dtype":"DT_FLOAT","tensor_shape":{"dim":[` + dim("-1") + `,` + dim("2") + `],"unknown_rank":false}}`
	}
	want := `{"model_spec":{"name":"arith","signature_name":"","version":"2"},"metadata":{"signature_def":{"signature_def":{` +
		`"serving_default":{"inputs":{"x":` + info("x") + `,"y":` + info("y") + `},"outputs":{"product":` + info("product") + `,"sum":` + info("sum") + `},"method_name":"tensorflow/serving/predict"},` +
		`"scale":{"inputs":{"x":` + info("x") + `},"outputs":{"scaled":` + info("scaled") + `},"method_name":"tensorflow/serving/predict"}}}}}`
	if r.code != 200 || !jsonEqual(t, r.body, want) {
		t.Errorf("metadata = %d %s\nwant %s", r.code, r.body, want)
	}
	r = do(t, "GET", base+"/v1/models/arith/versions/1/metadata", "")
	if r.code != 200 || !strings.Contains(r.body, `"1"`) {
		t.Errorf("metadata of version 1 = %d %s", r.code, r.body)
	}
}

func TestClassifyRegress(t *testing.T) {
	base := serve(t, tfservingtest.NewService())
	body := `{"context": {"x": 0.5}, "examples": [{"x": [1.5, 2], "tag": "a"}, {"x": -4.0, "id": [1, 2]}]}`
	if r := do(t, "POST", base+"/v1/models/arith:regress", body); r.code != 200 || r.body != `{"result":[4.0,-3.5]}` {
		t.Errorf("regress = %d %s", r.code, r.body)
	}
	want := `{"result":[[["neg",0.0],["pos",1.0]],[["neg",1.0],["pos",0.0]]]}`
	if r := do(t, "POST", base+"/v1/models/arith/labels/stable:classify", body); r.code != 200 || r.body != want {
		t.Errorf("classify = %d %s", r.code, r.body)
	}
}

func TestSignatureCache(t *testing.T) {
	svc := tfservingtest.NewService()
	base := serve(t, svc)
	body := `{"signature_name": "scale", "inputs": [[1, 2]]}`
	for range 3 {
		if r := do(t, "POST", base+"/v1/models/arith:predict", body); r.code != 200 {
			t.Fatalf("%d %s", r.code, r.body)
		}
	}
	if n := svc.MetadataCalls(); n != 1 {
		t.Errorf("3 predicts on one model fetched metadata %d times, want 1", n)
	}
	do(t, "POST", base+"/v1/models/arith/versions/1:predict", body)
	if n := svc.MetadataCalls(); n != 2 {
		t.Errorf("another version fetched metadata %d times in all, want 2", n)
	}
	// Not-found answers are not cached.
	do(t, "POST", base+"/v1/models/nope:predict", body)
	do(t, "POST", base+"/v1/models/nope:predict", body)
	if n := svc.MetadataCalls(); n != 4 {
		t.Errorf("metadata calls = %d, want 4", n)
	}
}
