package ingress

import (
	"context"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/infergate/infergate/internal/testutil"
)

// runPlantNATS starts a NATS server of its own, as a plant would run one:
// JetStream, an MQTT listener, TLS required on the NATS listener, users
// with passwords. It is a separate server (own store, own ports), not the
// ingress's embedded one.
func runPlantNATS(t *testing.T) (srv *server.Server, ca, mqttAddr string) {
	t.Helper()
	cert, key := certFor(t)
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: cert, KeyFile: key})
	if err != nil {
		t.Fatal(err)
	}
	o := &server.Options{
		ServerName: "plant-nats", Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true,
		JetStream: true, StoreDir: t.TempDir(), DisableJetStreamBanner: true,
		TLSConfig: tc, TLS: true, TLSTimeout: 5,
		Users: []*server.User{{Username: "infergate", Password: "ingress-pw"}, {Username: "line9", Password: "device-pw"}},
	}
	o.MQTT.Host, o.MQTT.Port = "127.0.0.1", -1
	srv, err = server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	if !srv.ReadyForConnections(30 * time.Second) {
		t.Fatal("plant NATS server not ready")
	}
	// nats-server writes the port it bound back into its options.
	return srv, cert, net.JoinHostPort(o.MQTT.Host, strconv.Itoa(o.MQTT.Port))
}

func externalConfig(t *testing.T, srv *server.Server, ca string) Config {
	cfg := DefaultConfig()
	cfg.Mode = ModeExternal
	cfg.External = ExternalConfig{URLs: []string{"tls://" + srv.Addr().String()}, User: "infergate", Password: "ingress-pw", CAFile: ca}
	return cfg
}

// Attached to an external NATS server: an MQTT device connected to that
// server publishes at QoS 1 and gets its answer there; a request published
// while the ingress is down waits in the server's inbox (the durable
// consumer lives on the server) and is moved when the ingress is back.
func TestExternalNATSServer(t *testing.T) {
	pub, sub := needTool(t, "mosquitto_pub"), needTool(t, "mosquitto_sub")
	srv, ca, mqttAddr := runPlantNATS(t)
	brokers := newCluster(t)
	echoPipeline(t, brokers)

	// Wrong credentials and a missing CA are refused at start, naming the
	// server.
	for _, mutate := range []func(*Config){
		func(c *Config) { c.External.Password = "wrong" },
		func(c *Config) { c.External.CAFile = "" },
	} {
		cfg := externalConfig(t, srv, ca)
		mutate(&cfg)
		in, err := New(cfg, testutil.Logger(t), []kgo.Opt{kgo.SeedBrokers(brokers...)}, prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		err = in.Start(context.Background())
		in.Close()
		if err == nil || !strings.Contains(err.Error(), "external NATS server "+cfg.External.URLs[0]) {
			t.Fatalf("Start with a bad connection: %v", err)
		}
	}

	cfg := externalConfig(t, srv, ca)
	h := startIngress(t, cfg, brokers)
	if st := h.in.Status(context.Background()); !st.External || st.ServerVersion != server.VERSION || st.ClientsMQTT != -1 ||
		!strings.Contains(st.URL, srv.Addr().String()) {
		t.Fatalf("status %+v", st)
	}
	host, port := hostPort(t, mqttAddr)
	dev := []string{"-h", host, "-p", port, "-u", "line9", "-P", "device-pw"}
	subArgs := append(append([]string(nil), dev...), "-q", "1", "-c", "-i", "line9-sub", "-t", "infergate/results/+/line9")
	run(t, sub, append(subArgs, "-E")...)

	run(t, pub, append(dev, "-q", "1", "-t", "infergate/requests/demo/line9", "-m", `{"request_id":"x-1","features":[1,2,3]}`)...)
	out := run(t, sub, append(subArgs, "-C", "1", "-W", "30", "-v")...)
	if !strings.Contains(out, "infergate/results/demo/line9 ") || !strings.Contains(out, `"request_id":"x-1"`) ||
		!strings.Contains(out, `"prediction":[3]`) {
		t.Fatalf("mosquitto_sub got %q", out)
	}
	recs := readTopic(t, brokers, reqTopic, func(rs []*kgo.Record) bool { return len(rs) >= 1 })
	if r := recs[0]; string(r.Key) != "line9" || header(r, HeaderOrigin) != OriginMQTT || header(r, HeaderReply) != "infergate.results.demo.line9" {
		t.Fatalf("request record: key %q headers %v", r.Key, r.Headers)
	}

	// The ingress goes away; a device's QoS 1 publish is still taken by
	// the plant server (PUBACK), and a NATS JetStream publish is
	// acknowledged by the same inbox.
	h.stop()
	run(t, pub, append(dev, "-q", "1", "-t", "infergate/requests/demo/line9", "-m", `{"request_id":"x-2","features":[1,2]}`)...)
	nc, err := nats.Connect("tls://"+srv.Addr().String(), nats.UserInfo("line9", "device-pw"), nats.RootCAs(ca))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := js.Publish(ctx, InboxPrefix+"infergate.requests.demo.line9", []byte(`{"request_id":"x-3","features":[1]}`)); err != nil {
		t.Fatalf("JetStream publish while the ingress is down: %v", err)
	}

	startIngress(t, cfg, brokers)
	readTopic(t, brokers, reqTopic, func(rs []*kgo.Record) bool {
		var ids []string
		for _, r := range rs {
			ids = append(ids, string(r.Value))
		}
		all := strings.Join(ids, " ")
		return strings.Contains(all, `"x-2"`) && strings.Contains(all, `"x-3"`)
	})
	out = run(t, sub, append(subArgs, "-C", "2", "-W", "30")...)
	if !strings.Contains(out, `"request_id":"x-2"`) || !strings.Contains(out, `"request_id":"x-3"`) {
		t.Fatalf("answers after the restart: %q", out)
	}
}

// Two ingress instances attached to the same external server share the
// inbox consumer and the answering group: every request is moved to Kafka
// once, and every answer reaches the device.
func TestExternalNATSTwoInstances(t *testing.T) {
	pub, sub := needTool(t, "mosquitto_pub"), needTool(t, "mosquitto_sub")
	srv, ca, mqttAddr := runPlantNATS(t)
	brokers := newCluster(t)
	echoPipeline(t, brokers)
	cfg := externalConfig(t, srv, ca)
	a, b := startIngress(t, cfg, brokers), startIngress(t, cfg, brokers)

	host, port := hostPort(t, mqttAddr)
	dev := []string{"-h", host, "-p", port, "-u", "line9", "-P", "device-pw"}
	subArgs := append(append([]string(nil), dev...), "-q", "1", "-c", "-i", "line9-sub", "-t", "infergate/results/+/line9")
	run(t, sub, append(subArgs, "-E")...)
	const n = 60
	var lines strings.Builder
	for i := range n {
		lines.WriteString(`{"request_id":"two-` + strconv.Itoa(i) + `","features":[1,2]}` + "\n")
	}
	cmd := exec.Command(pub, append(dev, "-q", "1", "-i", "line9", "-t", "infergate/requests/demo/line9", "-l")...)
	cmd.Stdin = strings.NewReader(lines.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub: %v %s", err, out)
	}
	recs := readTopic(t, brokers, reqTopic, func(rs []*kgo.Record) bool { return len(rs) >= n })
	seen := map[string]int{}
	for _, r := range recs {
		seen[string(r.Value)]++
	}
	if len(seen) != n || len(recs) != n {
		t.Fatalf("%d request records for %d distinct requests, want %d of each", len(recs), len(seen), n)
	}
	out := run(t, sub, append(subArgs, "-C", strconv.Itoa(n), "-W", "60")...)
	got := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		got[l] = true
	}
	if len(got) != n {
		t.Fatalf("%d distinct answers of %d:\n%s", len(got), n, out)
	}
	t.Logf("moved by the instances: %d and %d", moved(a), moved(b))
}

// moved is how many requests an instance produced to Kafka.
func moved(h *harness) int {
	var m dto.Metric
	if err := h.in.metrics.produced.WithLabelValues(OriginMQTT).Write(&m); err != nil {
		return -1
	}
	return int(m.GetCounter().GetValue())
}
