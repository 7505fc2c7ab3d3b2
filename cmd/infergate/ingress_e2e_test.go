package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// pahoDevice runs testdata/mqtt_device.py with Debian's python3 and
// python3-paho-mqtt and collects its stdout lines.
type pahoDevice struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []string
	done  chan struct{}
}

func needPaho(t *testing.T) string {
	t.Helper()
	py := "/usr/bin/python3" // Debian's, which has python3-paho-mqtt
	if err := exec.Command(py, "-c", "import paho.mqtt.client").Run(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("python3-paho-mqtt is not installed (.ci/run installs it): %v", err)
		}
		t.Skipf("python3-paho-mqtt is not installed: %v", err)
	}
	return py
}

func startPaho(t *testing.T, py string, args ...string) *pahoDevice {
	t.Helper()
	d := &pahoDevice{done: make(chan struct{})}
	d.cmd = exec.Command(py, append([]string{"testdata/mqtt_device.py"}, args...)...)
	d.cmd.Stderr = os.Stderr
	out, err := d.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(d.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			d.mu.Lock()
			d.lines = append(d.lines, sc.Text())
			d.mu.Unlock()
		}
		_ = d.cmd.Wait()
	}()
	t.Cleanup(func() { _ = d.cmd.Process.Kill(); <-d.done })
	return d
}

func (d *pahoDevice) seen() map[string]int {
	d.mu.Lock()
	defer d.mu.Unlock()
	m := map[string]int{}
	for _, l := range d.lines {
		m[l]++
	}
	return m
}

// TestE2EIngressSIGKILLMQTTQoS1: paho devices publish QoS 1 requests over
// MQTT while infergate is SIGKILLed and restarted on the same data dir.
// Every publish that got a PUBACK has a result in the results topic after
// the restart, and its answer reached the device's persistent session; the
// publishers reconnect and finish. Duplicates are allowed (docs/ingress.md).
func TestE2EIngressSIGKILLMQTTQoS1(t *testing.T) {
	py := needPaho(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	port, mqttPort := freePort(t), freePort(t)
	mqtt := "127.0.0.1:" + strconv.Itoa(mqttPort)
	args := []string{"--ingress", "--mqtt-listen", mqtt, "--nats-listen", "127.0.0.1:0"}
	a := startAppliance(t, dataDir, port, args...)

	devices := []string{"press1", "press2"}
	const perDevice = 1500
	var subs []*pahoDevice
	for _, d := range devices {
		s := startPaho(t, py, "sub", "127.0.0.1", strconv.Itoa(mqttPort), d)
		deadline := time.Now().Add(30 * time.Second)
		for s.seen()["subscribed"] == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("subscriber of %s did not subscribe", d)
			}
			time.Sleep(20 * time.Millisecond)
		}
		subs = append(subs, s)
	}
	var pubs []*pahoDevice
	for _, d := range devices {
		pubs = append(pubs, startPaho(t, py, "pub", "127.0.0.1", strconv.Itoa(mqttPort), d, strconv.Itoa(perDevice), "500", "120"))
	}
	// Kill while results flow.
	collect(t, a.broker, resultsTopic, 2*time.Minute, func(c map[string]int) bool { return len(c) >= 300 })
	a.kill()
	t.Log("killed infergate mid-stream")
	a = startAppliance(t, dataDir, port, args...)

	var acked []string
	for _, p := range pubs {
		select {
		case <-p.done:
		case <-time.After(3 * time.Minute):
			t.Fatal("a publisher did not finish")
		}
		for id := range p.seen() {
			acked = append(acked, id)
		}
	}
	if len(acked) < len(devices)*perDevice/2 {
		t.Fatalf("only %d of %d publishes acknowledged: the publishers did not resume after the restart", len(acked), len(devices)*perDevice)
	}
	counts := collect(t, a.broker, resultsTopic, 3*time.Minute, hasAll(acked))
	dups := 0
	for _, id := range acked {
		if counts[id] > 1 {
			dups++
		}
	}
	// The answers reached the devices' persistent sessions across the kill.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		missing := 0
		for i, d := range devices {
			got := subs[i].seen()
			for _, id := range acked {
				if strings.HasPrefix(id, "m-"+d+"-") && got[id] == 0 {
					missing++
				}
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d acknowledged requests have a result but no answer reached their device", missing)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("%d of %d publishes acknowledged (PUBACK); every one has a result after the SIGKILL and restart "+
		"and its answer reached the device; %d results duplicated (allowed at-least-once)", len(acked), len(devices)*perDevice, dups)
}
