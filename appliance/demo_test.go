package appliance

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/infergate/infergate/internal/testutil"
)

// captureHandler keeps log records for assertions.
type captureHandler struct {
	mu   *sync.Mutex
	recs *[]slog.Record
}

func (h captureHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h captureHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	*h.recs = append(*h.recs, r.Clone())
	h.mu.Unlock()
	return nil
}
func (h captureHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h captureHandler) WithGroup(string) slog.Handler      { return h }

// TestDemoTrafficFlows: --demo produces readings that the pipeline scores,
// and the summary line reports results.
func TestDemoTrafficFlows(t *testing.T) {
	c := testConfig(t)
	c.HTTP.Listen = ""
	c.Demo.Enabled = true
	c.Demo.Rate = 200
	c.Demo.SummaryInterval = 100 * time.Millisecond
	var mu sync.Mutex
	var recs []slog.Record
	a, err := New(c, slog.New(captureHandler{&mu, &recs}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	testutil.Eventually(t, time.Minute, func() error {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range recs {
			if r.Message != "demo" {
				continue
			}
			var results int64
			r.Attrs(func(at slog.Attr) bool {
				if at.Key == "results" {
					results = at.Value.Int64()
				}
				return true
			})
			if results >= 50 {
				return nil
			}
		}
		return errNo("demo summary with results >= 50")
	})
	// The start line names the command that shows the results, with the
	// data dir it needs to find this appliance (not the default one).
	mu.Lock()
	defer mu.Unlock()
	see := ""
	for _, r := range recs {
		r.Attrs(func(at slog.Attr) bool {
			if at.Key == "see_results" {
				see = at.Value.String()
			}
			return true
		})
	}
	if want := "infergate consume --data-dir " + c.DataDir; see != want {
		t.Errorf("see_results=%q, want %q", see, want)
	}
}

func TestConsumeCommand(t *testing.T) {
	for dir, want := range map[string]string{
		defaultDataDir(): "infergate consume",
		"/var/lib/x":     "infergate consume --data-dir /var/lib/x",
		"/data/line 3":   `infergate consume --data-dir '/data/line 3'`,
		"/data/o'neil's": `infergate consume --data-dir '/data/o'\''neil'\''s'`,
	} {
		a := &Appliance{cfg: Config{DataDir: dir}}
		if got := a.consumeCommand(); got != want {
			t.Errorf("data dir %q: %q, want %q", dir, got, want)
		}
	}
}

type errNo string

func (e errNo) Error() string { return "no " + string(e) }

func TestTopicSpecs(t *testing.T) {
	c := testConfig(t)
	a := &Appliance{cfg: c}
	specs := a.topicSpecs()
	if len(specs) != 3 {
		t.Fatalf("%d specs", len(specs))
	}
	byName := map[string]int{}
	for i, s := range specs {
		byName[s.Name] = i
		if s.Partitions != int32(c.Topics.Partitions) {
			t.Errorf("%s: %d partitions", s.Name, s.Partitions)
		}
	}
	req, dlq := specs[byName[c.Pipeline.RequestsTopic]], specs[byName[c.Pipeline.DLQTopic]]
	if req.RetentionMs != c.Topics.Retention.Milliseconds() || dlq.RetentionMs != c.Topics.DLQRetention.Milliseconds() {
		t.Errorf("retention: requests %d, dlq %d", req.RetentionMs, dlq.RetentionMs)
	}
	if want := c.Topics.RequestsBytes / int64(c.Topics.Partitions); req.RetentionBytes != want {
		t.Errorf("requests retention.bytes %d, want the budget split over partitions, %d", req.RetentionBytes, want)
	}

	// Unbounded (0) becomes Kafka's -1; a changed budget is split over the
	// partitions, with segments small enough for it.
	c.Topics.Retention = 0
	c.Topics.ResultsBytes = 0
	c.Topics.DLQBytes = 16 << 20
	a = &Appliance{cfg: c}
	specs = a.topicSpecs()
	res, dlq := specs[byName[c.Pipeline.ResultsTopic]], specs[byName[c.Pipeline.DLQTopic]]
	if res.RetentionMs != -1 || res.RetentionBytes != -1 {
		t.Errorf("unbounded results: %+v", res)
	}
	if dlq.RetentionBytes != 8<<20 || *dlq.Configs["segment.bytes"] != "1048576" {
		t.Errorf("dlq: retention.bytes %d, segment.bytes %s", dlq.RetentionBytes, *dlq.Configs["segment.bytes"])
	}
	if strings.Contains(*specs[byName[c.Pipeline.RequestsTopic]].Configs["segment.bytes"], "-") {
		t.Error("negative segment size")
	}
}
