package ingress

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// needPaho returns Debian's python3, which has python3-paho-mqtt; it skips
// without it, and fails under CI, where .ci/run installs it.
func needPaho(t *testing.T) string {
	t.Helper()
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import paho.mqtt.client").Run(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("python3-paho-mqtt is not installed (.ci/run installs it): %v", err)
		}
		t.Skipf("python3-paho-mqtt is not installed: %v", err)
	}
	return py
}

// answer is one line "TOPIC<TAB>PAYLOAD" printed by testdata/paho_device.py.
type answer struct {
	topic     string
	requestID string
	errClass  string
	body      string
}

func answers(t *testing.T, out string) []answer {
	t.Helper()
	var as []answer
	for _, l := range strings.Split(out, "\n") {
		topic, payload, ok := strings.Cut(l, "\t")
		if !ok {
			continue
		}
		var v struct {
			RequestID string `json:"request_id"`
			Error     struct{ Class string }
		}
		if err := json.Unmarshal([]byte(payload), &v); err != nil {
			t.Fatalf("answer on %s is not JSON: %q", topic, payload)
		}
		as = append(as, answer{topic: topic, requestID: v.RequestID, errClass: v.Error.Class, body: payload})
	}
	return as
}

// Two paho devices publish at QoS 1, each a good request and one the
// pipeline dead-letters: each device gets exactly its own two answers (a
// prediction and an error reply naming the class) on its own topic, an
// observer subscribed to every answer sees the four on the right topics,
// and the dead-lettered requests are in the DLQ topic keyed by device.
func TestPahoDevicesGetTheirOwnAnswers(t *testing.T) {
	py := needPaho(t)
	brokers := newCluster(t)
	echoPipeline(t, brokers)
	h := startIngress(t, testConfig(t), brokers)
	host, port := hostPort(t, h.in.MQTTAddr())

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	obs := exec.CommandContext(ctx, py, "testdata/paho_device.py", "observer", host, port, "4", "60")
	var obsOut bytes.Buffer
	pipe, err := obs.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	obs.Stderr = os.Stderr
	if err := obs.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(pipe)
	if !sc.Scan() || sc.Text() != "subscribed" {
		t.Fatalf("observer: %q", sc.Text())
	}
	obsDone := make(chan error, 1)
	go func() {
		for sc.Scan() {
			obsOut.WriteString(sc.Text() + "\n")
		}
		obsDone <- obs.Wait()
	}()

	devices := map[string][]string{
		"cell1": {`{"request_id":"c1-ok","features":[1,2,3]}`, `{"request_id":"c1-bad","features":"three"}`},
		"cell2": {`{"request_id":"c2-ok","features":[1,2,3,4,5]}`, `{"request_id":"c2-bad","features":"five"}`},
	}
	outs := map[string]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, payloads := range devices {
		wg.Go(func() {
			out, err := exec.CommandContext(ctx, py, append([]string{"testdata/paho_device.py", "device", host, port, name, "60"}, payloads...)...).CombinedOutput()
			if err != nil {
				t.Errorf("device %s: %v\n%s", name, err, out)
			}
			mu.Lock()
			outs[name] = string(out)
			mu.Unlock()
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for name, n := range map[string]int{"cell1": 3, "cell2": 5} {
		out := outs[name]
		if !strings.Contains(out, "acked 2") {
			t.Fatalf("%s: no PUBACKs: %q", name, out)
		}
		as := answers(t, out)
		short := strings.Replace(name, "cell", "c", 1)
		byID := map[string]answer{}
		for _, a := range as {
			byID[a.requestID] = a
			if a.topic != "infergate/results/demo/"+name {
				t.Fatalf("%s got an answer on %s: %+v", name, a.topic, a)
			}
		}
		if len(as) != 2 || !strings.Contains(byID[short+"-ok"].body, `"prediction":[`+string(rune('0'+n))+`]`) ||
			byID[short+"-bad"].errClass != "decode" {
			t.Fatalf("%s answers: %+v", name, as)
		}
	}
	if err := <-obsDone; err != nil {
		t.Fatalf("observer: %v\n%s", err, obsOut.String())
	}
	for _, a := range answers(t, obsOut.String()) {
		device := "cell" + a.requestID[1:2]
		if a.topic != "infergate/results/demo/"+device {
			t.Fatalf("observer saw %s's answer %s on %s", device, a.requestID, a.topic)
		}
	}
	readTopic(t, brokers, dlqTopic, func(rs []*kgo.Record) bool {
		keys := map[string]string{}
		for _, r := range rs {
			keys[string(r.Key)] = string(r.Value)
		}
		return strings.Contains(keys["cell1"], "c1-bad") && strings.Contains(keys["cell2"], "c2-bad")
	})
}
