package docs_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/infergate/infergate/internal/testutil"
)

// syncBuffer collects what a process writes while the test reads it.
type syncBuffer = testutil.Buffer

// The README's "Devices (MQTT / NATS)" example, run as written against a
// fresh `infergate run --demo --ingress` (on free ports instead of the
// defaults, so -p is added): mosquitto_sub receives the answer the README
// shows, with the prediction it shows.
func TestReadmeDevices(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the appliance")
	}
	for _, tool := range []string{"mosquitto_pub", "mosquitto_sub"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is not installed (.ci/run installs mosquitto-clients)", tool)
			}
			t.Skipf("%s is not installed", tool)
		}
	}
	b, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	sec := section(t, string(b), "Devices (MQTT / NATS)")
	if !strings.Contains(sec, "infergate run --demo --ingress") {
		t.Fatal(`"Devices (MQTT / NATS)" no longer says which command the example runs against`)
	}
	var sub, pub, shown string
	for _, c := range commands(sec) {
		switch {
		case strings.HasPrefix(c, "mosquitto_sub "):
			sub = c
		case strings.HasPrefix(c, "mosquitto_pub "):
			pub = c
		case strings.HasPrefix(c, "# infergate/results/"):
			shown = strings.TrimPrefix(c, "# ")
		}
	}
	if sub == "" || pub == "" || shown == "" {
		t.Fatalf("the section's example changed shape: sub %q, pub %q, shown answer %q", sub, pub, shown)
	}
	// The shown answer ends in "...}" (timestamp and latency vary): the
	// rest is compared as a prefix.
	shown = strings.TrimSuffix(shown, "...}")

	mqttAddr := freeAddr(t)
	_, mqttPort, _ := net.SplitHostPort(mqttAddr)
	app := startReadmeApp(t, "data", []string{"INFERGATE_INGRESS_MQTT_LISTEN=" + mqttAddr,
		"INFERGATE_INGRESS_NATS_LISTEN=" + freeAddr(t)}, "--demo", "--ingress")
	dir, env := app.dir, app.env
	// Devices are refused ("not authorised") until the ingress is open to
	// them, a moment after its listener binds (ingress/auth.go): wait for
	// that, as a reader waits for "infergate is ready".
	testutil.Eventually(t, 90*time.Second, func() error {
		if !strings.Contains(app.logs.String(), "ingress open to devices") {
			return fmt.Errorf("the ingress is not open to devices yet")
		}
		return nil
	})

	// mosquitto_sub as written, bounded (one message, 60 s) instead of sent
	// to the background, with -d to tell when it has subscribed.
	sub = strings.TrimSpace(strings.TrimSuffix(sub, "&"))
	// stdbuf: mosquitto_sub's stdout is a pipe here, fully buffered otherwise.
	sub = strings.Replace(sub, "mosquitto_sub", "stdbuf -oL mosquitto_sub -p "+mqttPort+" -d -C 1 -W 60", 1)
	subCmd := exec.Command("sh", "-c", sub)
	var subOut syncBuffer
	subCmd.Env, subCmd.Dir, subCmd.Stdout, subCmd.Stderr = env, dir, &subOut, &subOut
	if err := subCmd.Start(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 60*time.Second, func() error {
		if !strings.Contains(subOut.String(), "SUBACK") {
			return fmt.Errorf("mosquitto_sub has not subscribed yet: %q", subOut.String())
		}
		return nil
	})
	pub = strings.Replace(pub, "mosquitto_pub", "mosquitto_pub -p "+mqttPort, 1)
	pubCmd := exec.Command("sh", "-c", pub)
	pubCmd.Env, pubCmd.Dir = env, dir
	if out, err := pubCmd.CombinedOutput(); err != nil {
		t.Fatalf("README command %q: %v\n%s", pub, err, out)
	}
	if err := subCmd.Wait(); err != nil {
		t.Fatalf("README command %q: %v\n%s", sub, err, subOut.String())
	}
	var answer string
	for _, l := range strings.Split(subOut.String(), "\n") {
		if strings.HasPrefix(l, "infergate/results/") {
			answer = l
		}
	}
	if !strings.HasPrefix(answer, shown) {
		t.Fatalf("README shows the answer\n  %s...}\nmosquitto_sub printed\n  %s\n(all output: %s)", shown, answer, subOut.String())
	}
}
