package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
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

// TestIngressKafkaLoad runs devices beside requests produced straight to
// Kafka: the devices' accounting is unchanged and the bulk requests are
// produced. No timing is asserted.
func TestIngressKafkaLoad(t *testing.T) {
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := Main(ctx, []string{"--ingress", "mqtt", "--devices", "2", "--rate", "100", "--kafka-load", "500",
		"--duration", "1s", "--warmup", "200ms", "--durability", "os", "--json", "--quiet"}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("bench: %v\nstderr:\n%s\nstdout:\n%s", err, stderr.String(), stdout.String())
	}
	var rep IngressReport
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("output: %v\n%s", err, stdout.String())
	}
	if rep.Acked == 0 || rep.Answered != rep.Acked || rep.Lost != 0 || rep.KafkaLoad != 500 ||
		rep.KafkaLoadProduced < 500 || rep.KafkaLoadFailed != 0 {
		t.Fatalf("report %+v", rep)
	}
}

// TestIngressNATSOnly runs the ceiling measurement (--nats-only) with both
// relays and answer QoS: every acknowledged publish answered by the relay
// at its device, and the profiles written. No timing is asserted.
func TestIngressNATSOnly(t *testing.T) {
	for _, tc := range []struct{ relay, qos string }{
		{RelayJetStream, "1"}, {RelayJetStream, "0"}, {RelayMQTT, "1"}, {RelayMQTT, "0"},
	} {
		t.Run(tc.relay+"-answer-qos"+tc.qos, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			dir := t.TempDir()
			err := Main(ctx, []string{"--ingress", "mqtt", "--nats-only", tc.relay, "--answer-qos", tc.qos, "--devices", "3",
				"--rate", "150", "--duration", "1s", "--warmup", "200ms", "--json", "--quiet",
				"--mutexprofile", filepath.Join(dir, "mutex"), "--blockprofile", filepath.Join(dir, "block")}, &stdout, &stderr)
			if err != nil {
				t.Fatalf("bench: %v\nstderr:\n%s\nstdout:\n%s", err, stderr.String(), stdout.String())
			}
			var rep IngressReport
			if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
				t.Fatalf("output: %v\n%s", err, stdout.String())
			}
			if rep.NATSOnly != tc.relay || rep.Acked == 0 || rep.Acked != rep.Sent || rep.Answered != rep.Acked ||
				rep.Lost != 0 || rep.Latency.Count == 0 || rep.AnswerQoS != int(tc.qos[0]-'0') {
				t.Fatalf("report %+v", rep)
			}
			for _, p := range []string{"mutex", "block"} {
				if fi, err := os.Stat(filepath.Join(dir, p)); err != nil || fi.Size() == 0 {
					t.Fatalf("--%sprofile: %v", p, err)
				}
			}
		})
	}
	var stderr bytes.Buffer
	err := Main(context.Background(), []string{"--ingress", "nats", "--nats-only", "js"}, io.Discard, &stderr)
	var ue *UsageError
	if !errors.As(err, &ue) {
		t.Fatalf("--ingress nats --nats-only js: %v, want a usage error", err)
	}
}
