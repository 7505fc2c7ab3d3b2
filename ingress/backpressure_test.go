package ingress

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/infergate/infergate/internal/testutil"
)

// While Kafka acknowledges nothing, devices' QoS 1 publishes are still
// acknowledged (they are in the durable inbox, on disk) and the ingress
// holds at most MaxAckPending of them on their way to Kafka — the rest wait
// in the inbox, not in memory. When Kafka answers again every one of them
// reaches the requests topic.
func TestBackPressureWhileKafkaStalls(t *testing.T) {
	pub := needTool(t, "mosquitto_pub")
	cluster := testutil.Cluster(t, 3, []string{reqTopic, resTopic, dlqTopic})
	var stalled atomic.Bool
	stalled.Store(true)
	cluster.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		if !stalled.Load() {
			return nil, nil, false
		}
		// A retriable error for every partition: the producer keeps
		// retrying and nothing is acknowledged.
		r := req.(*kmsg.ProduceRequest)
		resp := r.ResponseKind().(*kmsg.ProduceResponse)
		for _, tp := range r.Topics {
			rt := kmsg.NewProduceResponseTopic()
			rt.Topic = tp.Topic
			for _, p := range tp.Partitions {
				rp := kmsg.NewProduceResponseTopicPartition()
				rp.Partition, rp.ErrorCode = p.Partition, kerr.NotEnoughReplicas.Code
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return resp, nil, true
	})
	brokers := cluster.ListenAddrs()
	cfg := testConfig(t)
	cfg.MaxAckPending = 16
	h := startIngress(t, cfg, brokers)
	host, port := hostPort(t, h.in.MQTTAddr())

	const n = 200
	var lines strings.Builder
	for i := range n {
		fmt.Fprintf(&lines, `{"request_id":"bp-%d","features":[1]}`+"\n", i)
	}
	// -l publishes each line of stdin; mosquitto_pub exits 0 once every
	// QoS 1 publish got its PUBACK.
	cmd := exec.Command(pub, "-h", host, "-p", port, "-q", "1", "-i", "press9", "-t", "infergate/requests/demo/press9", "-l")
	cmd.Stdin = strings.NewReader(lines.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub while Kafka stalls: %v %s", err, out)
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		st := h.in.Status(context.Background())
		if st.AckPending != cfg.MaxAckPending || st.InboxPending != n-uint64(cfg.MaxAckPending) {
			return fmt.Errorf("%d on their way to Kafka, %d in the inbox; want %d and %d", st.AckPending, st.InboxPending, cfg.MaxAckPending, n-cfg.MaxAckPending)
		}
		return nil
	})
	// It stays there: the inbox does not deliver past the bound.
	for range 5 {
		if st := h.in.Status(context.Background()); st.AckPending > cfg.MaxAckPending {
			t.Fatalf("%d requests on their way to Kafka, bound %d", st.AckPending, cfg.MaxAckPending)
		}
		time.Sleep(100 * time.Millisecond)
	}

	stalled.Store(false)
	readTopic(t, brokers, reqTopic, func(rs []*kgo.Record) bool {
		ids := map[string]bool{}
		for _, r := range rs {
			ids[string(r.Value)] = true
		}
		return len(ids) == n
	})
	testutil.Eventually(t, 30*time.Second, func() error {
		if st := h.in.Status(context.Background()); st.AckPending != 0 || st.InboxPending != 0 {
			return fmt.Errorf("%d on their way, %d in the inbox after Kafka recovered", st.AckPending, st.InboxPending)
		}
		return nil
	})
}
