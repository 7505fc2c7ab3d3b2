package web

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"mime/multipart"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/infergate/infergate/internal/testutil"
	"github.com/infergate/infergate/store"
)

func TestConfigValidate(t *testing.T) {
	good := DefaultConfig()
	good.AdminToken = testToken
	if err := good.Validate(); err != nil {
		t.Fatalf("default config with a token: %v", err)
	}
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"no listen", func(c *Config) { c.Listen = "" }, "Listen"},
		{"listen without port", func(c *Config) { c.Listen = "localhost" }, "Listen"},
		{"cert without key", func(c *Config) { c.TLSCert = "cert.pem" }, "TLSCert"},
		{"no token", func(c *Config) { c.AdminToken = "" }, "INFERGATE_ADMIN_TOKEN"},
		{"short token", func(c *Config) { c.AdminToken = "short" }, "at least 16"},
		{"negative ttl", func(c *Config) { c.SessionTTL = -time.Second }, "SessionTTL"},
		{"negative free failures", func(c *Config) { c.LoginFreeFailures = -1 }, "LoginFreeFailures"},
		{"max below base", func(c *Config) { c.LoginBackoff = time.Minute; c.LoginMaxBackoff = time.Second }, "LoginMaxBackoff"},
		{"events too fast", func(c *Config) { c.EventsInterval = time.Microsecond }, "EventsInterval"},
		{"negative upload", func(c *Config) { c.MaxUploadBytes = -1 }, "MaxUploadBytes"},
		{"negative test timeout", func(c *Config) { c.TestTimeout = -1 }, "TestTimeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.mutate(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want an error naming %q", err, tt.want)
			}
		})
	}
	// New reports the same, and a busy port names the setting.
	st, err := store.Open(store.DefaultConfig(t.TempDir()), testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	bad := good
	bad.AdminToken = ""
	if _, err := New(bad, nil, newMemBackend(st), st, nil); err == nil || !strings.Contains(err.Error(), "AdminToken: must be set") {
		t.Fatalf("New with no token: %v", err)
	}
	env := newEnv(t)
	busy := good
	busy.Listen = env.srv.Addr()
	if _, err := New(busy, nil, newMemBackend(st), st, nil); err == nil || !strings.Contains(err.Error(), "http.listen") {
		t.Fatalf("New on a busy port: %v", err)
	}
}

func TestHealthAndReadiness(t *testing.T) {
	env := newEnv(t)
	expectCode(t, env.call("GET", "/healthz", "", nil), 200)
	expectCode(t, env.call("GET", "/readyz", "", nil), 200)

	env.backend.mu.Lock()
	env.backend.ready = errors.New("broker: not connected")
	env.backend.mu.Unlock()
	r := env.call("GET", "/readyz", "", nil)
	expectCode(t, r, http.StatusServiceUnavailable)
	if msg := r.errMsg(t); !strings.Contains(msg, "broker: not connected") {
		t.Fatalf("readyz error %q does not say why", msg)
	}
	env.backend.mu.Lock()
	env.backend.ready = nil
	env.backend.mu.Unlock()
	expectCode(t, env.call("GET", "/readyz", "", nil), 200)

	// Data loss: degraded, still 200, with what was lost as the reason.
	lost := "store: DATA CORRUPTION: table 000001.sst is corrupt"
	env.backend.mu.Lock()
	env.backend.warnings = []string{lost, "store: 3 dead-lettered records are lost"}
	env.backend.mu.Unlock()
	r = env.call("GET", "/readyz", "", nil)
	expectCode(t, r, 200)
	var body struct {
		Status   string   `json:"status"`
		Reason   string   `json:"reason"`
		Warnings []string `json:"warnings"`
	}
	r.json(t, &body)
	if body.Status != "degraded" || !strings.Contains(body.Reason, lost) || !strings.Contains(body.Reason, "3 dead-lettered records") || len(body.Warnings) != 2 {
		t.Fatalf("/readyz with data loss: %s", r.body)
	}
	// Not ready wins over degraded.
	env.backend.mu.Lock()
	env.backend.ready = errors.New("pipeline: stalled")
	env.backend.mu.Unlock()
	expectCode(t, env.call("GET", "/readyz", "", nil), http.StatusServiceUnavailable)
	env.backend.mu.Lock()
	env.backend.ready, env.backend.warnings = nil, nil
	env.backend.mu.Unlock()
	if r := env.call("GET", "/readyz", "", nil); r.code != 200 || !bytes.Contains(r.body, []byte(`"status":"ready"`)) {
		t.Fatalf("/readyz after: %d %s", r.code, r.body)
	}

	env.srv.SetStopping()
	r = env.call("GET", "/readyz", "", nil)
	expectCode(t, r, http.StatusServiceUnavailable)
	expectCode(t, env.call("GET", "/healthz", "", nil), 200)
}

func TestAuthRequired(t *testing.T) {
	env := newEnv(t, func(c *Config) { c.LoginFreeFailures = 1000 })
	for _, ep := range []struct{ method, path string }{
		{"GET", "/api/v1/status"}, {"POST", "/api/v1/pipeline/pause"}, {"POST", "/api/v1/pipeline/resume"},
		{"GET", "/api/v1/topics"}, {"GET", "/api/v1/models"}, {"POST", "/api/v1/models/demo/versions"},
		{"PUT", "/api/v1/models/demo/labels/stable"}, {"POST", "/api/v1/models/reload"}, {"GET", "/api/v1/dlq"},
		{"GET", "/api/v1/dlq/01JAAAAAAAAAAAAAAAAAAAAAAA"}, {"POST", "/api/v1/dlq/replay"},
		{"DELETE", "/api/v1/dlq/01JAAAAAAAAAAAAAAAAAAAAAAA"}, {"GET", "/api/v1/sidecar"}, {"GET", "/api/v1/settings"},
		{"GET", "/api/v1/events"}, {"POST", "/api/v1/test-request"}, {"GET", "/api/v1/audit"},
	} {
		r := env.call(ep.method, ep.path, "", nil)
		if r.code != http.StatusUnauthorized {
			t.Errorf("%s %s without token: %d %s", ep.method, ep.path, r.code, r.body)
			continue
		}
		if r.errMsg(t) == "" || r.header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s %s: 401 without message or WWW-Authenticate", ep.method, ep.path)
		}
		if r := env.call(ep.method, ep.path, "wrong-token-wrong-token", nil); r.code != http.StatusUnauthorized {
			t.Errorf("%s %s with a wrong token: %d", ep.method, ep.path, r.code)
		}
	}
	r := env.call("GET", "/api/v1/status", "", nil, "Authorization", "Basic "+testToken)
	expectCode(t, r, http.StatusUnauthorized)
	expectCode(t, env.api("GET", "/api/v1/status", nil), 200)
	// The dashboard page itself sends a browser without a session to the login page.
	r = doRequest(t, browserClient(t), "GET", env.base+"/", "", nil)
	expectCode(t, r, http.StatusSeeOther)
	if loc := r.header.Get("Location"); loc != "/login" {
		t.Fatalf("redirect to %q", loc)
	}
}

func TestSessionCookieAndCSRF(t *testing.T) {
	env := newEnv(t)
	hc := browserClient(t)
	// Wrong token: 401 and the login page again, no cookie.
	r := env.postLogin(hc, "not-the-token-at-all")
	expectCode(t, r, http.StatusUnauthorized)
	if !bytes.Contains(r.body, []byte("Wrong admin token")) {
		t.Fatalf("login page does not say why: %s", r.body)
	}
	r = env.postLogin(hc, testToken)
	expectCode(t, r, http.StatusSeeOther)
	ck := r.header.Get("Set-Cookie")
	for _, want := range []string{cookieName + "=", "HttpOnly", "SameSite=Strict", "Path=/"} {
		if !strings.Contains(ck, want) {
			t.Fatalf("Set-Cookie %q lacks %q", ck, want)
		}
	}
	if strings.Contains(ck, "Secure") {
		t.Fatalf("Secure cookie without TLS: %q", ck)
	}
	csrf := env.login(hc)

	get := func(path string, hdr ...string) resp { return doRequest(t, hc, "GET", env.base+path, "", nil, hdr...) }
	post := func(path string, hdr ...string) resp { return doRequest(t, hc, "POST", env.base+path, "", nil, hdr...) }
	expectCode(t, get("/"), 200)
	expectCode(t, get("/api/v1/status"), 200)
	// A cookie alone does not change anything.
	r = post("/api/v1/pipeline/pause")
	expectCode(t, r, http.StatusForbidden)
	if !strings.Contains(r.errMsg(t), csrfHeader) {
		t.Fatalf("403 does not name the header: %s", r.body)
	}
	expectCode(t, post("/api/v1/pipeline/pause", csrfHeader, "forged"), http.StatusForbidden)
	expectCode(t, post("/api/v1/pipeline/pause", csrfHeader, csrf), 200)
	if st, _ := env.backend.Status(context.Background()); st.Pipeline.State != StatePaused {
		t.Fatalf("pipeline not paused after the CSRF-checked call")
	}
	// Logout needs the token too, then the session is gone.
	expectCode(t, post("/logout"), http.StatusForbidden)
	expectCode(t, post("/logout", csrfHeader, csrf), http.StatusSeeOther)
	expectCode(t, get("/api/v1/status"), http.StatusUnauthorized)
	expectCode(t, get("/"), http.StatusSeeOther)
}

func TestSessionExpires(t *testing.T) {
	env := newEnv(t)
	clock := newFakeClock()
	env.srv.sessions.now = clock.Now
	hc := browserClient(t)
	env.login(hc)
	expectCode(t, doRequest(t, hc, "GET", env.base+"/api/v1/status", "", nil), 200)
	clock.Advance(DefaultSessionTTL + time.Second)
	expectCode(t, doRequest(t, hc, "GET", env.base+"/api/v1/status", "", nil), http.StatusUnauthorized)
}

// TestLoginSlowdown: wrong tokens are slowed down per client address, and (issue 9 row 12)
// the right token always works, even from an address that is blocked, so a few bad attempts
// by one local client cannot lock the operator's CLI out.
func TestLoginSlowdown(t *testing.T) {
	env := newEnv(t, func(c *Config) {
		c.LoginFreeFailures = 2
		c.LoginBackoff = time.Minute
		c.LoginMaxBackoff = 10 * time.Minute
	})
	clock := newFakeClock()
	env.srv.limiter.now = clock.Now
	advance := clock.Advance

	hc := browserClient(t)
	for i := 1; i <= 3; i++ {
		expectCode(t, env.postLogin(hc, fmt.Sprintf("guess-number-%d-guess", i)), http.StatusUnauthorized)
	}
	if n := env.srv.limiter.failures("127.0.0.1"); n != 3 {
		t.Fatalf("limiter counted %d failures, want 3", n)
	}
	// Blocked now: wrong tokens wait, on the login page and as a Bearer header.
	r := env.postLogin(hc, "guess-number-4-guess")
	expectCode(t, r, http.StatusTooManyRequests)
	if ra := r.header.Get("Retry-After"); ra != "60" {
		t.Fatalf("Retry-After %q, want 60", ra)
	}
	r = env.call("GET", "/api/v1/status", "another-wrong-token-x", nil)
	expectCode(t, r, http.StatusTooManyRequests)
	if r.header.Get("Retry-After") == "" {
		t.Fatal("429 without Retry-After")
	}
	// Failures while blocked count too: the block grew.
	if d := env.srv.limiter.wait("127.0.0.1"); d <= time.Minute {
		t.Fatalf("delay after failures while blocked: %s, want more than 1m", d)
	}
	// The right token is never locked out: as a Bearer header (the CLI) ...
	expectCode(t, env.api("GET", "/api/v1/status", nil), http.StatusOK)
	// ... which cleared the address; block it again and log in through the page.
	for i := 1; i <= 4; i++ {
		env.postLogin(hc, fmt.Sprintf("guess-number-%d-again", i))
	}
	if d := env.srv.limiter.wait("127.0.0.1"); d <= 0 {
		t.Fatal("not blocked after 4 failures")
	}
	expectCode(t, env.postLogin(hc, testToken), http.StatusSeeOther)
	if n := env.srv.limiter.failures("127.0.0.1"); n != 0 {
		t.Fatalf("failures after a success: %d", n)
	}
	// After the wait one more wrong guess is a plain 401, and each further one doubles the delay.
	for i := 1; i <= 3; i++ {
		env.call("GET", "/api/v1/status", fmt.Sprintf("wrong-token-number-%d", i), nil)
	}
	advance(61 * time.Second)
	expectCode(t, env.call("GET", "/api/v1/status", "another-wrong-token-x", nil), http.StatusUnauthorized)
	if d := env.srv.limiter.wait("127.0.0.1"); d <= time.Minute || d > 2*time.Minute {
		t.Fatalf("second delay %s, want 2m", d)
	}
}

func TestLimiterUnit(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newLoginLimiter(1, time.Second, 8*time.Second, func() time.Time { return now })
	if d := l.fail("a"); d != 0 {
		t.Fatalf("free failure imposed %s", d)
	}
	var got []time.Duration
	for range 6 {
		got = append(got, l.fail("a"))
	}
	want := []time.Duration{1, 2, 4, 8, 8, 8}
	for i := range want {
		if got[i] != want[i]*time.Second {
			t.Fatalf("delays %v, want %v s", got, want)
		}
	}
	if l.wait("b") != 0 {
		t.Fatal("another client is blocked")
	}
	// Idle long enough, the slate is clean.
	now = now.Add(l.forget + time.Second)
	if d := l.fail("a"); d != 0 {
		t.Fatalf("failure after forget: %s", d)
	}
	// The map stays bounded.
	l.entries = 10
	for i := range 50 {
		l.fail(fmt.Sprint("c", i))
	}
	if len(l.clients) > 10 {
		t.Fatalf("%d entries, bound 10", len(l.clients))
	}
	r, _ := http.NewRequest("GET", "/", nil)
	r.RemoteAddr = "[2001:db8:1:2:3:4:5:6]:443"
	if k := clientKey(r); k != "2001:db8:1:2::/64" {
		t.Fatalf("IPv6 key %q", k)
	}
	r.RemoteAddr = "192.0.2.7:1234"
	r.Header.Set("X-Forwarded-For", "198.51.100.1")
	if k := clientKey(r); k != "192.0.2.7" {
		t.Fatalf("key %q trusts X-Forwarded-For", k)
	}
}

func TestStatusEndpoint(t *testing.T) {
	env := newEnv(t)
	putRecords(t, env.store, &store.Record{Class: "decode", Value: []byte("x")})
	var st Status
	env.api("GET", "/api/v1/status", nil).json(t, &st)
	if st.Version != "test" || st.GoVersion == "" || st.StartedAt.IsZero() {
		t.Fatalf("versions not filled: %+v", st)
	}
	if st.Broker.State != StateOK || st.Pipeline.State != StateOK || st.ModelServer.Mode != "embedded" {
		t.Fatalf("backend status lost: %+v", st)
	}
	if st.Store.State != StateOK || !strings.Contains(st.Store.Detail, "1 DLQ records") {
		t.Fatalf("store component %+v", st.Store)
	}
}

func TestPauseResume(t *testing.T) {
	env := newEnv(t)
	var r map[string]string
	env.api("POST", "/api/v1/pipeline/pause", nil).json(t, &r)
	if r["pipeline"] != StatePaused {
		t.Fatalf("pause: %v", r)
	}
	var st Status
	env.api("GET", "/api/v1/status", nil).json(t, &st)
	if st.Pipeline.State != StatePaused {
		t.Fatalf("status after pause: %+v", st.Pipeline)
	}
	expectCode(t, env.api("POST", "/api/v1/pipeline/resume", nil), 200)
	env.api("GET", "/api/v1/status", nil).json(t, &st)
	if st.Pipeline.State != StateOK {
		t.Fatalf("status after resume: %+v", st.Pipeline)
	}
	expectCode(t, env.api("GET", "/api/v1/pipeline/pause", nil), http.StatusMethodNotAllowed)
}

func TestTopicsEndpoint(t *testing.T) {
	env := newEnv(t)
	env.backend.traffic(30)
	var r struct{ Topics []Topic }
	env.api("GET", "/api/v1/topics", nil).json(t, &r)
	if len(r.Topics) != 3 || r.Topics[0].Role != RoleRequests || len(r.Topics[0].Partitions) != 3 {
		t.Fatalf("topics %+v", r.Topics)
	}
	var end int64
	for _, p := range r.Topics[0].Partitions {
		end += p.EndOffset
		if p.Lag != p.EndOffset-p.Committed {
			t.Fatalf("partition %+v: lag is not end - committed", p)
		}
	}
	if end != 30 {
		t.Fatalf("end offsets sum to %d, want 30", end)
	}
	env.backend.mu.Lock()
	env.backend.topicsErr = fmt.Errorf("listing offsets: %w", ErrUnavailable)
	env.backend.mu.Unlock()
	expectCode(t, env.api("GET", "/api/v1/topics", nil), http.StatusServiceUnavailable)
}

func TestModelsEndpoints(t *testing.T) {
	env := newEnv(t, func(c *Config) { c.MaxUploadBytes = 1 << 10 })
	var ms struct{ Models []Model }
	env.api("GET", "/api/v1/models", nil).json(t, &ms)
	if len(ms.Models) != 1 || ms.Models[0].Name != "demo" || ms.Models[0].Labels["stable"] != 1 {
		t.Fatalf("models %+v", ms.Models)
	}

	// Raw body upload, next version.
	r := env.api("POST", "/api/v1/models/demo/versions", []byte("onnx-bytes"), "Content-Type", "application/octet-stream")
	expectCode(t, r, http.StatusCreated)
	var up struct {
		Name    string
		Version int64
	}
	r.json(t, &up)
	if up.Name != "demo" || up.Version != 2 {
		t.Fatalf("upload answered %s", r.body)
	}
	// Multipart with an explicit version, to a new model.
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	_ = mw.WriteField("version", "7")
	fw, _ := mw.CreateFormFile("file", "model.onnx")
	_, _ = fw.Write([]byte("other-onnx"))
	_ = mw.Close()
	r = env.api("POST", "/api/v1/models/fraud/versions", buf.Bytes(), "Content-Type", mw.FormDataContentType())
	expectCode(t, r, http.StatusCreated)
	r.json(t, &up)
	if up.Name != "fraud" || up.Version != 7 {
		t.Fatalf("multipart upload answered %s", r.body)
	}
	env.api("GET", "/api/v1/models", nil).json(t, &ms)
	if len(ms.Models) != 2 || ms.Models[0].Versions[1].Version != 2 || ms.Models[0].Versions[1].State != ModelAvailable {
		t.Fatalf("models after upload %+v", ms.Models)
	}

	// Bad uploads.
	expectCode(t, env.api("POST", "/api/v1/models/demo/versions?version=2", []byte("again")), http.StatusConflict)
	expectCode(t, env.api("POST", "/api/v1/models/demo/versions", []byte{}), http.StatusBadRequest)
	expectCode(t, env.api("POST", "/api/v1/models/demo/versions?version=-3", []byte("x")), http.StatusBadRequest)
	expectCode(t, env.api("POST", "/api/v1/models/..evil/versions", []byte("x")), http.StatusBadRequest)
	r = env.api("POST", "/api/v1/models/demo/versions", bytes.Repeat([]byte("x"), 2<<10))
	expectCode(t, r, http.StatusRequestEntityTooLarge)
	if !strings.Contains(r.errMsg(t), "http.max_upload_bytes") {
		t.Fatalf("413 does not name the setting: %s", r.body)
	}
	buf.Reset()
	mw = multipart.NewWriter(&buf)
	_ = mw.WriteField("version", "1")
	_ = mw.Close()
	expectCode(t, env.api("POST", "/api/v1/models/demo/versions", buf.Bytes(), "Content-Type", mw.FormDataContentType()), http.StatusBadRequest)

	// Labels.
	r = env.api("PUT", "/api/v1/models/demo/labels/canary", map[string]int{"version": 2})
	expectCode(t, r, 200)
	env.api("GET", "/api/v1/models", nil).json(t, &ms)
	if ms.Models[0].Labels["canary"] != 2 {
		t.Fatalf("label not set: %+v", ms.Models[0])
	}
	for _, tc := range []struct {
		path string
		body any
		code int
	}{
		{"/api/v1/models/demo/labels/canary", map[string]int{"version": 0}, 400},
		{"/api/v1/models/demo/labels/canary", map[string]int{"version": -1}, 400},
		{"/api/v1/models/demo/labels/canary", map[string]any{}, 400},
		{"/api/v1/models/demo/labels/canary", `{"version": "two"}`, 400},
		{"/api/v1/models/demo/labels/canary", `{"version": 2`, 400},
		{"/api/v1/models/demo/labels/canary", `{"version": 2, "extra": 1}`, 400},
		{"/api/v1/models/demo/labels/canary", nil, 400},
		{"/api/v1/models/demo/labels/canary", map[string]int{"version": 99}, 400}, // no such version
		{"/api/v1/models/nosuch/labels/canary", map[string]int{"version": 1}, 404},
		{"/api/v1/models/demo/labels/-bad", map[string]int{"version": 1}, 400},
	} {
		r := env.api("PUT", tc.path, tc.body)
		if r.code != tc.code {
			t.Errorf("PUT %s %v: %d %s, want %d", tc.path, tc.body, r.code, r.body, tc.code)
		} else {
			r.errMsg(t)
		}
	}

	expectCode(t, env.api("POST", "/api/v1/models/reload", nil), 200)
	if env.backend.callCount("reload") != 1 {
		t.Fatal("reload not passed to the backend")
	}
}

func TestTestRequestEndpoint(t *testing.T) {
	env := newEnv(t)
	good := `{"request_id": "t-1", "features": [1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]}`
	r := env.api("POST", "/api/v1/test-request?key=k1&header=model:demo", good, "Content-Type", "application/json")
	expectCode(t, r, 200)
	var out struct {
		Result struct {
			RequestID  string    `json:"request_id"`
			Prediction []float64 `json:"prediction"`
		}
		LatencyMS float64 `json:"latency_ms"`
	}
	r.json(t, &out)
	if out.Result.RequestID != "t-1" || len(out.Result.Prediction) != 1 || out.Result.Prediction[0] != 1 {
		t.Fatalf("result %s", r.body)
	}
	r = env.api("POST", "/api/v1/test-request", `{"request_id": "t-2", "features": [1, 2]}`)
	expectCode(t, r, http.StatusBadRequest)
	if msg := r.errMsg(t); !strings.Contains(msg, "validation") {
		t.Fatalf("dead-letter reason missing: %q", msg)
	}
	expectCode(t, env.api("POST", "/api/v1/test-request", ""), http.StatusBadRequest)
	expectCode(t, env.api("POST", "/api/v1/test-request?header=nocolon", good), http.StatusBadRequest)

	// Both sent requests are audited with their actor and outcome; the
	// refused calls sent nothing and are not.
	entries, err := env.store.AuditLog(100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		if e.Action == "pipeline.test_request" {
			got = append(got, e.Actor+" "+e.Detail)
		}
	}
	if len(got) != 2 || !slices.ContainsFunc(got, func(s string) bool {
		return strings.HasPrefix(s, `admin-token key "k1"`) && strings.HasSuffix(s, ": answered")
	}) ||
		!slices.ContainsFunc(got, func(s string) bool { return strings.Contains(s, "validation") }) {
		t.Fatalf("test requests audited as %q", got)
	}
}

func TestSidecarAndSettings(t *testing.T) {
	env := newEnv(t)
	var sc map[string]any
	env.api("GET", "/api/v1/sidecar", nil).json(t, &sc)
	if sc["enabled"] != false {
		t.Fatalf("sidecar in embedded mode: %v", sc)
	}
	env.backend.mu.Lock()
	env.backend.sidecar = &SidecarStatus{Mode: "sidecar", State: "running", PID: 42, Restarts: 3, LastExit: "exit status 1",
		LogTail: []string{"Running gRPC ModelServer at 0.0.0.0:8500 ..."}}
	env.backend.mu.Unlock()
	env.api("GET", "/api/v1/sidecar", nil).json(t, &sc)
	if sc["enabled"] != true || sc["restarts"] != float64(3) || sc["state"] != "running" {
		t.Fatalf("sidecar: %v", sc)
	}
	var settings map[string]any
	env.api("GET", "/api/v1/settings", nil).json(t, &settings)
	if settings["data_dir"] != "./infergate-data" {
		t.Fatalf("settings %v", settings)
	}
}

func TestAuditAndUnknownEndpoint(t *testing.T) {
	env := newEnv(t)
	expectCode(t, env.api("POST", "/api/v1/pipeline/pause", nil), 200)
	var a struct{ Entries []store.AuditEntry }
	env.api("GET", "/api/v1/audit", nil).json(t, &a)
	if len(a.Entries) == 0 || a.Entries[0].Action != "pipeline.pause" {
		t.Fatalf("audit %+v", a.Entries)
	}
	expectCode(t, env.api("GET", "/api/v1/audit?limit=0", nil), 400)
	r := env.api("GET", "/api/v1/nope", nil)
	expectCode(t, r, 404)
	r.errMsg(t)
}

// Failed logins, on the page and as a Bearer token, are in the audit log
// with the client; a blocked (429) attempt is not, so the log stays bounded.
func TestFailedLoginsAudited(t *testing.T) {
	env := newEnv(t)
	hc := browserClient(t)
	expectCode(t, env.postLogin(hc, "a-wrong-token-at-the-login-page"), http.StatusUnauthorized)
	expectCode(t, env.call("GET", "/api/v1/status", "a-wrong-bearer-token-for-the-api", nil), http.StatusUnauthorized)
	var a struct{ Entries []store.AuditEntry }
	env.api("GET", "/api/v1/audit", nil).json(t, &a)
	var failed []string
	for _, e := range a.Entries {
		if e.Action == "login_failed" {
			failed = append(failed, e.Detail)
		}
	}
	if len(failed) != 2 {
		t.Fatalf("login_failed audit entries %q, want 2 (page and bearer); all: %+v", failed, a.Entries)
	}
	for _, d := range failed {
		if !strings.Contains(d, "127.0.0.1") {
			t.Errorf("audit detail %q does not name the client", d)
		}
		if strings.Contains(d, "wrong-token") || strings.Contains(d, "wrong-bearer") {
			t.Errorf("audit detail %q contains the guessed token", d)
		}
	}
}

func TestStatusOf(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code int
	}{
		{fmt.Errorf("x: %w", ErrNotFound), 404},
		{fmt.Errorf("x: %w", store.ErrNotFound), 404},
		{fmt.Errorf("x: %w", ErrInvalid), 400},
		{fmt.Errorf("x: %w", store.ErrInvalid), 400},
		{fmt.Errorf("x: %w", ErrConflict), 409},
		{fmt.Errorf("x: %w", ErrUnsupported), 501},
		{fmt.Errorf("x: %w", ErrUnavailable), 503},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), 504},
		{fmt.Errorf("upload: %w", status.Error(codes.InvalidArgument, "not an ONNX model")), 400},
		{status.Error(codes.NotFound, "no model"), 404},
		{status.Error(codes.Unavailable, "down"), 503},
		{status.Error(codes.AlreadyExists, "v2"), 409},
		{errors.New("boom"), 500},
		{apiErr(418, "teapot"), 418},
	} {
		if got := statusOf(tc.err); got != tc.code {
			t.Errorf("statusOf(%v) = %d, want %d", tc.err, got, tc.code)
		}
	}
	if m := errorMessage(fmt.Errorf("wrapped: %w", status.Error(codes.NotFound, "no model x"))); !strings.Contains(m, "no model x") {
		t.Errorf("gRPC message %q", m)
	}
}

// An upload that would take UploadDir's file system below UploadMinFree is refused with 507
// naming min_free_bytes, and leaves no temporary file (the appliance's tmpfs test,
// TestUploadKeepsMinFreeBytes, fills a real small file system).
func TestUploadRefusedBelowMinFree(t *testing.T) {
	dir := t.TempDir()
	env := newEnv(t, func(c *Config) { c.UploadDir, c.UploadMinFree = dir, 1<<62 })
	r := env.api("POST", "/api/v1/models/demo/versions", []byte("onnx-bytes"), "Content-Type", "application/octet-stream")
	expectCode(t, r, http.StatusInsufficientStorage)
	if msg := r.errMsg(t); !strings.Contains(msg, "min_free_bytes") {
		t.Errorf("refusal %q does not name min_free_bytes", msg)
	}
	if left, _ := os.ReadDir(dir); len(left) > 0 {
		t.Errorf("left in the upload dir: %v", left)
	}
	// With room it is taken.
	env = newEnv(t, func(c *Config) { c.UploadDir, c.UploadMinFree = dir, 1 })
	expectCode(t, env.api("POST", "/api/v1/models/demo/versions", []byte("onnx-bytes"), "Content-Type", "application/octet-stream"), http.StatusCreated)
}
