package broker

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// needTool finds a tool the test needs. Without it the test is skipped on a
// developer machine, but fails in CI (CI set), where .ci/run installs it.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		missing(t, fmt.Sprintf("%s not found (Debian package kcat)", name))
	}
	return p
}

func missing(t *testing.T, what string) {
	t.Helper()
	if os.Getenv("CI") == "" {
		t.Skip(what)
	}
	t.Fatal(what)
}

// TestKcat: librdkafka's kcat produces compressed records that our client
// consumes, and consumes (in a consumer group) records our client produced
// with the default compression.
func TestKcat(t *testing.T) {
	kcat := needTool(t, "kcat")
	e := startEmbedded(t, t.TempDir(), DurabilityOS)
	adm := newAdmin(t, e.Addr())
	codecs := []struct {
		name  string
		codec []int16 // what may be stored
	}{
		// kcat 1.7.1 (librdkafka 2.0.2) derives gzip, snappy and lz4
		// support from Produce v2, which kfake (like Kafka 4) no longer
		// offers, so it sends those batches uncompressed ("Broker does not
		// support compression type lz4: not compressing batch"); zstd it
		// does compress. Either way the records must arrive intact.
		{"lz4", []int16{0, 3}},
		{"gzip", []int16{0, 1}},
		{"zstd", []int16{4}},
	}
	specs := []TopicSpec{{Name: "res", Partitions: 3}}
	for _, c := range codecs {
		specs = append(specs, TopicSpec{Name: "req-" + c.name, Partitions: 3})
	}
	if err := EnsureTopics(testCtx(t), adm, specs...); err != nil {
		t.Fatal(err)
	}

	const n = 200
	features := strings.TrimSuffix(strings.Repeat("0.5,0.25,", 8), ",")
	for _, c := range codecs {
		topic := "req-" + c.name
		var in bytes.Buffer
		for i := range n {
			fmt.Fprintf(&in, "k%d:{\"request_id\":\"r-%d\",\"features\":[%s]}\n", i, i, features)
		}
		prod := exec.Command(kcat, "-b", e.Addr(), "-t", topic, "-P", "-z", c.name, "-K:",
			"-X", "enable.idempotence=true", "-X", "linger.ms=100") // linger: batches worth compressing
		prod.Stdin = &in
		if out, err := prod.CombinedOutput(); err != nil {
			t.Fatalf("kcat produce -z %s: %v\n%s", c.name, err, out)
		}
		cons := newClient(t, e.Addr(), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		got := make(map[string]string)
		for _, r := range pollUntil(t, cons, n) {
			got[string(r.Key)] = string(r.Value)
		}
		for i := range n {
			if want := fmt.Sprintf(`{"request_id":"r-%d","features":[%s]}`, i, features); got[fmt.Sprintf("k%d", i)] != want {
				t.Fatalf("record k%d from kcat -z %s: %q, want %q", i, c.name, got[fmt.Sprintf("k%d", i)], want)
			}
		}
		stored := assertCodecs(t, e, topic, 3, c.codec...)
		t.Logf("kcat -z %s: batches stored with codec %v", c.name, stored)
	}

	produceValues(t, newClient(t, e.Addr()), "res", 0, n) // default compression
	read := exec.Command(kcat, "-b", e.Addr(), "-G", "kcat-group", "-X", "auto.offset.reset=earliest", "-e", "-f", "%k=%s\\n", "res")
	var kstderr bytes.Buffer
	read.Stderr = &kstderr
	out, err := read.Output()
	if err != nil {
		t.Fatalf("kcat consume: %v\n%s", err, kstderr.String())
	}
	lines := make(map[string]bool)
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		lines[sc.Text()] = true
	}
	for i := range n {
		if l := fmt.Sprintf("%d=v%d", i, i); !lines[l] {
			t.Fatalf("kcat did not print %q; got %d lines", l, len(lines))
		}
	}
	// kcat's group committed what it read.
	lags, err := Lag(testCtx(t), adm, "kcat-group")
	if err != nil {
		t.Fatal(err)
	}
	var lag int64
	for _, l := range lags {
		lag += l.Lag
	}
	if len(lags) != 3 || lag != 0 {
		t.Fatalf("kcat group lag after reading everything: %+v", lags)
	}
}

// debianPython returns a python3 that has kafka-python (Debian's
// python3-kafka); a pyenv or venv python3 first in PATH usually does not.
func debianPython(t *testing.T) string {
	t.Helper()
	cands := []string{os.Getenv("INFERGATE_PYTHON"), "/usr/bin/python3", "python3"}
	for _, c := range cands {
		if c == "" {
			continue
		}
		if err := exec.Command(c, "-c", "import kafka").Run(); err == nil {
			return c
		}
	}
	missing(t, "no python3 with kafka-python (Debian package python3-kafka)")
	return ""
}

// TestKafkaPythonReadsDefaultCompression: records our client produces with the
// default compression are readable by kafka-python as installed by Debian,
// without optional compression libraries, in a consumer group that commits.
func TestKafkaPythonReadsDefaultCompression(t *testing.T) {
	py := debianPython(t)
	e := startEmbedded(t, t.TempDir(), DurabilityOS)
	adm := newAdmin(t, e.Addr())
	if err := EnsureTopics(testCtx(t), adm, DefaultTopics("req", "res", "dlq", 3)...); err != nil {
		t.Fatal(err)
	}
	// Result-like values, so that batches compress: kgo sends a batch
	// uncompressed when compression would not make it smaller.
	const n = 300
	var recs []*kgo.Record
	for i := range n {
		v := fmt.Sprintf(`{"request_id":"r-%d","model":"demo","model_version":1,"prediction":[0.5],"latency_ms":3}`, i)
		recs = append(recs, &kgo.Record{Topic: "res", Key: []byte(fmt.Sprint(i)), Value: []byte(v)})
	}
	if err := newClient(t, e.Addr()).ProduceSync(testCtx(t), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	assertCodecs(t, e, "res", 3, 1) // gzip, the default

	cmd := exec.Command(py, "testdata/kafka_python_consume.py", e.Addr(), "res", "py-group", fmt.Sprint(n))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kafka-python: %v\n%s", err, stderr.String())
	}
	seen := make(map[string]bool)
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var rec struct{ Key, Value string }
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("kafka-python output %q: %v", sc.Text(), err)
		}
		if !strings.Contains(rec.Value, `"request_id":"r-`+rec.Key+`"`) {
			t.Fatalf("kafka-python read key %q value %q", rec.Key, rec.Value)
		}
		seen[rec.Value] = true
	}
	if len(seen) != n {
		t.Fatalf("kafka-python read %d distinct records, want %d; stderr:\n%s", len(seen), n, stderr.String())
	}
	lags, err := Lag(testCtx(t), adm, "py-group")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range lags {
		if l.Lag != 0 {
			t.Fatalf("kafka-python group did not commit: %+v", lags)
		}
	}
	if len(lags) != 3 {
		t.Fatalf("kafka-python group lag: %+v", lags)
	}
	if strings.Contains(stderr.String(), "Traceback") {
		t.Fatalf("kafka-python printed a traceback:\n%s", stderr.String())
	}
}

// assertCodecs checks that every record batch stored for topic's partitions
// uses one of codecs (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd) and returns
// the codecs seen. It reads kfake's segment files, which hold the batches in
// Kafka's wire format exactly as the producer sent them.
func assertCodecs(t *testing.T, e *Embedded, topic string, partitions int, codecs ...int16) []int16 {
	t.Helper()
	var seen []int16
	for p := range partitions {
		segs, _ := filepath.Glob(filepath.Join(e.cfg.DataDir, "partitions", fmt.Sprintf("%s-%d", topic, p), "*.dat"))
		for _, seg := range segs {
			raw, err := os.ReadFile(seg)
			if err != nil {
				t.Fatal(err)
			}
			for len(raw) >= 61 {
				size := 12 + int(binary.BigEndian.Uint32(raw[8:12]))
				if size > len(raw) {
					break
				}
				got := int16(binary.BigEndian.Uint16(raw[21:23])) & 0x7
				if !slices.Contains(codecs, got) {
					t.Fatalf("%s: batch of %d bytes, %d records with codec %d, want one of %v",
						seg, size, int32(binary.BigEndian.Uint32(raw[57:61])), got, codecs)
				}
				if !slices.Contains(seen, got) {
					seen = append(seen, got)
				}
				raw = raw[size:]
			}
		}
	}
	if len(seen) == 0 {
		t.Fatalf("no batches found on disk for %s", topic)
	}
	return seen
}
