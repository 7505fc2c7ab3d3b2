package ingress

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/infergate/infergate/internal/testutil"
)

func hostPort(t *testing.T, addr string) (string, string) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return h, p
}

// An MQTT QoS 1 publish from mosquitto_pub lands in the requests topic
// keyed by the device with the ingress headers, and its result reaches the
// device's persistent QoS 1 session, which was offline when it was sent.
func TestMQTTQoS1RequestAndResultWithMosquitto(t *testing.T) {
	pub, sub := needTool(t, "mosquitto_pub"), needTool(t, "mosquitto_sub")
	brokers := newCluster(t)
	echoPipeline(t, brokers)
	h := startIngress(t, testConfig(t), brokers)
	host, port := hostPort(t, h.in.MQTTAddr())

	// Subscribe with a persistent session, then go away: the result must
	// wait for the device in JetStream.
	subArgs := []string{"-h", host, "-p", port, "-q", "1", "-c", "-i", "line1-sub", "-t", "infergate/results/+/line1"}
	run(t, sub, append(subArgs, "-E")...)

	run(t, pub, "-h", host, "-p", port, "-q", "1", "-i", "line1", "-t", "infergate/requests/demo/line1",
		"-m", `{"request_id":"r-1","features":[1,2,3]}`)

	recs := readTopic(t, brokers, reqTopic, func(rs []*kgo.Record) bool { return len(rs) >= 1 })
	r := recs[0]
	if string(r.Key) != "line1" || header(r, HeaderOrigin) != OriginMQTT || header(r, HeaderModel) != "demo" ||
		header(r, HeaderReply) != "infergate.results.demo.line1" || header(r, HeaderDevice) != "line1" {
		t.Fatalf("request record: key %q headers %v", r.Key, r.Headers)
	}

	out := run(t, sub, append(subArgs, "-C", "1", "-W", "30", "-v")...)
	if !strings.Contains(out, "infergate/results/demo/line1 ") || !strings.Contains(out, `"request_id":"r-1"`) ||
		!strings.Contains(out, `"prediction":[3]`) {
		t.Fatalf("mosquitto_sub got %q", out)
	}
	if n := len(readTopic(t, brokers, reqTopic, func([]*kgo.Record) bool { return true })); n != 1 {
		t.Fatalf("%d request records for one QoS 1 publish, want 1 (the core copy must not be moved too)", n)
	}
}

// A payload that is not JSON is dead-lettered and the device gets an error
// reply naming the class; a QoS 0 publish is moved too.
func TestMQTTBadPayloadGetsErrorReply(t *testing.T) {
	pub, sub := needTool(t, "mosquitto_pub"), needTool(t, "mosquitto_sub")
	brokers := newCluster(t)
	echoPipeline(t, brokers)
	h := startIngress(t, testConfig(t), brokers)
	host, port := hostPort(t, h.in.MQTTAddr())
	subArgs := []string{"-h", host, "-p", port, "-q", "1", "-c", "-i", "press7-sub", "-t", "infergate/results/+/press7"}
	run(t, sub, append(subArgs, "-E")...)
	run(t, pub, "-h", host, "-p", port, "-q", "0", "-t", "infergate/requests/demo/press7", "-m", `not json`)
	out := run(t, sub, append(subArgs, "-C", "1", "-W", "30")...)
	var reply struct {
		Error struct{ Class, Message string }
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &reply); err != nil || reply.Error.Class != "decode" {
		t.Fatalf("error reply %q (%v)", out, err)
	}
	readTopic(t, brokers, dlqTopic, func(rs []*kgo.Record) bool {
		return len(rs) == 1 && string(rs[0].Value) == "not json" && string(rs[0].Key) == "press7"
	})
}

// nats.go: a core request gets its result as the reply (nats req style);
// a JetStream publish into the inbox is acknowledged and its result goes to
// the device's results subject.
func TestNATSRequestReplyAndJetStream(t *testing.T) {
	brokers := newCluster(t)
	echoPipeline(t, brokers)
	h := startIngress(t, testConfig(t), brokers)
	nc, err := nats.Connect("nats://" + h.in.NATSAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	msg, err := nc.Request("infergate.requests.demo.cam2", []byte(`{"request_id":7,"features":[1,2]}`), 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(msg.Data); !strings.Contains(got, `"request_id":7`) || !strings.Contains(got, `"prediction":[2]`) {
		t.Fatalf("reply %s", got)
	}

	results, err := nc.SubscribeSync("infergate.results.*.cam3")
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ack, err := js.Publish(ctx, InboxPrefix+"infergate.requests.demo.cam3", []byte(`{"request_id":"j1","features":[5]}`))
	if err != nil {
		t.Fatal(err)
	}
	if ack.Stream != InboxStream {
		t.Fatalf("acked by stream %q", ack.Stream)
	}
	m, err := results.NextMsg(30 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != "infergate.results.demo.cam3" || !strings.Contains(string(m.Data), `"request_id":"j1"`) {
		t.Fatalf("result %s on %s", m.Data, m.Subject)
	}
	recs := readTopic(t, brokers, reqTopic, func(rs []*kgo.Record) bool { return len(rs) >= 2 })
	origins := map[string]string{}
	for _, r := range recs {
		origins[string(r.Key)] = header(r, HeaderOrigin) + " " + header(r, HeaderReply)
	}
	if origins["cam3"] != "nats infergate.results.demo.cam3" || !strings.HasPrefix(origins["cam2"], "nats _INBOX.") {
		t.Fatalf("origins and replies %v", origins)
	}
}

// Every JetStream publish into the inbox becomes exactly one request record
// (no failure here, so no redelivery) and is acknowledged in JetStream.
func TestInboxMovesEveryPublishOnce(t *testing.T) {
	brokers := newCluster(t)
	h := startIngress(t, testConfig(t), brokers)
	nc, err := nats.Connect("nats://" + h.in.NATSAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const n = 200
	for i := range n {
		if _, err := js.Publish(ctx, InboxPrefix+"infergate.requests.demo.d"+fmt.Sprint(i%5), fmt.Appendf(nil, `{"request_id":%d,"features":[1]}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	recs := readTopic(t, brokers, reqTopic, func(rs []*kgo.Record) bool { return len(rs) >= n })
	if len(recs) != n {
		t.Fatalf("%d records for %d publishes", len(recs), n)
	}
	// Every one was acknowledged in JetStream: nothing is left pending.
	testutil.WaitFor(t, 30*time.Second, "inbox consumer drained", func() bool {
		c, err := h.in.js.Consumer(ctx, InboxStream, "infergate-ingress")
		if err != nil {
			return false
		}
		ci, err := c.Info(ctx)
		return err == nil && ci.NumAckPending == 0 && ci.NumPending == 0
	})
}

// With AnswerQoS 0 an answer is a core message only: a device's QoS 1
// subscription receives it at QoS 0 (no JetStream copy); with the default
// 1 it arrives at QoS 1. mosquitto_sub prints the QoS of what it receives.
func TestAnswerQoS(t *testing.T) {
	pub, sub := needTool(t, "mosquitto_pub"), needTool(t, "mosquitto_sub")
	for _, qos := range []int{0, 1} {
		t.Run(fmt.Sprint("qos", qos), func(t *testing.T) {
			brokers := newCluster(t)
			echoPipeline(t, brokers)
			cfg := testConfig(t)
			cfg.AnswerQoS = qos
			h := startIngress(t, cfg, brokers)
			host, port := hostPort(t, h.in.MQTTAddr())
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			var out strings.Builder
			cmd := exec.CommandContext(ctx, sub, "-h", host, "-p", port, "-q", "1", "-i", "line2-sub",
				"-t", "infergate/results/+/line2", "-C", "1", "-W", "50", "-F", "%q %t %p")
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			testutil.WaitFor(t, 30*time.Second, "mosquitto_sub subscribed", func() bool {
				cz, err := h.in.srv.Connz(&server.ConnzOptions{Subscriptions: true})
				if err != nil {
					return false
				}
				for _, c := range cz.Conns {
					if slices.Contains(c.Subs, "infergate.results.*.line2") {
						return true
					}
				}
				return false
			})
			run(t, pub, "-h", host, "-p", port, "-q", "1", "-t", "infergate/requests/demo/line2",
				"-m", `{"request_id":"r-q","features":[1,2]}`)
			if err := cmd.Wait(); err != nil {
				t.Fatalf("mosquitto_sub: %v: %s", err, out.String())
			}
			want := fmt.Sprintf("%d infergate/results/demo/line2 ", qos)
			if !strings.HasPrefix(out.String(), want) || !strings.Contains(out.String(), `"prediction":[2]`) {
				t.Fatalf("mosquitto_sub printed %q, want it to start with %q", out.String(), want)
			}
		})
	}
}
