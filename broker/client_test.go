package broker

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/infergate/infergate/internal/testutil"
)

func TestClientConfigValidate(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  ClientConfig
		want string
	}{
		{"minimal", ClientConfig{Brokers: []string{"k:9092"}}, ""},
		{"no brokers", ClientConfig{}, "broker.brokers"},
		{"broker without port", ClientConfig{Brokers: []string{"k"}}, "broker.brokers"},
		{"broker without host", ClientConfig{Brokers: []string{":9092"}}, "broker.brokers"},
		{"compression", ClientConfig{Brokers: []string{"k:1"}, Compression: "brotli"}, "broker.compression"},
		{"compression upper case", ClientConfig{Brokers: []string{"k:1"}, Compression: "LZ4"}, ""},
		{"tls files without tls", ClientConfig{Brokers: []string{"k:1"}, TLS: TLSConfig{CAFile: ca}}, "broker.tls.enabled"},
		{"tls ca missing", ClientConfig{Brokers: []string{"k:1"}, TLS: TLSConfig{Enabled: true, CAFile: filepath.Join(dir, "nope")}}, "broker.tls.ca_file"},
		{"tls cert without key", ClientConfig{Brokers: []string{"k:1"}, TLS: TLSConfig{Enabled: true, CertFile: ca}}, "broker.tls.key_file"},
		{"tls ok", ClientConfig{Brokers: []string{"k:1"}, TLS: TLSConfig{Enabled: true, CAFile: ca}}, ""},
		{"sasl unknown", ClientConfig{Brokers: []string{"k:1"}, SASL: SASLConfig{Mechanism: "GSSAPI", Username: "u"}}, "broker.sasl.mechanism"},
		{"sasl no user", ClientConfig{Brokers: []string{"k:1"}, SASL: SASLConfig{Mechanism: "plain"}}, "broker.sasl.username"},
		{"sasl user without mechanism", ClientConfig{Brokers: []string{"k:1"}, SASL: SASLConfig{Username: "u"}}, "broker.sasl.mechanism"},
		{"sasl scram lower case", ClientConfig{Brokers: []string{"k:1"}, SASL: SASLConfig{Mechanism: "scram-sha-512", Username: "u"}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one naming %s", err, tc.want)
			}
		})
	}
	c := ClientConfig{Brokers: []string{"k:1"}}
	if err := c.Validate(); err != nil || c.Compression != DefaultCompression {
		t.Fatalf("default compression not applied: %q %v", c.Compression, err)
	}
	// Opts reports a CA file that is not PEM by its setting.
	bad := ClientConfig{Brokers: []string{"k:1"}, TLS: TLSConfig{Enabled: true, CAFile: ca}}
	if _, err := bad.Opts(); err == nil || !strings.Contains(err.Error(), "broker.tls.ca_file") {
		t.Fatalf("Opts with a non-PEM CA: %v", err)
	}
}

// testPKI is a CA with a server certificate for 127.0.0.1/localhost and a
// client certificate, written as PEM files.
type testPKI struct {
	caFile, certFile, keyFile string // client side
	server                    tls.Certificate
	clientCAs                 *x509.CertPool
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "infergate test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "localhost"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, KeyUsage: x509.KeyUsageDigitalSignature,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kb, _ := x509.MarshalECPrivateKey(key)
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
	}
	srvCert, srvKey := issue(2, x509.ExtKeyUsageServerAuth)
	server, err := tls.X509KeyPair(srvCert, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	cliCert, cliKey := issue(3, x509.ExtKeyUsageClientAuth)
	p := testPKI{
		caFile: filepath.Join(dir, "ca.pem"), certFile: filepath.Join(dir, "client.pem"), keyFile: filepath.Join(dir, "client-key.pem"),
		server: server, clientCAs: x509.NewCertPool(),
	}
	p.clientCAs.AddCert(caCert)
	for path, b := range map[string][]byte{
		p.caFile:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		p.certFile: cliCert, p.keyFile: cliKey,
	} {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func startKfake(t *testing.T, opts ...kfake.Opt) string {
	t.Helper()
	return testutil.Cluster(t, 1, []string{"t"}, opts...).ListenAddrs()[0]
}

// roundTrip produces and consumes one record with cfg; it returns the first
// error, so a refused connection fails fast instead of retrying forever.
func roundTrip(cfg ClientConfig) error {
	opts, err := cfg.Opts()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(append(opts, kgo.ConsumeTopics("t"), kgo.RequestRetries(1))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "t", Value: []byte("hello")}).FirstErr(); err != nil {
		return err
	}
	for {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return err
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return ferr
		}
		for _, r := range fs.Records() {
			if string(r.Value) == "hello" {
				return nil
			}
		}
	}
}

// ping connects with cfg and returns the first error: a refused handshake
// or authentication fails here at once, where a produce would keep retrying.
func ping(cfg ClientConfig) error {
	opts, err := cfg.Opts()
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(append(opts, kgo.RequestRetries(0))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return cl.Ping(ctx)
}

func TestClientTLS(t *testing.T) {
	pki := newTestPKI(t)
	addr := startKfake(t, kfake.TLS(&tls.Config{Certificates: []tls.Certificate{pki.server}, MinVersion: tls.VersionTLS12}))

	ok := ClientConfig{Brokers: []string{addr}, TLS: TLSConfig{Enabled: true, CAFile: pki.caFile}}
	if err := roundTrip(ok); err != nil {
		t.Fatalf("TLS with our CA: %v", err)
	}
	if err := ping(ClientConfig{Brokers: []string{addr}, TLS: TLSConfig{Enabled: true}}); err == nil {
		t.Fatal("TLS against an unknown CA succeeded")
	}
	if err := roundTrip(ClientConfig{Brokers: []string{addr}, TLS: TLSConfig{Enabled: true, InsecureSkipVerify: true}}); err != nil {
		t.Fatalf("TLS with InsecureSkipVerify: %v", err)
	}
	if err := ping(ClientConfig{Brokers: []string{addr}}); err == nil {
		t.Fatal("plaintext against a TLS listener succeeded")
	}
}

func TestClientMutualTLS(t *testing.T) {
	pki := newTestPKI(t)
	addr := startKfake(t, kfake.TLS(&tls.Config{
		Certificates: []tls.Certificate{pki.server}, MinVersion: tls.VersionTLS12,
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pki.clientCAs,
	}))
	with := ClientConfig{Brokers: []string{addr}, TLS: TLSConfig{Enabled: true, CAFile: pki.caFile, CertFile: pki.certFile, KeyFile: pki.keyFile}}
	if err := roundTrip(with); err != nil {
		t.Fatalf("mTLS with a client certificate: %v", err)
	}
	without := ClientConfig{Brokers: []string{addr}, TLS: TLSConfig{Enabled: true, CAFile: pki.caFile}}
	if err := ping(without); err == nil {
		t.Fatal("mTLS without a client certificate succeeded")
	}
}

func TestClientSASL(t *testing.T) {
	pki := newTestPKI(t)
	tlsOpt := kfake.TLS(&tls.Config{Certificates: []tls.Certificate{pki.server}, MinVersion: tls.VersionTLS12})
	users := []kfake.Opt{
		kfake.EnableSASL(),
		kfake.Superuser(SASLPlain, "plainuser", "plainpass"),
		kfake.Superuser(SASLScramSHA256, "scram256", "pass256"),
		kfake.Superuser(SASLScramSHA512, "scram512", "pass512"),
	}
	for _, withTLS := range []bool{false, true} {
		opts := users
		if withTLS {
			opts = append(append([]kfake.Opt{}, users...), tlsOpt)
		}
		addr := startKfake(t, opts...)
		for _, tc := range []struct{ mech, user, pass string }{
			{SASLPlain, "plainuser", "plainpass"},
			{SASLScramSHA256, "scram256", "pass256"},
			{SASLScramSHA512, "scram512", "pass512"},
		} {
			name := tc.mech
			if withTLS {
				name += "+TLS"
			}
			t.Run(name, func(t *testing.T) {
				cfg := ClientConfig{Brokers: []string{addr}, SASL: SASLConfig{Mechanism: tc.mech, Username: tc.user, Password: tc.pass}}
				if withTLS {
					cfg.TLS = TLSConfig{Enabled: true, CAFile: pki.caFile}
				}
				if err := roundTrip(cfg); err != nil {
					t.Fatalf("right password: %v", err)
				}
				if err := ping(cfg); err != nil {
					t.Fatalf("ping with the right password: %v", err)
				}
				cfg.SASL.Password = "wrong"
				if err := ping(cfg); err == nil {
					t.Fatal("wrong password accepted")
				}
				cfg.SASL = SASLConfig{}
				if err := ping(cfg); err == nil {
					t.Fatal("no SASL accepted by a SASL broker")
				}
			})
		}
	}
}
