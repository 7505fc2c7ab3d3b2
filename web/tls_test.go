package web

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// selfSigned writes a certificate for 127.0.0.1 and its key as PEM files.
func selfSigned(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "infergate test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
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

func TestTLSAndSecureCookie(t *testing.T) {
	cert, key := selfSigned(t)
	env := newEnv(t, func(c *Config) { c.TLSCert, c.TLSKey = cert, key })
	if !strings.HasPrefix(env.base, "https://") {
		t.Fatalf("base URL %s", env.base)
	}
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{
		Jar:           jar,
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, // self-signed test certificate
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	r := doRequest(t, hc, "GET", env.base+"/api/v1/status", testToken, nil)
	expectCode(t, r, 200)
	r = env.postLogin(hc, testToken)
	expectCode(t, r, http.StatusSeeOther)
	ck := r.header.Get("Set-Cookie")
	for _, want := range []string{secureCookie + "=", "Secure", "HttpOnly", "SameSite=Strict", "Path=/"} {
		if !strings.Contains(ck, want) {
			t.Fatalf("Set-Cookie %q lacks %q", ck, want)
		}
	}
	expectCode(t, doRequest(t, hc, "GET", env.base+"/api/v1/status", "", nil), 200)

	// A missing key file names the settings.
	bad := DefaultConfig()
	bad.Listen, bad.AdminToken, bad.TLSCert, bad.TLSKey = "127.0.0.1:0", testToken, cert, filepath.Join(t.TempDir(), "nope.pem")
	if _, err := New(bad, nil, env.backend, env.store, nil); err == nil || !strings.Contains(err.Error(), "http.tls_cert") {
		t.Fatalf("New with a missing key: %v", err)
	}
}
