package ingress

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/infergate/infergate/internal/testutil"
)

const (
	reqTopic = "inference_requests"
	resTopic = "inference_results"
	dlqTopic = "inference_dlq"
)

type harness struct {
	in      *Ingress
	brokers []string
	cancel  context.CancelFunc
	done    chan error
}

// newCluster is a kfake broker with the three topics.
func newCluster(t *testing.T) []string {
	t.Helper()
	return testutil.Cluster(t, 3, []string{reqTopic, resTopic, dlqTopic}).ListenAddrs()
}

func testConfig(t *testing.T) Config {
	cfg := DefaultConfig()
	cfg.StoreDir = t.TempDir()
	cfg.NATSListen = "127.0.0.1:0"
	cfg.MQTTListen = "127.0.0.1:0"
	return cfg
}

// startIngress runs an Ingress against brokers until the test ends.
func startIngress(t *testing.T, cfg Config, brokers []string) *harness {
	t.Helper()
	in, err := New(cfg, testutil.Logger(t), []kgo.Opt{kgo.SeedBrokers(brokers...)}, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if err := in.Start(context.Background()); err != nil {
		in.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{in: in, brokers: brokers, cancel: cancel, done: make(chan error, 1)}
	go func() { h.done <- in.Run(ctx) }()
	t.Cleanup(h.stop)
	testutil.WaitFor(t, 30*time.Second, "ingress open", func() bool { return in.auth.open.Load() })
	return h
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	<-h.done
	h.in.Close()
	h.cancel = nil
}

// echoPipeline stands in for pipeline.Pipeline in this package's tests
// (the appliance tests run the real one): it answers each request with a
// result carrying the request's key and headers, as the pipeline does, and
// dead-letters payloads that are not JSON objects with the pipeline's DLQ
// headers. The prediction is the number of features, so a test can tell
// answers apart.
func echoPipeline(t *testing.T, brokers []string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumerGroup("echo"), kgo.ConsumeTopics(reqTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done; cl.Close() })
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			fs.EachRecord(func(r *kgo.Record) {
				var req struct {
					RequestID json.RawMessage `json:"request_id"`
					Features  []float64       `json:"features"`
				}
				out := &kgo.Record{Key: r.Key, Headers: r.Headers}
				if err := json.Unmarshal(r.Value, &req); err != nil {
					out.Topic, out.Value = dlqTopic, r.Value
					out.Headers = append(append([]kgo.RecordHeader(nil), r.Headers...),
						kgo.RecordHeader{Key: "error.class", Value: []byte("decode")},
						kgo.RecordHeader{Key: "error.message", Value: []byte("not JSON: " + err.Error())})
				} else {
					out.Topic = resTopic
					out.Value, _ = json.Marshal(map[string]any{"request_id": req.RequestID, "prediction": []int{len(req.Features)}})
				}
				cl.Produce(ctx, out, nil)
			})
		}
	}()
}

// readTopic returns every record of topic, polling until cond holds.
func readTopic(t *testing.T, brokers []string, topic string, cond func([]*kgo.Record) bool) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		recs = append(recs, cl.PollFetches(ctx).Records()...)
		cancel()
		if cond(recs) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: condition not met after 60s with %d records", topic, len(recs))
		}
	}
	return recs
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// needTool skips without tool, and fails under CI, where .ci/run installs it.
func needTool(t *testing.T, tool string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not installed (CI installs mosquitto-clients and python3-paho-mqtt: .ci/run PACKAGES)", tool)
		}
		t.Skipf("%s is not installed", tool)
	}
	return p
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstdout: %s\nstderr: %s", name, strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String()
}
