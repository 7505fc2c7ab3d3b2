package modelserver

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/infergate/infergate/inference/demo"
	"github.com/infergate/infergate/proto/servingpb"
	"github.com/infergate/infergate/proto/tfpb"
)

func httpDo(t testing.TB, method, url, body string) (int, []byte, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
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
	return resp.StatusCode, b, resp.Header
}

func jsonRows(rows [][]float32) string {
	b, _ := json.Marshal(rows)
	return string(b)
}

func TestRESTPredictRowAndColumnar(t *testing.T) {
	s := startServer(t, testConfig(demoRepo(t)))
	base := "http://" + s.RESTAddr() + "/v1/models/demo"
	ref := loadDemoCase(t)
	rows := make([][]float32, ref.Rows)
	for i := range rows {
		rows[i] = ref.Input[i*16 : (i+1)*16]
	}

	// Row format: {"instances": [...]} → {"predictions": [[score], ...]}.
	code, body, hdr := httpDo(t, "POST", base+":predict", `{"instances": `+jsonRows(rows)+`}`)
	if code != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
		t.Fatalf("row predict: %d %s", code, body)
	}
	var row struct{ Predictions [][]float32 }
	if err := json.Unmarshal(body, &row); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if len(row.Predictions) != int(ref.Rows) {
		t.Fatalf("predictions %s", body)
	}
	for i, p := range row.Predictions {
		if err := near(p, ref.Output[i:i+1], 1e-5); err != nil {
			t.Fatalf("row %d: %v", i, err)
		}
	}

	// Row format with named inputs, on an explicit version and signature.
	var named []map[string][]float32
	for _, r := range rows {
		named = append(named, map[string][]float32{"input": r})
	}
	nb, _ := json.Marshal(map[string]any{"signature_name": "serving_default", "instances": named})
	code, body, _ = httpDo(t, "POST", base+"/versions/1:predict", string(nb))
	if code != 200 || !bytes.Contains(body, []byte(`"predictions"`)) {
		t.Fatalf("named rows: %d %s", code, body)
	}

	// Columnar: {"inputs": ...} → {"outputs": ...}.
	for _, req := range []string{
		`{"inputs": ` + jsonRows(rows) + `}`,
		`{"inputs": {"input": ` + jsonRows(rows) + `}}`,
	} {
		code, body, _ = httpDo(t, "POST", base+":predict", req)
		if code != 200 {
			t.Fatalf("columnar: %d %s", code, body)
		}
		var col struct{ Outputs json.RawMessage }
		if err := json.Unmarshal(body, &col); err != nil || col.Outputs == nil {
			t.Fatalf("columnar body %s", body)
		}
		var outs [][]float32
		if err := json.Unmarshal(col.Outputs, &outs); err != nil {
			var named map[string][][]float32
			if err := json.Unmarshal(col.Outputs, &named); err != nil {
				t.Fatalf("outputs %s", col.Outputs)
			}
			outs = named[demo.OutputName]
		}
		for i, p := range outs {
			if err := near(p, ref.Output[i:i+1], 1e-5); err != nil {
				t.Fatalf("columnar row %d: %v", i, err)
			}
		}
	}
}

func TestRESTStatusAndMetadata(t *testing.T) {
	s := startServer(t, testConfig(demoRepo(t)))
	base := "http://" + s.RESTAddr() + "/v1/models/demo"

	code, body, _ := httpDo(t, "GET", base, "")
	want := `{"model_version_status":[{"version":"1","state":"AVAILABLE","status":{"error_code":"OK","error_message":""}}]}`
	if code != 200 || compactJSON(t, body) != want {
		t.Fatalf("status: %d %s", code, body)
	}
	code, body, _ = httpDo(t, "GET", base+"/versions/1", "")
	if code != 200 || compactJSON(t, body) != want {
		t.Fatalf("status of version 1: %d %s", code, body)
	}

	code, body, _ = httpDo(t, "GET", base+"/metadata", "")
	if code != 200 {
		t.Fatalf("metadata: %d %s", code, body)
	}
	var md struct {
		ModelSpec struct {
			Name    string
			Version string
		} `json:"model_spec"`
		Metadata struct {
			SignatureDef struct {
				SignatureDef map[string]struct {
					Inputs map[string]struct {
						Dtype       string
						TensorShape struct {
							Dim []struct{ Size string }
						} `json:"tensor_shape"`
					}
					MethodName string `json:"method_name"`
				} `json:"signature_def"`
			} `json:"signature_def"`
		}
	}
	if err := json.Unmarshal(body, &md); err != nil {
		t.Fatal(err)
	}
	sd := md.Metadata.SignatureDef.SignatureDef["serving_default"]
	in := sd.Inputs["input"]
	if md.ModelSpec.Name != "demo" || md.ModelSpec.Version != "1" || sd.MethodName != "tensorflow/serving/predict" ||
		in.Dtype != "DT_FLOAT" || len(in.TensorShape.Dim) != 2 || in.TensorShape.Dim[0].Size != "-1" || in.TensorShape.Dim[1].Size != "16" {
		t.Fatalf("metadata %s", body)
	}
}

func compactJSON(t testing.TB, b []byte) string {
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	return buf.String()
}

// TestRESTErrors sends every mistake the facts list over REST and checks TF's
// HTTP status and the {"error": ...} body.
func TestRESTErrors(t *testing.T) {
	s := startServer(t, testConfig(demoRepo(t)))
	base := "http://" + s.RESTAddr()
	row := `[` + strings.TrimSuffix(strings.Repeat("0.5,", 16), ",") + `]`
	for _, tc := range []struct {
		name, method, path, body string
		code                     int
		msg                      string
	}{
		{"unknown model", "POST", "/v1/models/nope:predict", `{"instances": [` + row + `]}`, 404, "Servable not found for request: Latest(nope)"},
		{"unknown version", "POST", "/v1/models/demo/versions/9:predict", `{"instances": [` + row + `]}`, 404, "Servable not found for request: Specific(demo, 9)"},
		{"unknown label", "POST", "/v1/models/demo/labels/canary:predict", `{"instances": [` + row + `]}`, 400, "Unrecognized servable version label: canary"},
		{"version and label", "POST", "/v1/models/demo/versions/1/labels/x:predict", `{"instances": [` + row + `]}`, 400, "cannot be supplied"},
		{"unknown signature", "POST", "/v1/models/demo:predict", `{"signature_name": "nope", "instances": [` + row + `]}`, 400, "nope"},
		{"extra input", "POST", "/v1/models/demo:predict", `{"inputs": {"input": [` + row + `], "extra": [1]}}`, 400, "input size does not match signature"},
		{"unknown input", "POST", "/v1/models/demo:predict", `{"inputs": {"inputz": [` + row + `]}}`, 400, "inputz"},
		{"bad shape", "POST", "/v1/models/demo:predict", `{"instances": [[1, 2, 3]]}`, 400, "input"},
		{"wrong dtype", "POST", "/v1/models/demo:predict", `{"instances": [["a", "b"]]}`, 400, ""},
		{"not JSON", "POST", "/v1/models/demo:predict", `{"instances": [`, 400, ""},
		{"both formats", "POST", "/v1/models/demo:predict", `{"instances": [` + row + `], "inputs": [` + row + `]}`, 400, ""},
		{"status unknown model", "GET", "/v1/models/nope", "", 404, "Could not find any versions of model nope"},
		{"status unknown version", "GET", "/v1/models/demo/versions/3", "", 404, "Could not find version 3 of model demo"},
		{"metadata unknown model", "GET", "/v1/models/nope/metadata", "", 404, "Servable not found for request: Latest(nope)"},
		{"not v1", "GET", "/v2/models/demo", "", 404, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body, hdr := httpDo(t, tc.method, base+tc.path, tc.body)
			var e struct{ Error string }
			if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
				t.Fatalf("body is not {\"error\": ...}: %s", body)
			}
			if code != tc.code || !strings.Contains(e.Error, tc.msg) {
				t.Fatalf("got %d %q, want %d containing %q", code, e.Error, tc.code, tc.msg)
			}
			if !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
				t.Fatalf("content type %q", hdr.Get("Content-Type"))
			}
		})
	}
}

func TestPrometheusMetrics(t *testing.T) {
	cfg := testConfig(demoRepo(t))
	cfg.MonitoringPath = "/monitoring/prometheus/metrics"
	s := startServer(t, cfg)
	c := dial(t, s.GRPCAddr())
	row := `[` + strings.TrimSuffix(strings.Repeat("0.5,", 16), ",") + `]`
	for range 3 {
		if code, body, _ := httpDo(t, "POST", "http://"+s.RESTAddr()+"/v1/models/demo:predict", `{"instances": [`+row+`]}`); code != 200 {
			t.Fatalf("%d %s", code, body)
		}
	}
	for _, tc := range demoErrorCases()[:2] {
		c.pred.Predict(t.Context(), tc.req)
	}
	if _, err := c.pred.Predict(t.Context(), demoErrorCases()[3].req); err == nil {
		t.Fatal("expected an error")
	}
	good := &servingpb.PredictRequest{ModelSpec: specFor("demo"),
		Inputs: map[string]*tfpb.TensorProto{"input": floatProto([]int64{1, 16}, make([]float32, 16), false)}}
	if _, err := c.pred.Predict(t.Context(), good); err != nil {
		t.Fatal(err)
	}
	code, body, _ := httpDo(t, "GET", "http://"+s.RESTAddr()+cfg.MonitoringPath, "")
	if code != 200 {
		t.Fatalf("metrics: %d", code)
	}
	text := string(body)
	for _, want := range []string{
		`:tensorflow:serving:request_count{model_name="demo",status="OK"} 4`,
		`:tensorflow:serving:request_count{model_name="demo",status="INVALID_ARGUMENT"} 1`,
		`:tensorflow:serving:request_count{model_name="",status="NOT_FOUND"} 1`,
		`:tensorflow:serving:request_latency_count{API="Predict",entrypoint="REST",model_name="demo"} 3`,
		`:tensorflow:serving:request_latency_count{API="Predict",entrypoint="GRPC",model_name="demo"} 1`,
		`:tensorflow:serving:model_count{model_name="demo"} 1`,
		`:tensorflow:cc:saved_model:load_attempt_count{model_path=`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if t.Failed() {
		fmt.Println(text)
	}
}
