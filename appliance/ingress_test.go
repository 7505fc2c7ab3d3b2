package appliance

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/infergate/infergate/ingress"
	"github.com/infergate/infergate/internal/testutil"
	"github.com/infergate/infergate/store"
)

func needMosquitto(t *testing.T) (pub, sub string) {
	t.Helper()
	for _, tool := range []string{"mosquitto_pub", "mosquitto_sub"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is not installed (.ci/run installs mosquitto-clients)", tool)
			}
			t.Skipf("%s is not installed", tool)
		}
	}
	return "mosquitto_pub", "mosquitto_sub"
}

func mosquitto(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Devices publish to the appliance over MQTT; the real pipeline predicts
// with the demo model and the answers come back over MQTT: a prediction for
// a good request, an error reply for a bad one, which is also in the DLQ
// store.
func TestIngressMQTTThroughThePipeline(t *testing.T) {
	pub, sub := needMosquitto(t)
	c := testConfig(t)
	c.HTTP.Listen = ""
	c.Ingress.Enabled = true
	c.Ingress.MQTTListen = "127.0.0.1:0"
	c.Ingress.NATSListen = "127.0.0.1:0"
	r := start(t, c)
	host, port, err := net.SplitHostPort(r.Ingress().MQTTAddr())
	if err != nil {
		t.Fatal(err)
	}
	subArgs := []string{"-h", host, "-p", port, "-q", "1", "-c", "-i", "kiln4-sub", "-t", "infergate/results/+/kiln4"}
	mosquitto(t, sub, append(subArgs, "-E")...)

	features := make([]string, 16)
	for i := range features {
		features[i] = "0.5"
	}
	mosquitto(t, pub, "-h", host, "-p", port, "-q", "1", "-t", "infergate/requests/demo/kiln4",
		"-m", `{"request_id":"k-1","features":[`+strings.Join(features, ",")+`]}`)
	mosquitto(t, pub, "-h", host, "-p", port, "-q", "1", "-t", "infergate/requests/demo/kiln4",
		"-m", `{"request_id":"k-2","features":[1,2]}`)

	out := mosquitto(t, sub, append(subArgs, "-C", "2", "-W", "60")...)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("mosquitto_sub got %q", out)
	}
	var good, bad struct {
		RequestID  string          `json:"request_id"`
		Model      string          `json:"model"`
		Prediction json.RawMessage `json:"prediction"`
		Error      struct{ Class string }
	}
	for _, l := range lines {
		var v struct {
			RequestID string `json:"request_id"`
		}
		_ = json.Unmarshal([]byte(l), &v)
		switch v.RequestID {
		case "k-1":
			_ = json.Unmarshal([]byte(l), &good)
		case "k-2":
			_ = json.Unmarshal([]byte(l), &bad)
		}
	}
	if good.Model != "demo" || len(good.Prediction) == 0 {
		t.Fatalf("result of k-1: %q", out)
	}
	if bad.Error.Class != "validation" {
		t.Fatalf("error reply of k-2 (two features for a 16-channel model): %q", out)
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		recs, _, err := r.Store().List(store.Filter{Limit: 1000})
		if err != nil {
			return err
		}
		for _, rec := range recs {
			if string(rec.Key) == "kiln4" {
				return nil
			}
		}
		return errNo("DLQ store record with key kiln4")
	})
}

// Anonymous devices on a listener other than loopback are refused at start.
func TestIngressAnonymousExposedIsRefused(t *testing.T) {
	c := testConfig(t)
	c.Ingress.Enabled = true
	c.Ingress.MQTTListen = "0.0.0.0:0"
	_, err := New(c, testutil.Logger(t))
	if err == nil || !strings.Contains(err.Error(), "ingress.devices_file") || !strings.Contains(err.Error(), "anonymous") {
		t.Fatalf("New: %v", err)
	}
}

// ingress.devices_file: a malformed line is refused naming the setting;
// with devices listed, a listener on all interfaces is allowed.
func TestIngressDevicesFile(t *testing.T) {
	dir := t.TempDir()
	bad := dir + "/bad"
	good := dir + "/good"
	if err := os.WriteFile(bad, []byte("line1 pw extra words\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(good, []byte("# devices\nline1 s3cret\nobserver scada s3cret2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := testConfig(t)
	c.Ingress.Enabled = true
	c.Ingress.MQTTListen = "0.0.0.0:0"
	c.Ingress.DevicesFile = bad
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "ingress.devices_file") || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("bad devices file: %v", err)
	}
	c.Ingress.DevicesFile = good
	if err := c.Validate(); err != nil {
		t.Fatalf("good devices file: %v", err)
	}
	a, err := c.Ingress.auth()
	if err != nil || len(a.Devices) != 1 || len(a.Observers) != 1 || a.Devices[0].Name != "line1" {
		t.Fatalf("auth %+v %v", a, err)
	}
}

// ingress.mode external: the appliance attaches to a NATS server run
// separately (JetStream and MQTT on, a user for infergate); a device
// connected to that server gets its prediction from the real pipeline, and
// the dashboard's ingress status names the external server.
func TestIngressExternalNATS(t *testing.T) {
	pub, sub := needMosquitto(t)
	o := &server.Options{
		ServerName: "plant-nats", Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true,
		JetStream: true, StoreDir: t.TempDir(), DisableJetStreamBanner: true,
		Users: []*server.User{{Username: "infergate", Password: "ingress-pw"}, {Username: "oven2", Password: "device-pw"}},
	}
	o.MQTT.Host, o.MQTT.Port = "127.0.0.1", -1
	srv, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	if !srv.ReadyForConnections(30 * time.Second) {
		t.Fatal("NATS server not ready")
	}

	c := testConfig(t)
	c.Ingress.Enabled = true
	c.Ingress.Mode = ingress.ModeExternal
	c.Ingress.NATSURL = []string{"nats://" + srv.Addr().String()}
	c.Ingress.NATSUser, c.Ingress.NATSPassword = "infergate", "ingress-pw"
	r := start(t, c)
	if r.Ingress().MQTTAddr() != "" {
		t.Fatalf("external mode listens itself on %s", r.Ingress().MQTTAddr())
	}

	dev := []string{"-h", "127.0.0.1", "-p", strconv.Itoa(o.MQTT.Port), "-u", "oven2", "-P", "device-pw"}
	subArgs := append(append([]string(nil), dev...), "-q", "1", "-c", "-i", "oven2-sub", "-t", "infergate/results/+/oven2")
	mosquitto(t, sub, append(subArgs, "-E")...)
	mosquitto(t, pub, append(dev, "-q", "1", "-t", "infergate/requests/demo/oven2",
		"-m", string(requestValue("o-1", features(16, 0.5))))...)
	out := mosquitto(t, sub, append(subArgs, "-C", "1", "-W", "60")...)
	var res struct {
		RequestID  string    `json:"request_id"`
		Model      string    `json:"model"`
		Prediction []float64 `json:"prediction"`
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &res); err != nil || res.RequestID != "o-1" || res.Model != "demo" || len(res.Prediction) != 1 {
		t.Fatalf("answer %q (%v)", out, err)
	}

	var st struct {
		Enabled  bool           `json:"enabled"`
		External bool           `json:"external"`
		Server   string         `json:"server"`
		Clients  map[string]int `json:"clients"`
	}
	newAPIClient(t, r).json("GET", "/api/v1/ingress", nil, 200, &st)
	if !st.Enabled || !st.External || !strings.Contains(st.Server, srv.Addr().String()) || st.Clients != nil {
		t.Fatalf("ingress status %+v", st)
	}
}

// TestIngressFlowChecksInBothModes: the results group, ack and answer settings
// are checked the same in embedded and external mode, each error naming its key.
func TestIngressFlowChecksInBothModes(t *testing.T) {
	for _, mode := range []string{ingress.ModeEmbedded, ingress.ModeExternal} {
		c := Default()
		c.Ingress.Enabled, c.Ingress.Mode = true, mode
		if mode == ingress.ModeExternal {
			c.Ingress.NATSURL = []string{"nats://127.0.0.1:4222"}
		}
		c.Ingress.Group = c.Pipeline.Group
		c.Ingress.MaxAckPending = 0
		c.Ingress.AckWait = time.Millisecond
		c.Ingress.AnswerQoS = 2
		err := c.Validate()
		if err == nil {
			t.Fatalf("%s: accepted", mode)
		}
		for _, want := range []string{"ingress.group (--ingress-group", "is also pipeline.group", "ingress.max_ack_pending (", "ingress.ack_wait (", "ingress.answer_qos ("} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: %v\nwant %q", mode, err, want)
			}
		}
	}
}
