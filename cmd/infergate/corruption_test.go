package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/infergate/infergate/appliance"
	"github.com/infergate/infergate/store"
	"github.com/infergate/infergate/web"
)

// Issue 9 row 10, end to end: 64 flipped bytes in a store table made dead letters silently
// unreadable, and a corrupt broker segment was a WARN while /readyz stayed ready. Now, after
// flipping bytes in the biggest real .sst and in a real segment of the requests topic, the
// `infergate dlq` CLI (reading the stopped appliance's store, and through the API of the
// restarted one) says which data was lost, the status lists it as warnings with the store and
// broker degraded, /readyz's body carries it, and the metrics count it.
func TestCorruptionIsReportedEverywhere(t *testing.T) {
	c := appliance.Default()
	c.DataDir = t.TempDir()
	c.Broker.Listen = "127.0.0.1:0"
	c.Broker.Durability = "os"
	c.ModelServer.GRPCListen = "127.0.0.1:0"
	c.ModelServer.RESTListen = "127.0.0.1:0"
	c.HTTP.Listen = "127.0.0.1:0"
	c.Topics.Partitions = 1

	a, stop := runInProcess(t, c)
	// Dead letters: enough that the store's table has many blocks.
	rng := rand.New(rand.NewPCG(3, 4))
	var recs []*store.Record
	for i := range 3000 {
		v := make([]byte, 300)
		for j := range v {
			v[j] = byte('a' + rng.IntN(26))
		}
		recs = append(recs, &store.Record{Class: "decode", Value: v, SourceTopic: c.Pipeline.RequestsTopic, SourceOffset: int64(i)})
	}
	for i := 0; i < len(recs); i += 500 {
		if err := a.Store().Put(context.Background(), recs[i:i+500]...); err != nil {
			t.Fatal(err)
		}
	}
	// Requests in ten batches, so a damaged batch leaves whole ones before it.
	cl, err := kgo.NewClient(kgo.SeedBrokers(a.BrokerAddr()), kgo.DefaultProduceTopic(c.Pipeline.RequestsTopic), kgo.ProducerLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	for b := range 10 {
		var batch []*kgo.Record
		for i := range 10 {
			batch = append(batch, &kgo.Record{Value: fmt.Appendf(nil, `{"request_id":"r-%d-%d","features":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]}`, b, i)})
		}
		if err := cl.ProduceSync(context.Background(), batch...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	cl.Close()
	stop()

	sst := biggest(t, filepath.Join(c.DataDir, "store", "*.sst"))
	flip(t, sst)
	flip(t, filepath.Join(c.DataDir, "broker", "partitions", c.Pipeline.RequestsTopic+"-0", "0.dat"))

	// The CLI on the stopped appliance's data dir reads the store itself.
	var out, errb bytes.Buffer
	if code := dispatch(context.Background(), []string{"dlq", "list", "--data-dir", c.DataDir, "--limit", "5"},
		stdio{in: strings.NewReader(""), out: &out, err: &errb, environ: cleanEnv()}); code != exitOK {
		t.Fatalf("dlq list: exit %d: %s", code, errb.String())
	}
	if !strings.Contains(errb.String(), "WARNING: store: DATA CORRUPTION: table "+filepath.Base(sst)) ||
		!strings.Contains(errb.String(), "dead-lettered records are lost") {
		t.Errorf("dlq list on the stopped appliance does not say what was lost:\n%s", errb.String())
	}

	a, _ = runInProcess(t, c)
	get := func(path string) (int, string) {
		req, _ := http.NewRequest("GET", a.WebURL()+path, nil)
		req.Header.Set("Authorization", "Bearer "+a.AdminToken())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// The store's table check runs in the background after open.
	var st web.Status
	deadline := time.Now().Add(time.Minute)
	for {
		_, body := get("/api/v1/status")
		st = web.Status{}
		json.Unmarshal([]byte(body), &st)
		if len(st.Warnings) >= 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	joined := strings.Join(st.Warnings, "\n")
	for _, want := range []string{"store: DATA CORRUPTION: table " + filepath.Base(sst), "dead-lettered records are lost",
		"broker: DATA CORRUPTION: topic " + c.Pipeline.RequestsTopic + " partition 0", "are lost"} {
		if !strings.Contains(joined, want) {
			t.Errorf("status warnings lack %q:\n%s", want, joined)
		}
	}
	if st.Store.State != web.StateDegraded || st.Broker.State != web.StateDegraded {
		t.Errorf("store %+v, broker %+v: want both degraded", st.Store, st.Broker)
	}
	if code, body := get("/readyz"); code != 200 || !strings.Contains(body, `"status":"degraded"`) || !strings.Contains(body, `"reason":"store: DATA CORRUPTION`) {
		t.Errorf("/readyz: %d %s (want 200, degraded, the data loss as its reason)", code, body)
	}
	_, metrics := get("/metrics")
	for _, want := range []string{`infergate_data_corruption{component="broker"} 1`, `infergate_data_corruption{component="store"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	out.Reset()
	errb.Reset()
	if code := dispatch(context.Background(), []string{"dlq", "list", "--url", a.WebURL(), "--limit", "5"},
		stdio{in: strings.NewReader(""), out: &out, err: &errb, environ: cleanEnv("INFERGATE_ADMIN_TOKEN=" + a.AdminToken())}); code != exitOK {
		t.Fatalf("dlq list --url: exit %d: %s", code, errb.String())
	}
	if !strings.Contains(errb.String(), "WARNING: broker: DATA CORRUPTION") || !strings.Contains(errb.String(), "WARNING: store: DATA CORRUPTION") {
		t.Errorf("dlq list --url does not say what was lost:\n%s", errb.String())
	}
}

// runInProcess runs an appliance until stop (or the test's end) and waits until it is ready.
func runInProcess(t *testing.T, c appliance.Config) (*appliance.Appliance, func()) {
	t.Helper()
	a, err := appliance.New(c, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("appliance: %v", err)
		}
	}
	t.Cleanup(stop)
	deadline := time.Now().Add(2 * time.Minute)
	for a.Ready() != nil || a.WebURL() == "" {
		if time.Now().After(deadline) {
			t.Fatalf("appliance not ready: %v", a.Ready())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return a, stop
}

func biggest(t *testing.T, pattern string) string {
	t.Helper()
	ms, _ := filepath.Glob(pattern)
	var best string
	var size int64
	for _, m := range ms {
		if fi, err := os.Stat(m); err == nil && fi.Size() > size {
			best, size = m, fi.Size()
		}
	}
	if best == "" {
		t.Fatalf("no file matches %s", pattern)
	}
	return best
}

// flip inverts 64 bytes in the middle of a file.
func flip(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := len(b) / 2; i < len(b)/2+64 && i < len(b); i++ {
		b[i] ^= 0xff
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
