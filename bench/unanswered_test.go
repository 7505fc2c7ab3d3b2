package bench

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/infergate/infergate/inference/demo"
)

// A device publishes at QoS 1 without a subscription to its answers (as a
// device whose clean session nats-server closed: its answers have nowhere
// to go), every publish is acknowledged, and then nats-server closes its
// connection (a second connection takes its client id over). The bench
// sees the close (closedBy) and finds every acknowledged request with its
// result in Kafka, and a request id never published as not in Kafka: what
// it reports for the acknowledged requests no answer reached. Waits are
// bounded; no timing is asserted.
func TestUnansweredFoundInKafka(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg := DefaultConfig()
	cfg.Ingress = IngressMQTT
	cfg.Durability = "os"
	sys, err := startSelfContained(ctx, &cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sys.stop() }()

	const n = 20
	var mu sync.Mutex
	acked := map[uint16]bool{}
	answers := 0
	dev, err := dialMQTT(sys.mqttAddr, "dev0", func(id uint16) {
		mu.Lock()
		acked[id] = true
		mu.Unlock()
	}, func(string, []byte) {
		mu.Lock()
		answers++
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.close()
	for i := 1; i <= n; i++ {
		if _, err := dev.publish("infergate/requests/demo/dev0", demo.AppendRequest(nil, strconv.Itoa(i), fixedReading)); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(ctx, t, "every PUBACK", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) == n
	})
	if dev.closedBy() != nil {
		t.Fatalf("connection closed before the takeover: %v", dev.closedBy())
	}
	taker, err := dialMQTT(sys.mqttAddr, "dev0", func(uint16) {}, func(string, []byte) {})
	if err != nil {
		t.Fatal(err)
	}
	defer taker.close()
	select {
	case <-dev.done:
	case <-ctx.Done():
		t.Fatal("nats-server did not close the taken-over connection")
	}
	if dev.closedBy() == nil {
		t.Fatal("closedBy: nil after nats-server closed the connection")
	}

	want := map[unansweredKey]bool{{device: "dev0", seq: 999}: false}
	for i := 1; i <= n; i++ {
		want[unansweredKey{device: "dev0", seq: int64(i)}] = true
	}
	var u *Unanswered
	waitUntil(ctx, t, "a result in Kafka for every acknowledged request", func() bool {
		u, err = classify(ctx, sys, want)
		if err != nil {
			t.Fatal(err)
		}
		return u.WithResult == n
	})
	if *u != (Unanswered{Checked: n + 1, OnClosedDevice: n, WithResult: n, NotInKafka: 1}) {
		t.Fatalf("classified %+v", *u)
	}
	mu.Lock()
	defer mu.Unlock()
	if answers != 0 {
		t.Fatalf("%d answers at a device that did not subscribe", answers)
	}
}

func waitUntil(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not within the test's bound", what)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
