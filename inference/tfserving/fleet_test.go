package tfserving_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"log/slog"
	"math/big"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/pipeline"
	"github.com/infergate/infergate/inference/tensor"
	"github.com/infergate/infergate/inference/tfserving"
	"github.com/infergate/infergate/inference/tfserving/tfservingtest"
	"github.com/infergate/infergate/internal/testutil"
	"github.com/infergate/infergate/proto/servingpb"
)

var _ pipeline.Predictor = (*tfserving.Fleet)(nil)

// replica is a tfservingtest service on its own gRPC server that a test can
// kill abruptly (every connection closed, calls in flight fail) and start
// again on the same address.
type replica struct {
	t    testing.TB
	svc  *tfservingtest.Service
	addr string
	opts []grpc.ServerOption
	hs   *health.Server

	mu   sync.Mutex
	srv  *grpc.Server
	done chan struct{}
}

func newReplica(t testing.TB, opts ...grpc.ServerOption) *replica {
	r := &replica{t: t, svc: tfservingtest.NewService(), addr: "127.0.0.1:0", opts: opts}
	r.start()
	t.Cleanup(r.kill)
	return r
}

func (r *replica) start() {
	r.t.Helper()
	var lis net.Listener
	var err error
	for range 100 { // the old socket may linger a moment after a kill
		if lis, err = net.Listen("tcp", r.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		r.t.Fatal(err)
	}
	r.addr = lis.Addr().String()
	srv := grpc.NewServer(r.opts...)
	servingpb.RegisterPredictionServiceServer(srv, r.svc)
	servingpb.RegisterModelServiceServer(srv, r.svc)
	r.hs = health.NewServer()
	healthpb.RegisterHealthServer(srv, r.hs)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	r.mu.Lock()
	r.srv, r.done = srv, done
	r.mu.Unlock()
}

func (r *replica) kill() {
	r.mu.Lock()
	srv, done := r.srv, r.done
	r.srv = nil
	r.mu.Unlock()
	if srv != nil {
		srv.Stop()
		<-done
	}
}

func arithInput() map[string]*tensor.Tensor {
	return map[string]*tensor.Tensor{
		"x": {DType: tensor.Float, Shape: []int64{1, 2}, Data: []float32{1, 2}},
		"y": {DType: tensor.Float, Shape: []int64{1, 2}, Data: []float32{3, 4}},
	}
}

func newFleet(t testing.TB, cfg tfserving.FleetConfig) *tfserving.Fleet {
	t.Helper()
	cfg.HealthInterval = 100 * time.Millisecond // test-sized, not DefaultHealthInterval
	f, err := tfserving.NewFleet(cfg, slog.New(slog.NewTextHandler(tlogWriter{t}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

type tlogWriter struct{ t testing.TB }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func TestFleetConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  tfserving.FleetConfig
		want string
	}{
		{tfserving.FleetConfig{}, "Endpoints is empty"},
		{tfserving.DefaultFleetConfig([]string{"a:1", " "}), "Endpoints[1] is empty"},
		{tfserving.DefaultFleetConfig([]string{"a:1", "a:1"}), "appears twice"},
		{with(tfserving.DefaultFleetConfig([]string{"a:1"}), func(c *tfserving.FleetConfig) { c.Balance = "random" }), "Balance"},
		{with(tfserving.DefaultFleetConfig([]string{"a:1"}), func(c *tfserving.FleetConfig) { c.HealthInterval = -1 }), "HealthInterval"},
		{with(tfserving.DefaultFleetConfig([]string{"a:1"}), func(c *tfserving.FleetConfig) { c.Timeout = -1 }), "Timeout"},
	} {
		if err := tc.cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: want an error naming %q, got %v", tc.cfg, tc.want, err)
		}
	}
}

func TestFleetBalances(t *testing.T) {
	for _, policy := range []string{tfserving.RoundRobin, tfserving.LeastOutstanding} {
		t.Run(policy, func(t *testing.T) {
			a, b := newReplica(t), newReplica(t)
			f := newFleet(t, with(tfserving.DefaultFleetConfig([]string{a.addr, b.addr}), func(c *tfserving.FleetConfig) { c.Balance = policy }))
			var wg sync.WaitGroup
			for range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range 50 {
						res, err := f.Predict(context.Background(), model.Spec{Name: "arith"}, arithInput())
						if err != nil {
							t.Error(err)
							return
						}
						if got := res.Outputs["sum"].Data.([]float32); got[0] != 4 || got[1] != 6 {
							t.Errorf("sum = %v", got)
						}
					}
				}()
			}
			wg.Wait()
			na, nb := a.svc.PredictCalls(), b.svc.PredictCalls()
			if na+nb != 200 || na == 0 || nb == 0 {
				t.Fatalf("calls: a %d, b %d", na, nb)
			}
			if policy == tfserving.RoundRobin && (na < 80 || nb < 80) {
				t.Fatalf("round robin split %d/%d", na, nb)
			}
			for _, ep := range f.Endpoints() {
				if !ep.Healthy || ep.Failures != 0 || ep.InFlight != 0 || ep.Requests == 0 {
					t.Fatalf("endpoint: %+v", ep)
				}
			}
		})
	}
}

// TestFleetFailover kills one of two endpoints while calls flow: none fails,
// the dead one is marked unhealthy, and it takes traffic again once back.
func TestFleetFailover(t *testing.T) {
	a, b := newReplica(t), newReplica(t)
	f := newFleet(t, with(tfserving.DefaultFleetConfig([]string{a.addr, b.addr}), func(c *tfserving.FleetConfig) { c.Timeout = 10 * time.Second }))
	var ok atomic.Int64
	var failed atomic.Int64
	var failure atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := f.Predict(context.Background(), model.Spec{Name: "arith"}, arithInput()); err != nil {
					failed.Add(1)
					failure.Store(err)
					continue
				}
				ok.Add(1)
			}
		}()
	}
	testutil.WaitFor(t, 10*time.Second, "traffic on both", func() bool { return a.svc.PredictCalls() > 50 && b.svc.PredictCalls() > 50 })
	a.kill()
	testutil.WaitFor(t, 10*time.Second, "a unhealthy", func() bool { return !f.Endpoints()[0].Healthy })
	bBefore := b.svc.PredictCalls()
	testutil.WaitFor(t, 10*time.Second, "traffic on b alone", func() bool { return b.svc.PredictCalls() > bBefore+200 })
	st := f.Endpoints()[0]
	if st.LastError == "" || st.LastErrorAt.IsZero() {
		t.Fatalf("dead endpoint status: %+v", st)
	}
	a.start()
	aBefore := a.svc.PredictCalls()
	testutil.WaitFor(t, 20*time.Second, "a back in rotation", func() bool {
		return f.Endpoints()[0].Healthy && a.svc.PredictCalls() > aBefore+50
	})
	close(stop)
	wg.Wait()
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d of %d calls failed, e.g. %v", n, n+ok.Load(), failure.Load())
	}
	data, err := json.Marshal(f.Endpoints())
	if err != nil || !strings.Contains(string(data), `"healthy":true`) {
		t.Fatalf("json: %s %v", data, err)
	}
	t.Logf("%d calls, endpoints %s", ok.Load(), data)
}

func TestFleetRequestErrorsAreNotRetried(t *testing.T) {
	a, b := newReplica(t), newReplica(t)
	f := newFleet(t, tfserving.DefaultFleetConfig([]string{a.addr, b.addr}))
	_, err := f.Predict(context.Background(), model.Spec{Name: "nope"}, arithInput())
	if status.Code(err) != codes.NotFound {
		t.Fatalf("want NOT_FOUND, got %v", err)
	}
	bad := arithInput()
	delete(bad, "y")
	_, err = f.Predict(context.Background(), model.Spec{Name: "arith"}, bad)
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("want INVALID_ARGUMENT, got %v", err)
	}
	if n := a.svc.PredictCalls() + b.svc.PredictCalls(); n != 2 {
		t.Fatalf("%d calls reached the replicas for 2 bad requests", n)
	}
	for _, ep := range f.Endpoints() {
		if !ep.Healthy || ep.Failures != 0 {
			t.Fatalf("a bad request must not count against an endpoint: %+v", ep)
		}
	}
	md, err := f.Metadata(context.Background(), model.Spec{Name: "arith"})
	if err != nil || md.Signatures[model.DefaultSignature] == nil {
		t.Fatalf("metadata: %v %v", md, err)
	}
}

func TestFleetAllDown(t *testing.T) {
	a, b := newReplica(t), newReplica(t)
	f := newFleet(t, tfserving.DefaultFleetConfig([]string{a.addr, b.addr}))
	a.kill()
	b.kill()
	_, err := f.Predict(context.Background(), model.Spec{Name: "arith"}, arithInput())
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("want UNAVAILABLE (the pipeline waits on it), got %v", err)
	}
	testutil.WaitFor(t, 10*time.Second, "both unhealthy", func() bool { return !f.Healthy() })
	b.start()
	testutil.WaitFor(t, 10*time.Second, "b healthy", func() bool { return f.Healthy() })
	if _, err := f.Predict(context.Background(), model.Spec{Name: "arith"}, arithInput()); err != nil {
		t.Fatal(err)
	}
}

func TestFleetHealthChecks(t *testing.T) {
	a, b := newReplica(t), newReplica(t)
	// gRPC health service: NOT_SERVING makes an endpoint unhealthy, and
	// healthy endpoints get the calls.
	f := newFleet(t, tfserving.DefaultFleetConfig([]string{a.addr, b.addr}))
	a.hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	testutil.WaitFor(t, 10*time.Second, "a unhealthy", func() bool { return !f.Endpoints()[0].Healthy })
	if ep := f.Endpoints()[0]; !strings.Contains(ep.LastError, "NOT_SERVING") || ep.CheckedAt.IsZero() {
		t.Fatalf("endpoint: %+v", ep)
	}
	before := a.svc.PredictCalls()
	for range 20 {
		if _, err := f.Predict(context.Background(), model.Spec{Name: "arith"}, arithInput()); err != nil {
			t.Fatal(err)
		}
	}
	if a.svc.PredictCalls() != before {
		t.Fatal("an unhealthy endpoint got calls while a healthy one was there")
	}

	// HealthModel: GetModelStatus must show an AVAILABLE version.
	g := newFleet(t, with(tfserving.DefaultFleetConfig([]string{b.addr}), func(c *tfserving.FleetConfig) { c.HealthModel = "missing" }))
	testutil.WaitFor(t, 10*time.Second, "missing model unhealthy", func() bool { return !g.Endpoints()[0].Healthy })
	h := newFleet(t, with(tfserving.DefaultFleetConfig([]string{b.addr}), func(c *tfserving.FleetConfig) { c.HealthModel = "arith" }))
	testutil.WaitFor(t, 10*time.Second, "checked", func() bool { return !h.Endpoints()[0].CheckedAt.IsZero() })
	if !h.Endpoints()[0].Healthy {
		t.Fatalf("arith is AVAILABLE: %+v", h.Endpoints()[0])
	}
}

func TestFleetTLS(t *testing.T) {
	cert, pool := selfSigned(t)
	a := newReplica(t, grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}})))
	f := newFleet(t, with(tfserving.DefaultFleetConfig([]string{a.addr}), func(c *tfserving.FleetConfig) { c.TLS = &tls.Config{RootCAs: pool} }))
	if _, err := f.Predict(context.Background(), model.Spec{Name: "arith"}, arithInput()); err != nil {
		t.Fatal(err)
	}
	// Plaintext to a TLS endpoint fails as UNAVAILABLE.
	g := newFleet(t, tfserving.DefaultFleetConfig([]string{a.addr}))
	if _, err := g.Predict(context.Background(), model.Spec{Name: "arith"}, arithInput()); status.Code(err) != codes.Unavailable {
		t.Fatalf("plaintext to TLS: %v", err)
	}
}

func selfSigned(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "tfserving-test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// TestFleetStatusEach: every endpoint's versions of a model, in
// configuration order, with the error of one that does not answer.
func TestFleetStatusEach(t *testing.T) {
	a, b := newReplica(t), newReplica(t)
	f := newFleet(t, tfserving.DefaultFleetConfig([]string{a.addr, b.addr}))
	b.kill()
	got := f.StatusEach(context.Background(), "arith")
	if len(got) != 2 || got[0].Address != a.addr || got[1].Address != b.addr {
		t.Fatalf("endpoints %+v", got)
	}
	if got[0].Err != nil || len(got[0].Versions) != 2 || got[0].Versions[0].Version != 2 || !got[0].Versions[1].Available() {
		t.Errorf("%s: %+v", a.addr, got[0])
	}
	if status.Code(got[1].Err) != codes.Unavailable {
		t.Errorf("%s (down): %+v", b.addr, got[1])
	}
	if got := f.StatusEach(context.Background(), "nope"); status.Code(got[0].Err) != codes.NotFound {
		t.Errorf("unknown model: %+v", got[0])
	}
}
