// Package testutil holds the helpers every package's tests share: polling
// for a condition with a deadline, and a kfake broker on a random port.
// It imports no infergate package, so any package's tests may use it.
package testutil

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Eventually polls cond until it returns nil, failing the test with cond's
// last error when d passes. Polling starts at 5 ms and backs off to 200 ms,
// so fast conditions return fast and slow ones do not spin.
func Eventually(t testing.TB, d time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := 5 * time.Millisecond
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s: %v", d, err)
		}
		time.Sleep(tick)
		tick = min(tick*2, 200*time.Millisecond)
	}
}

// WaitFor polls cond until it is true, failing the test with "timed out
// after d waiting for what" when d passes.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := 5 * time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(tick)
		tick = min(tick*2, 200*time.Millisecond)
	}
}

// Cluster starts a one-broker kfake cluster on a random loopback port with
// the given topics (partitions each) and closes it when the test ends.
// More options (NumBrokers, DataDir, configs) may follow; later ones win.
func Cluster(t testing.TB, partitions int, topics []string, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	all := []kfake.Opt{kfake.NumBrokers(1)}
	if len(topics) > 0 {
		all = append(all, kfake.SeedTopics(int32(partitions), topics...))
	}
	c, err := kfake.NewCluster(append(all, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// Client is a kgo client seeded with addrs, closed when the test ends.
func Client(t testing.TB, addrs []string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addrs...)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// Logger is a slog.Logger writing into the test's own log (shown for a
// failed test, or with -v): warnings and errors always, everything from
// debug up with -v or INFERGATE_TEST_LOG set. Lines logged after the test
// has ended (by goroutines still stopping) are dropped, not a panic.
func Logger(t testing.TB) *slog.Logger {
	level := slog.LevelWarn
	if testing.Verbose() || os.Getenv("INFERGATE_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(Writer(t), &slog.HandlerOptions{Level: level}))
}

// Writer is an io.Writer into the test's log, one t.Log call per Write
// (a subprocess's stderr, a logger); writes after the test has ended are
// dropped.
func Writer(t testing.TB) io.Writer {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return w
}

type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

// SilentListener listens on a loopback port and accepts connections but
// never answers: a broker or API that hangs, unlike a closed port, which
// refuses at once. It returns the address; the listener and its
// connections close when the test ends.
func SilentListener(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// Buffer is a bytes.Buffer safe for a process (or logger) writing while the
// test reads it.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
