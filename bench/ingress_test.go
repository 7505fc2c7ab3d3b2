package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"
)

// TestIngressRun runs `bench --ingress` over both protocols at a low rate
// and checks the accounting: every acknowledged publish answered at its
// device, each answer's stages read, the CPU sampled. No timing is
// asserted.
func TestIngressRun(t *testing.T) {
	for _, tc := range []struct{ name, proto, qos string }{
		{"mqtt", IngressMQTT, "1"}, {"mqtt-answer-qos0", IngressMQTT, "0"}, {"nats", IngressNATS, "1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			err := Main(ctx, []string{"--ingress", tc.proto, "--answer-qos", tc.qos, "--devices", "3", "--rate", "150",
				"--duration", "1s", "--warmup", "200ms", "--durability", "os", "--json", "--quiet"}, &stdout, &stderr)
			if err != nil {
				t.Fatalf("bench: %v\nstderr:\n%s\nstdout:\n%s", err, stderr.String(), stdout.String())
			}
			var rep IngressReport
			if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
				t.Fatalf("output: %v\n%s", err, stdout.String())
			}
			if rep.Acked == 0 || rep.Acked != rep.Sent || rep.Answered != rep.Acked || rep.Lost != 0 || rep.Latency.Count == 0 ||
				rep.StagePipeline.Count != rep.Latency.Count || rep.CPUSeconds <= 0 || rep.AnswerQoS != int(tc.qos[0]-'0') {
				t.Fatalf("report %+v", rep)
			}
		})
	}
}
