package ingress

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/twmb/franz-go/pkg/kgo"
)

// certFor writes a self-signed certificate for 127.0.0.1 and its key.
func certFor(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "infergate ingress test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// With a certificate, MQTT and NATS devices connect over TLS and a
// plain-text MQTT client is refused.
func TestTLSListeners(t *testing.T) {
	pub := needTool(t, "mosquitto_pub")
	brokers := newCluster(t)
	echoPipeline(t, brokers)
	cfg := testConfig(t)
	cfg.TLSCert, cfg.TLSKey = certFor(t)
	h := startIngress(t, cfg, brokers)
	host, port := hostPort(t, h.in.MQTTAddr())

	run(t, pub, "-h", host, "-p", port, "--cafile", cfg.TLSCert, "-q", "1", "-t", "infergate/requests/demo/tls1", "-m", `{"request_id":"tls","features":[1]}`)
	if out, err := exec.Command(pub, "-h", host, "-p", port, "-q", "1", "-t", "infergate/requests/demo/tls1", "-m", `{"request_id":"plain"}`).CombinedOutput(); err == nil {
		t.Fatalf("a plain-text MQTT publish was accepted: %s", out)
	}
	nc, err := nats.Connect("tls://"+h.in.NATSAddr(), nats.RootCAs(cfg.TLSCert))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	reply, err := nc.Request("infergate.requests.demo.tls2", []byte(`{"request_id":"n","features":[1,1]}`), 30*time.Second)
	if err != nil || !strings.Contains(string(reply.Data), `"prediction":[2]`) {
		t.Fatalf("NATS over TLS: %v", err)
	}
	for _, r := range readTopic(t, brokers, reqTopic, func(rs []*kgo.Record) bool { return len(rs) >= 2 }) {
		if strings.Contains(string(r.Value), "plain") {
			t.Fatal("the plain-text publish reached Kafka")
		}
	}
}
