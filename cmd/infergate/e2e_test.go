package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/infergate/infergate/appliance"
	"github.com/infergate/infergate/inference/demo"
	"github.com/infergate/infergate/inference/onnxrt"
	"github.com/infergate/infergate/inference/tensor"
)

const (
	requestsTopic = "inference_requests"
	resultsTopic  = "inference_results"
	dlqTopic      = "inference_dlq"
)

type result struct {
	RequestID    string    `json:"request_id"`
	Model        string    `json:"model"`
	ModelVersion int64     `json:"model_version"`
	Prediction   []float64 `json:"prediction"`
}

// collect reads topic from the start with read_committed and counts
// records per request_id until done says so or the deadline passes.
func collect(t *testing.T, broker, topic string, timeout time.Duration, done func(map[string]int) bool) map[string]int {
	t.Helper()
	cl := client(t, broker, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	counts := map[string]int{}
	deadline := time.Now().Add(timeout)
	for !done(counts) {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %d distinct request ids in %s\n%s", timeout, len(counts), topic, brokerState(broker))
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) {
			var res result
			if err := json.Unmarshal(r.Value, &res); err != nil {
				t.Errorf("%s record is not JSON: %s", topic, r.Value)
				return
			}
			counts[res.RequestID]++
		})
	}
	return counts
}

// brokerState says, for a failure message, where each partition of the
// requests and results topics ends (high watermark) and is stable (last
// stable offset: what a read_committed reader can reach), and the pipeline
// group's committed offsets.
func brokerState(broker string) string {
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker))
	if err != nil {
		return err.Error()
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var b strings.Builder
	for _, topic := range []string{requestsTopic, resultsTopic} {
		hwm, err1 := adm.ListEndOffsets(ctx, topic)
		lso, err2 := adm.ListCommittedOffsets(ctx, topic)
		if err := errors.Join(err1, err2); err != nil {
			fmt.Fprintf(&b, "%s: %v\n", topic, err)
			continue
		}
		hwm.Each(func(o kadm.ListedOffset) {
			l, _ := lso.Lookup(topic, o.Partition)
			fmt.Fprintf(&b, "%s-%d: high watermark %d, last stable %d\n", topic, o.Partition, o.Offset, l.Offset)
		})
	}
	if offs, err := adm.FetchOffsets(ctx, "infergate"); err != nil {
		fmt.Fprintf(&b, "group infergate: %v\n", err)
	} else {
		offs.Each(func(o kadm.OffsetResponse) {
			fmt.Fprintf(&b, "group infergate committed %s-%d: %d\n", o.Topic, o.Partition, o.At)
		})
	}
	return b.String()
}

// untilIdle reads topic from the start until no record arrived for a while:
// used after all expected records were seen, to catch duplicates.
func untilIdle(t *testing.T, broker, topic string) map[string]int {
	t.Helper()
	var last time.Time
	seen := -1
	return collect(t, broker, topic, 2*time.Minute, func(c map[string]int) bool {
		n := 0
		for _, v := range c {
			n += v
		}
		if n != seen {
			seen, last = n, time.Now()
		}
		return time.Since(last) > 3*time.Second
	})
}

func hasAll(ids []string) func(map[string]int) bool {
	return func(c map[string]int) bool {
		for _, id := range ids {
			if c[id] == 0 {
				return false
			}
		}
		return true
	}
}

// TestE2ERequestsInResultsOut: `infergate produce` in, `infergate consume`
// out, predictions equal to the demo model's; a bad request goes to the DLQ
// and the store; a clean restart keeps topics, DLQ records and committed
// offsets (nothing is processed twice).
func TestE2ERequestsInResultsOut(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	port := freePort(t)
	a := startAppliance(t, dataDir, port)

	model, err := onnxrt.Load(demo.ONNX)
	if err != nil {
		t.Fatal(err)
	}
	gen := demo.NewGenerator(7)
	const n = 200
	var lines strings.Builder
	want := map[string]float64{}
	for i := range n {
		features, _ := gen.Reading()
		id := fmt.Sprintf("r-%d", i)
		line, _ := json.Marshal(map[string]any{"request_id": id, "features": features})
		lines.Write(line)
		lines.WriteByte('\n')
		in, _ := tensor.New(tensor.Float, 1, demo.Channels)
		copy(in.Float32s(), features)
		out, err := model.Run(map[string]*tensor.Tensor{demo.InputName: in}, []string{demo.OutputName})
		if err != nil {
			t.Fatal(err)
		}
		want[id] = float64(out[demo.OutputName].Float32s()[0])
	}
	// One request with the wrong number of features: validation class.
	lines.WriteString(`{"request_id":"bad-shape","features":[1,2,3]}` + "\n")

	// --no-validate: produce would refuse the bad one.
	_, stderr, code := infergate(t, lines.String(), "produce", "--brokers", a.broker, "--key-field", "request_id", "--no-validate")
	if code != 0 || !strings.Contains(stderr, "produced 201 of 201 records") {
		t.Fatalf("produce: exit %d: %s", code, stderr)
	}
	stdout, stderr, code := infergate(t, "", "consume", "--brokers", a.broker, "--from-beginning", "-n", strconv.Itoa(n))
	if code != 0 {
		t.Fatalf("consume: exit %d: %s", code, stderr)
	}
	got := map[string]result{}
	for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
		var r result
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("result %q: %v", line, err)
		}
		got[r.RequestID] = r
	}
	for id, score := range want {
		r, ok := got[id]
		if !ok {
			t.Errorf("no result for %s", id)
			continue
		}
		if r.Model != "demo" || r.ModelVersion != 1 || len(r.Prediction) != 1 || math.Abs(r.Prediction[0]-score) > 1e-5 {
			t.Errorf("%s: got %+v, want prediction [%g]", id, r, score)
		}
	}

	// The bad request is in the DLQ topic with the headers docs/pipeline.md lists.
	dlq := client(t, a.broker, kgo.ConsumeTopics(dlqTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var dead *kgo.Record
	for dead == nil && ctx.Err() == nil {
		dlq.PollFetches(ctx).EachRecord(func(r *kgo.Record) { dead = r })
	}
	if dead == nil {
		t.Fatal("no DLQ record")
	}
	headers := map[string]string{}
	for _, h := range dead.Headers {
		headers[h.Key] = string(h.Value)
	}
	if headers["error.class"] != "validation" || string(dead.Key) != "bad-shape" {
		t.Errorf("DLQ record: key %q headers %v", dead.Key, headers)
	}
	for _, h := range []string{"error.message", "source.topic", "source.partition", "source.offset", "attempts", "failed.at"} {
		if headers[h] == "" {
			t.Errorf("DLQ record lacks header %s: %v", h, headers)
		}
	}

	// While it runs, the CLI goes through the admin API (the store is
	// locked), and /readyz says ready.
	for deadline := time.Now().Add(30 * time.Second); ; {
		stdout, stderr, code = infergate(t, "", "dlq", "list", "--data-dir", dataDir, "--json")
		if code == 0 && strings.Contains(stdout, `"class":"validation"`) && strings.Contains(stdout, "bad-shape") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dlq list (admin API): exit %d\n%s\n%s", code, stdout, stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	adminURL, err := appliance.ReadAdminURL(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(adminURL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/readyz: %s", resp.Status)
	}

	// Committed offsets before a clean stop.
	adm := kadm.NewClient(client(t, a.broker))
	var before kadm.OffsetResponses
	deadline := time.Now().Add(time.Minute)
	for {
		before, err = adm.FetchOffsets(context.Background(), "infergate")
		if err == nil && sumOffsets(before) == n+1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("committed offsets %d, want %d (err %v)", sumOffsets(before), n+1, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	a.stop()

	// Stopped: the DLQ is read from the store directly, and a replay goes
	// to the requests topic through the data dir's broker.
	stdout, stderr, code = infergate(t, "", "dlq", "list", "--data-dir", dataDir, "--json")
	var listed struct {
		ID    string `json:"id"`
		Class string `json:"class"`
		Key   string `json:"key"`
	}
	if code != 0 || json.Unmarshal([]byte(stdout), &listed) != nil || listed.Class != "validation" || listed.Key != "bad-shape" {
		t.Fatalf("dlq list (store): exit %d\n%s\n%s", code, stdout, stderr)
	}
	stdout, stderr, code = infergate(t, "", "dlq", "show", listed.ID, "--data-dir", dataDir)
	if code != 0 || !strings.Contains(stdout, `"source_topic": "inference_requests"`) || !strings.Contains(stdout, `bad-shape`) {
		t.Fatalf("dlq show: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if _, stderr, code = infergate(t, "", "dlq", "replay", listed.ID, "--data-dir", dataDir); code != 0 || !strings.Contains(stderr, "replayed 1 records") {
		t.Fatalf("dlq replay: exit %d\n%s", code, stderr)
	}

	// Restart: same topics and committed offsets; only the replayed
	// request is consumed (and dead-lettered again), nothing is processed
	// twice.
	a = startAppliance(t, dataDir, port)
	adm = kadm.NewClient(client(t, a.broker))
	topics, err := adm.ListTopics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{requestsTopic, resultsTopic, dlqTopic} {
		if len(topics[name].Partitions) != 3 {
			t.Errorf("after restart topic %s has %d partitions", name, len(topics[name].Partitions))
		}
	}
	endSum := func(topic string) int64 {
		ends, err := adm.ListEndOffsets(context.Background(), topic)
		if err != nil {
			t.Fatal(err)
		}
		total := int64(0)
		ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
		return total
	}
	deadline = time.Now().Add(time.Minute)
	for {
		after, err := adm.FetchOffsets(context.Background(), "infergate")
		if err == nil && sumOffsets(after) == n+2 && endSum(dlqTopic) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after restart: committed %d (want %d), DLQ records %d (want 2)", sumOffsets(after), n+2, endSum(dlqTopic))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := endSum(resultsTopic); got != n {
		t.Errorf("results topic has %d records after restart, want %d", got, n)
	}
	a.stop()
}

func sumOffsets(r kadm.OffsetResponses) int64 {
	var n int64
	r.Each(func(o kadm.OffsetResponse) {
		if o.Err == nil && o.At > 0 {
			n += o.At
		}
	})
	return n
}

// producer keeps producing requests r-<phase>-<i> and remembers which ones
// the broker acknowledged: those, and only those, must get results.
type producer struct {
	cl    *kgo.Client
	mu    sync.Mutex
	acked []string
	stop  chan struct{}
	done  chan struct{}
}

func startProducer(t *testing.T, broker, phase string, limit int) *producer {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker), kgo.DefaultProduceTopic(requestsTopic))
	if err != nil {
		t.Fatal(err)
	}
	p := &producer{cl: cl, stop: make(chan struct{}), done: make(chan struct{})}
	gen := demo.NewGenerator(int64(len(phase)))
	go func() {
		defer close(p.done)
		for i := 0; i < limit; i += 20 {
			select {
			case <-p.stop:
				return
			default:
			}
			var recs []*kgo.Record
			for j := i; j < i+20 && j < limit; j++ {
				features, _ := gen.Reading()
				id := fmt.Sprintf("r-%s-%d", phase, j)
				v, _ := json.Marshal(map[string]any{"request_id": id, "features": features})
				recs = append(recs, &kgo.Record{Key: []byte(strconv.Itoa(j % 10)), Value: v})
			}
			failed := false
			for _, res := range cl.ProduceSync(context.Background(), recs...) {
				if res.Err != nil {
					failed = true
					continue
				}
				var m map[string]any
				_ = json.Unmarshal(res.Record.Value, &m)
				p.mu.Lock()
				p.acked = append(p.acked, m["request_id"].(string))
				p.mu.Unlock()
			}
			if failed {
				return // the broker is gone
			}
			time.Sleep(2 * time.Millisecond) // a stream, not one burst
		}
	}()
	return p
}

// finish stops producing. After a kill the client would wait for the
// broker forever; closing it fails what was not acknowledged.
func (p *producer) finish() []string {
	close(p.stop)
	p.cl.Close()
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.acked...)
}

// killMidStream: produce, SIGKILL the appliance while results flow,
// restart it on the same data dir, produce more, and return every request
// id the broker acknowledged and the results seen.
func killMidStream(t *testing.T, extra ...string) (acked []string, counts map[string]int, a *proc) {
	dataDir := filepath.Join(t.TempDir(), "data")
	port := freePort(t)
	a = startAppliance(t, dataDir, port, extra...)
	p := startProducer(t, a.broker, "1", 100000)
	collect(t, a.broker, resultsTopic, 2*time.Minute, func(c map[string]int) bool { return len(c) >= 500 })
	a.kill()
	acked = p.finish()
	if len(acked) < 500 {
		t.Fatalf("only %d requests acknowledged before the kill", len(acked))
	}
	t.Logf("killed after %d acknowledged requests", len(acked))

	a = startAppliance(t, dataDir, port, extra...)
	p = startProducer(t, a.broker, "2", 500)
	<-p.done
	acked = append(acked, p.finish()...)
	counts = collect(t, a.broker, resultsTopic, 3*time.Minute, hasAll(acked))
	return acked, counts, a
}

// TestE2ESIGKILLAtLeastOnce: every request the broker acknowledged has a
// result after a SIGKILL and restart; duplicates are allowed.
func TestE2ESIGKILLAtLeastOnce(t *testing.T) {
	acked, counts, _ := killMidStream(t)
	dups := 0
	for _, id := range acked {
		if counts[id] > 1 {
			dups++
		}
	}
	t.Logf("%d requests, all with results; %d delivered more than once (allowed at-least-once)", len(acked), dups)
}

// TestE2ESIGKILLExactlyOnce: in exactly-once mode a read_committed
// consumer sees each result exactly once across the SIGKILL.
func TestE2ESIGKILLExactlyOnce(t *testing.T) {
	acked, _, a := killMidStream(t, "--delivery", "exactly-once")
	counts := untilIdle(t, a.broker, resultsTopic)
	ackedSet := map[string]bool{}
	for _, id := range acked {
		ackedSet[id] = true
		if counts[id] != 1 {
			t.Errorf("request %s: %d results, want exactly 1", id, counts[id])
		}
	}
	for id, c := range counts {
		if !ackedSet[id] {
			// Produced but not acknowledged before the kill: may or may
			// not have made it, but never twice.
			if c > 1 {
				t.Errorf("request %s (not acknowledged) has %d results", id, c)
			}
		}
	}
	t.Logf("%d acknowledged requests, each with exactly one committed result", len(acked))
}

// TestE2EKcat: Debian's kcat produces requests and reads results.
func TestE2EKcat(t *testing.T) {
	kcat := needTool(t, "kcat")
	a := startAppliance(t, filepath.Join(t.TempDir(), "data"), freePort(t))
	var in strings.Builder
	for i := range 20 {
		fmt.Fprintf(&in, "k%d:{\"request_id\":\"kcat-%d\",\"features\":[%s]}\n", i, i, strings.TrimSuffix(strings.Repeat("0.1,", 16), ","))
	}
	cmd := exec.Command(kcat, "-P", "-b", a.broker, "-t", requestsTopic, "-K", ":", "-z", "lz4")
	cmd.Stdin = strings.NewReader(in.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kcat -P: %v\n%s", err, out)
	}
	cmd = exec.Command(kcat, "-C", "-b", a.broker, "-t", resultsTopic, "-o", "beginning", "-c", "20", "-e", "-q",
		"-f", "%k\t%s\n", "-X", "isolation.level=read_committed")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out []byte
	// -e exits at the end of the partitions: retry until the results are there.
	for {
		c := exec.CommandContext(ctx, cmd.Path, cmd.Args[1:]...)
		var err error
		out, err = c.Output()
		if err != nil {
			t.Fatalf("kcat -C: %v", err)
		}
		if strings.Count(string(out), "\n") >= 20 || ctx.Err() != nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	for i := range 20 {
		want := fmt.Sprintf("k%d\t{\"request_id\":\"kcat-%d\"", i, i)
		if !strings.Contains(string(out), want) {
			t.Errorf("kcat output lacks %q:\n%s", want, out)
		}
	}
}

// TestE2EPythonKafka: Debian's python3-kafka reads the results.
func TestE2EPythonKafka(t *testing.T) {
	// Debian's python3-kafka is installed for Debian's python3; a python3
	// earlier on PATH (pyenv, venv) would not see it.
	python := "/usr/bin/python3"
	if _, err := os.Stat(python); err != nil {
		python = needTool(t, "python3")
	}
	if err := exec.Command(python, "-c", "import kafka").Run(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("python3-kafka is not installed (.ci/run installs it)")
		}
		t.Skip("python3-kafka is not installed")
	}
	a := startAppliance(t, filepath.Join(t.TempDir(), "data"), freePort(t))
	var in strings.Builder
	for i := range 30 {
		fmt.Fprintf(&in, "{\"request_id\":\"py-%d\",\"features\":[%s]}\n", i, strings.TrimSuffix(strings.Repeat("0.2,", 16), ","))
	}
	if _, stderr, code := infergate(t, in.String(), "produce", "--brokers", a.broker); code != 0 {
		t.Fatalf("produce: %s", stderr)
	}
	script := `
import json, sys
from kafka import KafkaConsumer
c = KafkaConsumer(sys.argv[2], bootstrap_servers=[sys.argv[1]], group_id="python-e2e",
                  auto_offset_reset="earliest", consumer_timeout_ms=60000, api_version=(2, 5, 0))
ids = set()
for m in c:
    r = json.loads(m.value)
    assert 0.0 <= r["prediction"][0] <= 1.0, r
    ids.add(r["request_id"])
    if len(ids) == int(sys.argv[3]):
        break
c.commit()
c.close()
print(json.dumps(sorted(ids)))
`
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, python, "-c", script, a.broker, resultsTopic, "30").CombinedOutput()
	if err != nil {
		t.Fatalf("python3-kafka consumer: %v\n%s", err, out)
	}
	var ids []string
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &ids); err != nil || len(ids) != 30 {
		t.Fatalf("python3-kafka read %d ids (%v):\n%s", len(ids), err, out)
	}
}

// TestE2EConfigErrors: mistakes give a message naming the setting and a
// non-zero exit, before anything starts.
func TestE2EConfigErrors(t *testing.T) {
	busy, err := netListen()
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(t.TempDir(), "data")
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"bad value", []string{"--topic-partitions", "0"}, exitUsage, "topics.partitions (--topic-partitions, INFERGATE_TOPICS_PARTITIONS): 0 is not between 1 and 10000"},
		{"bad flag value", []string{"--max-batch-wait", "soon"}, exitUsage, `pipeline.max_batch_wait: flag --max-batch-wait: "soon" is not a duration`},
		{"unknown flag", []string{"--no-such-thing"}, exitUsage, "flag provided but not defined: -no-such-thing"},
		{"port in use", []string{"--grpc-listen", busy.Addr().String()}, exitFailure,
			"model_server.grpc_listen (--grpc-listen, INFERGATE_MODEL_SERVER_GRPC_LISTEN): " + busy.Addr().String() + " is already in use"},
		{"unusable data dir", []string{"--data-dir", filepath.Join(file, "data")}, exitFailure, "data_dir (--data-dir, INFERGATE_DATA_DIR): cannot create"},
		{"unknown model", []string{"--default-model", "nope"}, exitFailure, `pipeline.default_model (--default-model, INFERGATE_PIPELINE_DEFAULT_MODEL): model "nope" is not in the model repository`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(applianceArgs(dataDir, 0), tc.args...)
			_, stderr, code := infergate(t, "", args...)
			if code != tc.code || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d (want %d), stderr:\n%s\nwant it to contain %q", code, tc.code, tail(stderr, 10), tc.want)
			}
		})
	}
}

// TestE2EProduceRejectsBadLines: every line is checked before the first is
// sent, so a bad line 3 leaves nothing sent (a rerun of the fixed file does
// not duplicate lines 1-2); --no-validate sends them as they are.
func TestE2EProduceRejectsBadLines(t *testing.T) {
	a := startAppliance(t, filepath.Join(t.TempDir(), "data"), freePort(t))
	in := "{\"request_id\":\"ok-1\",\"features\":[]}\n\n{not json}\n{\"request_id\":\"ok-2\"}\n"
	_, stderr, code := infergate(t, in, "produce", "--brokers", a.broker, "--topic", "scratch", "--no-validate")
	if code != exitFailure || !strings.Contains(stderr, "topic scratch does not exist on the broker at "+a.broker) {
		t.Fatalf("missing topic: exit %d:\n%s", code, stderr)
	}
	if _, err := kadm.NewClient(client(t, a.broker)).CreateTopic(context.Background(), 1, -1, nil, "scratch"); err != nil {
		t.Fatal(err)
	}
	_, stderr, code = infergate(t, in, "produce", "--brokers", a.broker, "--topic", "scratch")
	if code != exitUsage || !strings.Contains(stderr, "stdin line 3: not valid JSON") || !strings.Contains(stderr, "nothing was sent: 1 of 3 lines are invalid") {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
	_, stderr, code = infergate(t, in, "produce", "--brokers", a.broker, "--topic", "scratch", "--no-validate")
	if code != 0 || !strings.Contains(stderr, "produced 3 of 3 records to scratch") {
		t.Fatalf("--no-validate: exit %d:\n%s", code, stderr)
	}
	_, stderr, code = infergate(t, "{\"id\":[1]}\n", "produce", "--brokers", a.broker, "--topic", "scratch", "--key-field", "id")
	if code != exitUsage || !strings.Contains(stderr, "stdin line 1: --key-field id: value [1] is not a string or number") {
		t.Fatalf("--key-field: exit %d:\n%s", code, stderr)
	}
	stdout, _, code := infergate(t, "", "consume", "--brokers", a.broker, "--topic", "scratch", "--from-beginning", "-n", "3", "--print-key")
	if code != 0 || strings.Count(stdout, "\n") != 3 || !strings.Contains(stdout, "\t{not json}") {
		t.Fatalf("consume: exit %d:\n%s", code, stdout)
	}
}

// TestE2EVersionAndHelp: the commands that need nothing running.
func TestE2EVersionAndHelp(t *testing.T) {
	stdout, _, code := infergate(t, "", "version")
	if code != 0 || !strings.HasPrefix(stdout, "infergate ") || !strings.Contains(stdout, "go1.") {
		t.Errorf("version: exit %d: %s", code, stdout)
	}
	stdout, _, code = infergate(t, "", "version", "--notices")
	if code != 0 || !strings.HasPrefix(stdout, "THIRD-PARTY NOTICES FOR INFERGATE\n") || !strings.Contains(stdout, "Apache License") {
		t.Errorf("version --notices: exit %d: %.300s", code, stdout)
	}
	stdout, _, code = infergate(t, "", "run", "--help")
	if code != 0 || !strings.Contains(stdout, "--broker-listen ADDR") || !strings.Contains(stdout, "config broker.listen, env INFERGATE_BROKER_LISTEN") {
		t.Errorf("run --help: exit %d: %s", code, tail(stdout, 5))
	}
	_, stderr, code := infergate(t, "", "no-such-command")
	if code != exitUsage || !strings.Contains(stderr, `unknown command "no-such-command"`) || !strings.Contains(stderr, "produce") {
		t.Errorf("unknown command: exit %d: %s", code, stderr)
	}
	_, stderr, code = infergate(t, "", "dlq", "frobnicate")
	if code != exitUsage || !strings.Contains(stderr, `unknown subcommand "frobnicate"`) {
		t.Errorf("dlq frobnicate: exit %d: %s", code, stderr)
	}
}
