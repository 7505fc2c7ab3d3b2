package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/infergate/infergate/internal/testutil"
	"github.com/infergate/infergate/store"
)

const testToken = "test-admin-token-0123456789"

type testEnv struct {
	t       *testing.T
	srv     *Server
	backend *memBackend
	store   *store.Store
	base    string
}

// newEnv starts a real server on 127.0.0.1:0 over a real store in t.TempDir() and a
// memBackend whose registry is the server's gatherer.
func newEnv(t *testing.T, mutate ...func(*Config)) *testEnv {
	t.Helper()
	st, err := store.Open(store.DefaultConfig(t.TempDir()), testutil.Logger(t))
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	b := newMemBackend(st)
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.AdminToken = testToken
	cfg.Version = "test"
	cfg.EventsInterval = 50 * time.Millisecond
	for _, m := range mutate {
		m(&cfg)
	}
	return startEnv(t, cfg, b, st, b.reg)
}

func startEnv(t *testing.T, cfg Config, b *memBackend, st *store.Store, g prometheus.Gatherer) *testEnv {
	t.Helper()
	srv, err := New(cfg, testutil.Logger(t), b, st, g)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("Run did not return after cancel")
		}
	})
	return &testEnv{t: t, srv: srv, backend: b, store: st, base: srv.URL()}
}

type resp struct {
	code   int
	header http.Header
	body   []byte
}

func (r resp) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decoding %s: %v", r.body, err)
	}
}

func (r resp) errMsg(t *testing.T) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	r.json(t, &e)
	if e.Error == "" {
		t.Fatalf("no error message in %s", r.body)
	}
	return e.Error
}

// call sends a request with the bearer token (auth "" sends none). body may be nil, a
// []byte/string (sent as is) or anything else (sent as JSON).
func (e *testEnv) call(method, path, auth string, body any, hdr ...string) resp {
	e.t.Helper()
	return doRequest(e.t, http.DefaultClient, method, e.base+path, auth, body, hdr...)
}

func (e *testEnv) api(method, path string, body any, hdr ...string) resp {
	e.t.Helper()
	return e.call(method, path, testToken, body, hdr...)
}

func doRequest(t *testing.T, hc *http.Client, method, u, auth string, body any, hdr ...string) resp {
	t.Helper()
	var rd io.Reader
	ctype := ""
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		js, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(js)
		ctype = "application/json"
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp{code: res.StatusCode, header: res.Header, body: b}
}

func expectCode(t *testing.T, r resp, want int) {
	t.Helper()
	if r.code != want {
		t.Fatalf("status %d, want %d; body %s", r.code, want, r.body)
	}
}

// browserClient is an HTTP client with a cookie jar that does not follow redirects, like a
// browser session seen one response at a time.
func browserClient(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// login posts the login form and returns the session's CSRF token.
func (e *testEnv) login(hc *http.Client) string {
	e.t.Helper()
	r := e.postLogin(hc, testToken)
	expectCode(e.t, r, http.StatusSeeOther)
	s := doRequest(e.t, hc, http.MethodGet, e.base+"/api/v1/session", "", nil)
	expectCode(e.t, s, http.StatusOK)
	var sess struct {
		CSRF string `json:"csrf_token"`
	}
	s.json(e.t, &sess)
	if sess.CSRF == "" {
		e.t.Fatalf("no csrf token in %s", s.body)
	}
	return sess.CSRF
}

func (e *testEnv) postLogin(hc *http.Client, token string) resp {
	e.t.Helper()
	form := url.Values{"token": {token}}.Encode()
	return doRequest(e.t, hc, http.MethodPost, e.base+"/login", "", form, "Content-Type", "application/x-www-form-urlencoded")
}

var errNotYet = errors.New("not yet")

func putRecords(t *testing.T, st *store.Store, recs ...*store.Record) {
	t.Helper()
	if err := st.Put(context.Background(), recs...); err != nil {
		t.Fatalf("put: %v", err)
	}
}

// fakeClock is a settable clock for the session and limiter expiry tests.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// startEnvWithRegistry starts a second server over env's backend and store with another
// gatherer.
func startEnvWithRegistry(t *testing.T, env *testEnv, g prometheus.Gatherer) *testEnv {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.AdminToken = testToken
	return startEnv(t, cfg, env.backend, env.store, g)
}

func (b *memBackend) offsetsSum() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	var s int64
	for _, e := range b.ends {
		s += e
	}
	return s
}
