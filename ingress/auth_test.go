package ingress

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/infergate/infergate/internal/testutil"
)

func authConfig(t *testing.T) Config {
	cfg := testConfig(t)
	cfg.Auth = AuthConfig{
		Devices:   []Device{{Name: "line1", Password: "s3cret-1"}, {Name: "line2", Password: "s3cret-2"}},
		Observers: []Device{{Name: "scada", Password: "s3cret-3"}},
	}
	return cfg
}

// A device may publish only its own requests and read only its own
// results; wrong credentials and anonymous clients are refused.
func TestMQTTDevicePermissions(t *testing.T) {
	pub, sub := needTool(t, "mosquitto_pub"), needTool(t, "mosquitto_sub")
	brokers := newCluster(t)
	echoPipeline(t, brokers)
	h := startIngress(t, authConfig(t), brokers)
	host, port := hostPort(t, h.in.MQTTAddr())
	as := func(user, pass string) []string { return []string{"-h", host, "-p", port, "-u", user, "-P", pass} }

	// Wrong password, no credentials: refused at CONNECT.
	for _, args := range [][]string{as("line1", "wrong"), {"-h", host, "-p", port}} {
		cmd := exec.Command(pub, append(args, "-q", "1", "-t", "infergate/requests/demo/line1", "-m", "{}")...)
		if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(strings.ToLower(string(out)), "not authori") {
			t.Fatalf("mosquitto_pub %v: %v %s, want a refused connection", args, err, out)
		}
	}
	// line1 may not read line2's results: the subscription is denied.
	cmd := exec.Command(sub, append(as("line1", "s3cret-1"), "-q", "1", "-t", "infergate/results/+/line2", "-E")...)
	if out, _ := cmd.CombinedOutput(); !strings.Contains(string(out), "denied") {
		t.Fatalf("line1 subscribing to line2's results: %q, want the subscription denied", out)
	}

	// An observer may read every answer: "#" also covers the results level
	// itself, which must be allowed too or the whole subscription fails.
	cmd = exec.Command(sub, "-h", host, "-p", port, "-u", "scada", "-P", "s3cret-3", "-q", "1", "-t", "infergate/results/#", "-E")
	if out, err := cmd.CombinedOutput(); err != nil || strings.Contains(string(out), "denied") {
		t.Fatalf("observer subscribing to infergate/results/#: %v %q", err, out)
	}

	// line1 publishing as line2 is dropped; its own request goes through.
	run(t, pub, append(as("line1", "s3cret-1"), "-q", "1", "-t", "infergate/requests/demo/line2", "-m", `{"request_id":"forged"}`)...)
	run(t, pub, append(as("line1", "s3cret-1"), "-q", "1", "-t", "infergate/requests/demo/line1", "-m", `{"request_id":"own"}`)...)
	recs := readTopic(t, brokers, reqTopic, func(rs []*kgo.Record) bool { return len(rs) >= 1 })
	// Both were published on one connection in this order, so once "own"
	// is in Kafka a forged request that passed would be there too (the
	// topic has several partitions: readTopic polls all of them).
	for _, r := range recs {
		if strings.Contains(string(r.Value), "forged") {
			t.Fatalf("a request published by line1 on line2's topic reached Kafka: %s", r.Value)
		}
	}
	if h.in.auth.refused.Load() < 2 {
		t.Fatalf("refused connections counted: %d", h.in.auth.refused.Load())
	}
	// The dashboard's recent rejects name each of them, and never the
	// wrong password.
	testutil.Eventually(t, 30*time.Second, func() error {
		var seen []string
		for _, r := range h.in.Status(context.Background()).Rejects {
			if strings.Contains(r.Client+r.Detail, "wrong") {
				t.Fatalf("a reject shows the password: %+v", r)
			}
			seen = append(seen, r.Reason+" "+r.Client+" "+r.Detail)
		}
		all := strings.Join(seen, "\n")
		for _, want := range []string{"credentials line1 ", "credentials (no name) ",
			"Subscription Violation", "Publish Violation - Subject \"infergate.requests.demo.line2\""} {
			if !strings.Contains(all, want) {
				return fmt.Errorf("no reject %q in:\n%s", want, all)
			}
		}
		return nil
	})
}

// Over NATS the same rules hold: a forbidden publish is a permissions
// violation, an observer reads every result and publishes nothing.
func TestNATSDevicePermissions(t *testing.T) {
	brokers := newCluster(t)
	echoPipeline(t, brokers)
	h := startIngress(t, authConfig(t), brokers)
	url := "nats://" + h.in.NATSAddr()

	if _, err := nats.Connect(url, nats.UserInfo("line2", "nope")); err == nil {
		t.Fatal("connected with a wrong password")
	}
	violations := make(chan error, 4)
	nc, err := nats.Connect(url, nats.UserInfo("line2", "s3cret-2"),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { violations <- err }))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	obs, err := nats.Connect(url, nats.Token("scada:s3cret-3"))
	if err != nil {
		t.Fatal(err)
	}
	defer obs.Close()
	all, err := obs.SubscribeSync(ResultsPrefix + ">")
	if err != nil {
		t.Fatal(err)
	}
	if err := obs.Flush(); err != nil {
		t.Fatal(err)
	}

	if err := nc.Publish("infergate.requests.demo.line1", []byte(`{"request_id":"forged"}`)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-violations:
		if !errors.Is(err, nats.ErrPermissionViolation) {
			t.Fatalf("async error %v, want a permissions violation", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no permissions violation for publishing as another device")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	reply, err := nc.RequestWithContext(ctx, "infergate.requests.demo.line2", []byte(`{"request_id":"ok","features":[1]}`))
	if err != nil || !strings.Contains(string(reply.Data), `"request_id":"ok"`) {
		t.Fatalf("own request: %v %s", err, reply.Data)
	}
	// The observer sees answers published on results subjects.
	if err := nc.Publish(InboxPrefix+"infergate.requests.demo.line2", []byte(`{"request_id":"js","features":[1]}`)); err != nil {
		t.Fatal(err)
	}
	m, err := all.NextMsg(30 * time.Second)
	if err != nil || m.Subject != "infergate.results.demo.line2" {
		t.Fatalf("observer: %v %v", err, m)
	}
	if err := obs.Publish("infergate.requests.demo.line1", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	for _, r := range readTopic(t, brokers, reqTopic, func(rs []*kgo.Record) bool { return len(rs) >= 2 }) {
		if strings.Contains(string(r.Value), "forged") || string(r.Value) == "{}" {
			t.Fatalf("a forbidden publish reached Kafka: %s", r.Value)
		}
	}
}
