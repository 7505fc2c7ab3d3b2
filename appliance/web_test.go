package appliance

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/infergate/infergate/inference/demo"
	"github.com/infergate/infergate/internal/testutil"
	"github.com/infergate/infergate/store"
	"github.com/infergate/infergate/web"
)

// apiClient calls the admin API of a running appliance.
type apiClient struct {
	t     *testing.T
	base  string
	token string
}

func newAPIClient(t *testing.T, a *running) *apiClient {
	t.Helper()
	if a.WebURL() == "" {
		t.Fatal("the dashboard is not running")
	}
	return &apiClient{t: t, base: a.WebURL(), token: a.AdminToken()}
}

// do sends a request and returns the status code and body; body is sent as
// JSON unless it is []byte.
func (c *apiClient) do(method, path string, body any) (int, []byte) {
	c.t.Helper()
	var rd io.Reader
	ctype := ""
	switch b := body.(type) {
	case nil:
	case []byte:
		rd, ctype = bytes.NewReader(b), "application/octet-stream"
	default:
		data, err := json.Marshal(b)
		if err != nil {
			c.t.Fatal(err)
		}
		rd, ctype = bytes.NewReader(data), "application/json"
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp.StatusCode, data
}

// json calls the API, checks the status and decodes the answer into out.
func (c *apiClient) json(method, path string, body any, want int, out any) {
	c.t.Helper()
	code, data := c.do(method, path, body)
	if code != want {
		c.t.Fatalf("%s %s: status %d, want %d: %s", method, path, code, want, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			c.t.Fatalf("%s %s: %v: %s", method, path, err, data)
		}
	}
}

func features(n int, v float32) []float32 {
	f := make([]float32, n)
	for i := range f {
		f[i] = v + float32(i)/100
	}
	return f
}

func requestValue(id string, feats []float32) []byte {
	b, _ := json.Marshal(map[string]any{"request_id": id, "features": feats})
	return b
}

func producer(t *testing.T, a *running) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(a.BrokerAddr()), kgo.DefaultProduceTopic(a.Config().Pipeline.RequestsTopic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func produce(t *testing.T, cl *kgo.Client, recs ...*kgo.Record) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

type topicsResp struct {
	Topics []web.Topic `json:"topics"`
}

// sums adds up a topic's end offsets and its lag.
func sums(ts []web.Topic, role string) (end, lag int64) {
	for _, tp := range ts {
		if tp.Role != role {
			continue
		}
		for _, p := range tp.Partitions {
			end += p.EndOffset
			if p.Lag > 0 {
				lag += p.Lag
			}
		}
	}
	return end, lag
}

type dlqList struct {
	Records []web.RecordView `json:"records"`
	Total   int              `json:"total"`
}

type modelsResp struct {
	Models []web.Model `json:"models"`
}

func modelState(ms []web.Model, name string, version int64) string {
	for _, m := range ms {
		if m.Name != name {
			continue
		}
		for _, v := range m.Versions {
			if v.Version == version {
				return v.State
			}
		}
	}
	return ""
}

// TestWebAPI drives the admin API of a whole appliance: status, topics with
// offsets and lag, models, the DLQ, test requests, pause and resume, replay,
// model upload and labels, settings.
func TestWebAPI(t *testing.T) {
	a := start(t, testConfig(t))
	api := newAPIClient(t, a)
	cfg := a.Config()

	// The CLI finds the API through the data dir.
	if u, err := ReadAdminURL(cfg.DataDir); err != nil || u != a.WebURL() {
		t.Errorf("admin URL in the data dir: %q %v, want %q", u, err, a.WebURL())
	}

	// Health, readiness and auth.
	api.json("GET", "/healthz", nil, 200, nil)
	api.json("GET", "/readyz", nil, 200, nil)
	anon := &apiClient{t: t, base: api.base}
	if code, body := anon.do("GET", "/api/v1/status", nil); code != http.StatusUnauthorized {
		t.Fatalf("status without token: %d %s", code, body)
	}
	wrong := &apiClient{t: t, base: api.base, token: strings.Repeat("x", 40)}
	if code, body := wrong.do("POST", "/api/v1/pipeline/pause", nil); code != http.StatusUnauthorized {
		t.Fatalf("pause with a wrong token: %d %s", code, body)
	}

	var st web.Status
	api.json("GET", "/api/v1/status", nil, 200, &st)
	if st.Broker.State != web.StateOK || st.Broker.Mode != BrokerEmbedded || st.Broker.Address != a.BrokerAddr() {
		t.Errorf("broker: %+v", st.Broker)
	}
	if st.ModelServer.State != web.StateOK || !strings.Contains(st.ModelServer.Detail, "demo v1") {
		t.Errorf("model server: %+v", st.ModelServer)
	}
	if st.Pipeline.State != web.StateOK || st.Store.State != web.StateOK || st.Delivery != AtLeastOnce {
		t.Errorf("pipeline/store/delivery: %+v %+v %q", st.Pipeline, st.Store, st.Delivery)
	}

	// Traffic: good requests and one with the wrong feature count.
	cl := producer(t, a)
	const good = 40
	var recs []*kgo.Record
	for i := range good {
		recs = append(recs, &kgo.Record{Key: []byte(fmt.Sprintf("sensor-%d", i%4)), Value: requestValue(fmt.Sprintf("r-%d", i), features(16, 0.1))})
	}
	recs = append(recs, &kgo.Record{Key: []byte("sensor-x"), Value: requestValue("poison-1", features(3, 0.5)),
		Headers: []kgo.RecordHeader{{Key: "origin", Value: []byte("api-test")}}})
	produce(t, cl, recs...)

	var topics topicsResp
	testutil.Eventually(t, time.Minute, func() error {
		api.json("GET", "/api/v1/topics", nil, 200, &topics)
		reqEnd, lag := sums(topics.Topics, web.RoleRequests)
		resEnd, _ := sums(topics.Topics, web.RoleResults)
		dlqEnd, _ := sums(topics.Topics, web.RoleDLQ)
		if reqEnd != good+1 || resEnd != good || dlqEnd != 1 || lag != 0 {
			return fmt.Errorf("requests end %d, results end %d, dlq end %d, lag %d", reqEnd, resEnd, dlqEnd, lag)
		}
		return nil
	})
	for _, tp := range topics.Topics {
		if len(tp.Partitions) != cfg.Topics.Partitions {
			t.Errorf("topic %s: %d partitions", tp.Name, len(tp.Partitions))
		}
		if tp.Role == web.RoleRequests && tp.Group != cfg.Pipeline.Group {
			t.Errorf("requests topic group %q", tp.Group)
		}
	}

	// The poisoned request is in the DLQ, with its headers.
	var list dlqList
	api.json("GET", "/api/v1/dlq?class=validation", nil, 200, &list)
	if list.Total != 1 || len(list.Records) != 1 || !strings.Contains(list.Records[0].Value, "poison-1") {
		t.Fatalf("DLQ: %+v", list)
	}
	poison := list.Records[0]
	var shown web.RecordView
	api.json("GET", "/api/v1/dlq/"+poison.ID, nil, 200, &shown)
	if shown.SourceTopic != cfg.Pipeline.RequestsTopic || shown.Model != "demo" || !hasHeader(shown.Headers, "origin", "api-test") {
		t.Errorf("DLQ record: %+v", shown)
	}
	if code, _ := api.do("GET", "/api/v1/dlq/nope", nil); code != http.StatusNotFound {
		t.Errorf("unknown DLQ id: %d", code)
	}

	// Models.
	var models modelsResp
	api.json("GET", "/api/v1/models", nil, 200, &models)
	if s := modelState(models.Models, "demo", 1); s != web.ModelAvailable {
		t.Fatalf("demo v1: %q in %+v", s, models)
	}

	// A test request comes back with its prediction; a bad one with why.
	var res struct {
		Result struct {
			RequestID  string    `json:"request_id"`
			Model      string    `json:"model"`
			Prediction []float64 `json:"prediction"`
		} `json:"result"`
	}
	api.json("POST", "/api/v1/test-request?key=k1&header=origin:test", requestValue("t-1", features(16, 0.2)), 200, &res)
	if res.Result.RequestID != "t-1" || res.Result.Model != "demo" || len(res.Result.Prediction) != 1 {
		t.Fatalf("test request result: %+v", res)
	}
	code, body := api.do("POST", "/api/v1/test-request", requestValue("t-2", features(5, 0.2)))
	if code != http.StatusBadRequest || !strings.Contains(string(body), "validation") {
		t.Fatalf("bad test request: %d %s", code, body)
	}

	// Pause: requests wait in the topic, lag shows them; resume drains.
	api.json("POST", "/api/v1/pipeline/pause", nil, 200, nil)
	api.json("GET", "/api/v1/status", nil, 200, &st)
	if st.Pipeline.State != web.StatePaused {
		t.Fatalf("pipeline after pause: %+v", st.Pipeline)
	}
	var more []*kgo.Record
	for i := range 10 {
		more = append(more, &kgo.Record{Value: requestValue(fmt.Sprintf("p-%d", i), features(16, 0.3))})
	}
	produce(t, cl, more...)
	testutil.Eventually(t, 30*time.Second, func() error {
		api.json("GET", "/api/v1/topics", nil, 200, &topics)
		if _, lag := sums(topics.Topics, web.RoleRequests); lag != 10 {
			return fmt.Errorf("lag %d while paused, want 10", lag)
		}
		return nil
	})
	// A test request while paused times out with a reason (shortened by
	// the client's own deadline is not possible: the server bounds it).
	api.json("POST", "/api/v1/pipeline/resume", nil, 200, nil)
	testutil.Eventually(t, time.Minute, func() error {
		api.json("GET", "/api/v1/topics", nil, 200, &topics)
		if _, lag := sums(topics.Topics, web.RoleRequests); lag != 0 {
			return fmt.Errorf("lag %d after resume", lag)
		}
		return nil
	})
	api.json("GET", "/api/v1/status", nil, 200, &st)
	if st.Pipeline.State != web.StateOK {
		t.Fatalf("pipeline after resume: %+v", st.Pipeline)
	}

	// Replay the poisoned record as it was: dead-lettered again, and the
	// failure updates its record instead of adding one (issue 15).
	api.json("GET", "/api/v1/dlq?class=validation", nil, 200, &list)
	validations := list.Total // the poisoned request and the bad test request
	var replayed struct{ Replayed int }
	api.json("POST", "/api/v1/dlq/replay", map[string]any{"ids": []string{poison.ID}}, 200, &replayed)
	if replayed.Replayed != 1 {
		t.Fatalf("replayed %d", replayed.Replayed)
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		api.json("GET", "/api/v1/dlq?class=validation", nil, 200, &list)
		if list.Total != validations {
			return fmt.Errorf("%d validation records, want %d", list.Total, validations)
		}
		return nil
	})
	api.json("GET", "/api/v1/dlq/"+poison.ID, nil, 200, &shown)
	if shown.Replays != 1 {
		t.Errorf("replays of %s: %d", poison.ID, shown.Replays)
	}
	// Fixed and replayed with wait: the result comes back and the record
	// is deleted; the request's own headers went along, not the DLQ's.
	var fixed struct {
		Result map[string]any `json:"result"`
		Edited bool           `json:"edited"`
	}
	fixedValue := string(requestValue("poison-1", features(16, 0.5)))
	api.json("POST", "/api/v1/dlq/"+poison.ID+"/replay", map[string]any{"value": fixedValue, "wait": true, "delete": true}, 200, &fixed)
	if fixed.Result["request_id"] != "poison-1" || !fixed.Edited {
		t.Fatalf("replay with wait: %+v", fixed)
	}
	if code, _ := api.do("GET", "/api/v1/dlq/"+poison.ID, nil); code != http.StatusNotFound {
		t.Errorf("replayed record not deleted: %d", code)
	}
	// Replay everything matching a filter.
	api.json("POST", "/api/v1/dlq/replay", map[string]any{"filter": map[string]string{"class": "validation"}}, 200, &replayed)
	if replayed.Replayed < 1 {
		t.Errorf("filter replay: %d", replayed.Replayed)
	}

	// Upload: a new version of demo, and a model that did not exist.
	var up struct {
		Version int64 `json:"version"`
	}
	api.json("POST", "/api/v1/models/demo/versions", demo.ONNX, 201, &up)
	if up.Version != 2 {
		t.Fatalf("uploaded version %d", up.Version)
	}
	api.json("POST", "/api/v1/models/scorer/versions?version=7", demo.ONNX, 201, &up)
	if up.Version != 7 {
		t.Fatalf("new model uploaded as version %d", up.Version)
	}
	testutil.Eventually(t, time.Minute, func() error {
		api.json("GET", "/api/v1/models", nil, 200, &models)
		if modelState(models.Models, "demo", 2) != web.ModelAvailable || modelState(models.Models, "scorer", 7) != web.ModelAvailable {
			return fmt.Errorf("models %+v", models.Models)
		}
		return nil
	})
	if code, body := api.do("POST", "/api/v1/models/demo/versions", []byte("not onnx")); code != http.StatusBadRequest {
		t.Errorf("bad model file: %d %s", code, body)
	}
	if code, body := api.do("POST", "/api/v1/models/other/versions", []byte("not onnx")); code != http.StatusBadRequest {
		t.Errorf("bad model file for a new model: %d %s", code, body)
	}
	// Labels, kept across a reload.
	api.json("PUT", "/api/v1/models/demo/labels/stable", map[string]int64{"version": 2}, 200, nil)
	if code, body := api.do("PUT", "/api/v1/models/nope/labels/stable", map[string]int64{"version": 1}); code != http.StatusNotFound {
		t.Errorf("label of an unknown model: %d %s", code, body)
	}
	if code, body := api.do("PUT", "/api/v1/models/demo/labels/canary", map[string]int64{"version": 99}); code != http.StatusBadRequest {
		t.Errorf("label on a missing version: %d %s", code, body)
	}
	api.json("POST", "/api/v1/models/reload", nil, 200, nil)
	api.json("GET", "/api/v1/models", nil, 200, &models)
	for _, m := range models.Models {
		if m.Name == "demo" && m.Labels["stable"] != 2 {
			t.Errorf("labels after reload: %+v", m)
		}
	}
	// A request for the new model by header.
	api.json("POST", "/api/v1/test-request?header=model:scorer", requestValue("t-3", features(16, 0.2)), 200, &res)
	if res.Result.Model != "scorer" {
		t.Errorf("request for scorer: %+v", res)
	}

	// Settings: every setting, secrets redacted; no sidecar in embedded mode.
	code, body = api.do("GET", "/api/v1/settings", nil)
	if code != 200 || strings.Contains(string(body), a.AdminToken()) || !strings.Contains(string(body), `"listen":"127.0.0.1:0"`) {
		t.Errorf("settings: %d %.300s", code, body)
	}
	var sc struct{ Enabled bool }
	api.json("GET", "/api/v1/sidecar", nil, 200, &sc)
	if sc.Enabled {
		t.Error("sidecar enabled in embedded mode")
	}
	// The audit log saw the admin actions.
	var audit struct {
		Entries []store.AuditEntry `json:"entries"`
	}
	api.json("GET", "/api/v1/audit", nil, 200, &audit)
	if len(audit.Entries) < 5 {
		t.Errorf("audit log: %+v", audit.Entries)
	}
}

func hasHeader(hs []web.HeaderView, k, v string) bool {
	for _, h := range hs {
		if h.Key == k && h.Value == v {
			return true
		}
	}
	return false
}

// TestWebStopsFirst: on shutdown /readyz is refused before the pipeline
// drains, and the appliance still stops cleanly.
func TestWebStopsFirst(t *testing.T) {
	a := start(t, testConfig(t))
	url := a.WebURL()
	names := make([]string, len(a.comps))
	for i, c := range a.comps {
		names[i] = c.name
	}
	if names[len(names)-1] != "web" {
		t.Fatalf("start order %v: web must be last", names)
	}
	a.cancel()
	<-a.done
	if a.err != nil {
		t.Fatal(a.err)
	}
	if resp, err := http.Get(url + "/readyz"); err == nil {
		resp.Body.Close()
		t.Fatalf("dashboard still answers after stop: %d", resp.StatusCode)
	}
	if u, err := ReadAdminURL(a.Config().DataDir); err == nil {
		t.Errorf("admin URL %q left in the data dir after stop", u)
	}
}

// TestWebOff: an empty http.listen runs no dashboard.
func TestWebOff(t *testing.T) {
	c := testConfig(t)
	c.HTTP.Listen = ""
	a := start(t, c)
	if a.WebURL() != "" {
		t.Fatalf("dashboard at %s", a.WebURL())
	}
}

// scrape reads /metrics into name → summed value, plus per-series lag.
func scrape(t *testing.T, url string) (map[string]float64, map[string]float64) {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	sums, lag := map[string]float64{}, map[string]float64{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			switch {
			case m.GetHistogram() != nil:
				sums[name+"_count"] += float64(m.GetHistogram().GetSampleCount())
				sums[name+"_sum"] += m.GetHistogram().GetSampleSum()
			case m.GetGauge() != nil:
				sums[name] += m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				sums[name] += m.GetCounter().GetValue()
			}
			if name == "infergate_consumer_lag" {
				var labels []string
				for _, l := range m.GetLabel() {
					labels = append(labels, l.GetName()+"="+l.GetValue())
				}
				lag[strings.Join(labels, ",")] = m.GetGauge().GetValue()
			}
		}
	}
	return sums, lag
}

// TestMetricsMoveWithTraffic scrapes /metrics of a whole appliance while
// requests flow: the request, result and latency series grow, and the
// consumer lag rises while a backlog drains and falls back to zero.
func TestMetricsMoveWithTraffic(t *testing.T) {
	a := start(t, testConfig(t))
	url := a.WebURL()
	cl := producer(t, a)
	cfg := a.Config()

	before, _ := scrape(t, url)
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total", "infergate_store_bytes", "infergate_model_status"} {
		if _, ok := before[name]; !ok {
			t.Errorf("/metrics has no %s", name)
		}
	}

	// Steady traffic in the background for the whole test.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var sent atomic.Int64
	wg.Go(func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			cl.Produce(ctx, &kgo.Record{Value: requestValue(fmt.Sprintf("bg-%d", i), features(16, 0.1))}, func(_ *kgo.Record, err error) {
				if err == nil {
					sent.Add(1)
				}
			})
		}
	})
	defer func() { cancel(); wg.Wait() }()

	testutil.Eventually(t, time.Minute, func() error {
		now, _ := scrape(t, url)
		for _, name := range []string{"infergate_requests_total", "infergate_results_total",
			"infergate_end_to_end_latency_seconds_count", "infergate_end_to_end_latency_seconds_sum",
			"infergate_predict_latency_seconds_count", "infergate_batch_size_count"} {
			if now[name] <= before[name] {
				return fmt.Errorf("%s did not grow: %v -> %v", name, before[name], now[name])
			}
		}
		return nil
	})

	// Paused, the backlog shows as lag (the committed offsets stop while
	// the topic grows); resumed, it drains to zero.
	lagTotal := func() (float64, error) {
		_, lag := scrape(t, url)
		total := 0.0
		for series, v := range lag {
			if !strings.Contains(series, "topic="+cfg.Pipeline.RequestsTopic) {
				return 0, fmt.Errorf("lag series of another topic: %s", series)
			}
			total += v
		}
		if len(lag) != cfg.Topics.Partitions {
			return 0, fmt.Errorf("lag series: %v", lag)
		}
		return total, nil
	}
	p := a.Pipeline()
	p.Pause()
	var backlog []*kgo.Record
	for i := range 500 {
		backlog = append(backlog, &kgo.Record{Value: requestValue(fmt.Sprintf("b-%d", i), features(16, 0.2))})
	}
	produce(t, cl, backlog...)
	maxLag := 0.0
	testutil.Eventually(t, time.Minute, func() error {
		total, err := lagTotal()
		if err != nil {
			return err
		}
		maxLag = max(maxLag, total)
		if total < 500 {
			return fmt.Errorf("lag %v while paused with a backlog of 500", total)
		}
		return nil
	})
	p.Resume()
	cancel()
	wg.Wait()
	testutil.Eventually(t, 2*time.Minute, func() error {
		total, err := lagTotal()
		if err != nil {
			return err
		}
		if total != 0 {
			return fmt.Errorf("lag %v after the backlog drained (max seen %v)", total, maxLag)
		}
		return nil
	})
	t.Logf("max consumer lag seen on /metrics: %v; background requests sent: %d", maxLag, sent.Load())
}

// TestWebSettingsRedacted: a configured admin token authenticates the API
// and reads as redacted in the settings.
func TestWebSettingsRedacted(t *testing.T) {
	c := testConfig(t)
	c.HTTP.AdminToken = "configured-admin-token-0123456789"
	a := start(t, c)
	api := newAPIClient(t, a)
	if api.token != c.HTTP.AdminToken {
		t.Fatalf("admin token %q", api.token)
	}
	var got struct {
		NotDefault map[string]string `json:"not_default"`
		Settings   struct {
			HTTP map[string]any `json:"http"`
		} `json:"settings"`
	}
	code, body := api.do("GET", "/api/v1/settings", nil)
	if code != 200 || strings.Contains(string(body), c.HTTP.AdminToken) {
		t.Fatalf("settings: %d %s", code, body)
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	if got.Settings.HTTP["admin_token"] != Redacted {
		t.Errorf("admin token shown as %q", got.Settings.HTTP["admin_token"])
	}
}

// TestWebTLS: with http.tls_cert and http.tls_key the dashboard speaks
// HTTPS; /metrics asks for the token with http.metrics_auth.
func TestWebTLS(t *testing.T) {
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "infergate"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	c := testConfig(t)
	c.HTTP.TLSCert, c.HTTP.TLSKey = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	c.HTTP.MetricsAuth = true
	if err := os.WriteFile(c.HTTP.TLSCert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.HTTP.TLSKey, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	a := start(t, c)
	if !strings.HasPrefix(a.WebURL(), "https://") {
		t.Fatalf("URL %s", a.WebURL())
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	for path, want := range map[string]int{"/readyz": 200, "/metrics": 401} {
		resp, err := cl.Get(a.WebURL() + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s: %d, want %d", path, resp.StatusCode, want)
		}
	}

	// Only one of the two files is refused, naming the settings.
	c = testConfig(t)
	c.HTTP.TLSCert = filepath.Join(dir, "cert.pem")
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "http.tls_cert") {
		t.Fatalf("got %v", err)
	}
}
