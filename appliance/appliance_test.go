package appliance

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/infergate/infergate/internal/testutil"
)

// testConfig is the default configuration on free ports in a temp data dir.
func testConfig(t *testing.T) Config {
	t.Helper()
	c := Default()
	c.DataDir = t.TempDir()
	c.Broker.Listen = "127.0.0.1:0"
	c.Broker.Durability = "os"
	c.ModelServer.GRPCListen = "127.0.0.1:0"
	c.ModelServer.RESTListen = "127.0.0.1:0"
	c.HTTP.Listen = "127.0.0.1:0"
	c.Topics.Partitions = 2
	return c
}

// running is an appliance run by a test.
type running struct {
	*Appliance
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returned
	err    error         // Run's result, valid after done
}

// start runs an appliance until the test ends and waits for it to be ready.
func start(t *testing.T, c Config) *running {
	t.Helper()
	return startWith(t, c, testutil.Logger(t))
}

// startWith is start with the appliance's logger.
func startWith(t *testing.T, c Config, logger *slog.Logger) *running {
	t.Helper()
	a, err := New(c, logger)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Appliance: a, cancel: cancel, done: make(chan struct{})}
	go func() { r.err = a.Run(ctx); close(r.done) }()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	testutil.Eventually(t, 2*time.Minute, func() error {
		select {
		case <-r.done:
			t.Fatalf("Run returned during start: %v", r.err)
		default:
		}
		return a.Ready()
	})
	return r
}

func TestRunReadyAndStop(t *testing.T) {
	c := testConfig(t)
	a := start(t, c)

	// Topics exist with the configured partitions.
	cl, err := kgo.NewClient(kgo.SeedBrokers(a.BrokerAddr()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	topics, err := kadm.NewClient(cl).ListTopics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{c.Pipeline.RequestsTopic, c.Pipeline.ResultsTopic, c.Pipeline.DLQTopic} {
		if d, ok := topics[name]; !ok || len(d.Partitions) != c.Topics.Partitions {
			t.Errorf("topic %s: %+v", name, d)
		}
	}
	// The demo model was written and is served.
	if _, err := os.Stat(filepath.Join(c.DataDir, ModelsDir, "demo", "1", "model.onnx")); err != nil {
		t.Error(err)
	}
	if a.ModelServer() == nil || a.ModelServer().GRPCAddr() == "" {
		t.Error("model server not running")
	}
	// The admin token was generated with mode 0600 and is stable.
	fi, err := os.Stat(filepath.Join(c.DataDir, AdminTokenFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("admin token file: %v %v", fi, err)
	}
	if tok, _ := ReadAdminToken(c.DataDir); tok != a.AdminToken() || len(tok) < 32 {
		t.Errorf("admin token %q vs %q", tok, a.AdminToken())
	}

	a.cancel()
	select {
	case <-a.done:
		if a.err != nil {
			t.Fatalf("Run after cancel: %v", a.err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Run did not return after cancel")
	}
	if err := a.Ready(); !errors.Is(err, ErrNotReady) {
		t.Errorf("Ready after stop: %v", err)
	}
}

func TestPortInUseNamesTheSetting(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	busy := ln.Addr().String()
	for _, tc := range []struct {
		set  func(*Config)
		want string
	}{
		{func(c *Config) { c.Broker.Listen = busy }, "broker.listen (--broker-listen, INFERGATE_BROKER_LISTEN): " + busy + " is already in use"},
		{func(c *Config) { c.ModelServer.GRPCListen = busy }, "model_server.grpc_listen (--grpc-listen, INFERGATE_MODEL_SERVER_GRPC_LISTEN): " + busy + " is already in use"},
		{func(c *Config) { c.HTTP.Listen = busy }, "http.listen (--http-listen, INFERGATE_HTTP_LISTEN): " + busy + " is already in use"},
	} {
		c := testConfig(t)
		tc.set(&c)
		_, err := New(c, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v\nwant %q", err, tc.want)
		}
	}
}

func TestUnusableDataDir(t *testing.T) {
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	c := testConfig(t)
	c.DataDir = filepath.Join(file, "data")
	_, err := New(c, nil)
	if err == nil || !strings.Contains(err.Error(), "data_dir (--data-dir, INFERGATE_DATA_DIR): cannot create") {
		t.Fatalf("got %v", err)
	}
}

func TestInvalidConfigIsRefused(t *testing.T) {
	c := testConfig(t)
	c.Topics.Partitions = 0
	if _, err := New(c, nil); err == nil || !strings.Contains(err.Error(), "topics.partitions (--topic-partitions") {
		t.Fatalf("got %v", err)
	}
}

func TestUnknownDefaultModel(t *testing.T) {
	c := testConfig(t)
	c.Pipeline.DefaultModel = "no-such-model"
	a, err := New(c, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	err = a.Run(context.Background())
	want := `pipeline.default_model (--default-model, INFERGATE_PIPELINE_DEFAULT_MODEL): model "no-such-model" is not in the model repository`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v", err)
	}
	// The failed start rolled back: the data dir is free again.
	c.Pipeline.DefaultModel = "demo"
	start(t, c)
}

func TestSecondApplianceOnSameDataDir(t *testing.T) {
	c := testConfig(t)
	start(t, c)
	a2, err := New(c, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	err = a2.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "is in use by another running infergate") {
		t.Fatalf("got %v", err)
	}
}

// TestSupervisorOrder: start in order, stop in reverse, each stop complete
// before the next; a failed start rolls back what started.
func TestSupervisorOrder(t *testing.T) {
	var mu sync.Mutex
	var events []string
	log := func(e string) {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
	}
	comp := func(name string, failStart bool) *component {
		return &component{
			name: name,
			start: func(context.Context) error {
				log("start " + name)
				if failStart {
					return errors.New("boom")
				}
				return nil
			},
			run: func(ctx context.Context) error {
				<-ctx.Done()
				time.Sleep(5 * time.Millisecond) // a drain takes a while
				log("ran " + name)
				return nil
			},
			stop: func() error { log("stop " + name); return nil },
		}
	}

	// Clean run, cancelled.
	s := newSupervisor(slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	comps := []*component{comp("a", false), comp("b", false), comp("c", false)}
	done := make(chan error)
	go func() { done <- s.run(ctx, comps) }()
	testutil.Eventually(t, 10*time.Second, func() error { return s.ready(comps) })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	want := "start a,start b,start c,ran c,stop c,ran b,stop b,ran a,stop a"
	if got := strings.Join(events, ","); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}

	// Failed start of c: b and a are stopped, c's stop cleans up.
	events = nil
	s = newSupervisor(slog.New(slog.DiscardHandler))
	err := s.run(context.Background(), []*component{comp("a", false), comp("b", false), comp("c", true)})
	if err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("got %v", err)
	}
	want = "start a,start b,start c,stop c,ran b,stop b,ran a,stop a"
	if got := strings.Join(events, ","); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}

	// A component whose run fails stops everything, and its error is returned.
	events = nil
	s = newSupervisor(slog.New(slog.DiscardHandler))
	failing := comp("b", false)
	failing.run = func(context.Context) error { return errors.New("crashed") }
	waitOK := make(chan struct{})
	late := &component{name: "c", start: func(context.Context) error { close(waitOK); return nil },
		run: func(ctx context.Context) error { <-ctx.Done(); return nil }}
	err = s.run(context.Background(), []*component{comp("a", false), failing, late})
	if err == nil || !strings.Contains(err.Error(), "b: crashed") && !strings.Contains(err.Error(), "b stopped during start-up") {
		t.Fatalf("got %v", err)
	}
}
