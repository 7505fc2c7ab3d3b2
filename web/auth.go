package web

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
)

// Authentication. Every /api/v1 call needs the admin token, reads included: DLQ records hold
// the original request payloads and the settings show the deployment. A caller proves it
// either with "Authorization: Bearer <token>" (scripts, the CLI) or with the session cookie
// the login page sets (the dashboard). Because browsers attach cookies on their own, a
// cookie-authenticated state-changing call must also carry the session's CSRF token in
// X-CSRF-Token; SameSite=Strict already keeps the cookie off cross-site requests, and the
// token covers what SameSite does not (old browsers, same-site sibling hosts).
//
// Wrong tokens, on the login page or in a Bearer header, count against the client address
// in a loginLimiter. The limiter limits failures, never success: the token is checked before
// the limiter is asked, so the right token works even while the address is blocked. Every
// local client shares the address 127.0.0.1, and a few bad attempts by one of them must not
// lock the operator's `infergate dlq` CLI out for minutes (issue 9). The price is that a
// blocked guesser still learns when a guess is right; what keeps guessing hopeless is the
// token itself (generated: 192 random bits; configured: at least 16 characters), and the
// limiter still answers wrong guesses with 429 and logs them.

const (
	csrfHeader     = "X-CSRF-Token"
	csrfFormField  = "csrf_token"
	cookieName     = "infergate_session"
	secureCookie   = "__Host-infergate_session" // the __Host- prefix pins it to this host, path /, Secure
	authViaBearer  = "bearer"
	authViaSession = "session"
	ctxSession     = "web.session"
	ctxPrincipal   = "web.principal"
)

// tokenEqual compares in constant time. Hashing first makes the comparison independent of the
// lengths too, which subtle.ConstantTimeCompare alone is not.
func tokenEqual(got, want string) bool {
	g := sha256.Sum256([]byte(got))
	w := sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return base64.RawURLEncoding.EncodeToString(b)
}

type session struct {
	csrf    string
	expires time.Time
	who     principal
}

// sessions are kept in memory: a restart logs the dashboard out, which is acceptable for an
// appliance and keeps session secrets off the disk.
type sessions struct {
	mu  sync.Mutex
	m   map[string]*session
	ttl time.Duration
	max int
	now func() time.Time
}

func newSessions(ttl time.Duration, now func() time.Time) *sessions {
	return &sessions{m: make(map[string]*session), ttl: ttl, max: defaultMaxSessions, now: now}
}

func (s *sessions) create(who principal) (id string, sess *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if len(s.m) >= s.max {
		s.evictLocked(now)
	}
	id = randomToken()
	sess = &session{csrf: randomToken(), expires: now.Add(s.ttl), who: who}
	s.m[id] = sess
	return id, sess
}

// evictLocked drops expired sessions and, if that frees nothing, the one closest to expiry,
// so a flood of logins cannot grow the map without bound.
func (s *sessions) evictLocked(now time.Time) {
	var oldestID string
	var oldest time.Time
	for id, v := range s.m {
		if now.After(v.expires) {
			delete(s.m, id)
			continue
		}
		if oldestID == "" || v.expires.Before(oldest) {
			oldestID, oldest = id, v.expires
		}
	}
	if len(s.m) >= s.max && oldestID != "" {
		delete(s.m, oldestID)
	}
}

func (s *sessions) lookup(id string) (*session, bool) {
	if id == "" {
		return nil, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[id]
	if !ok {
		return nil, false
	}
	if s.now().After(v.expires) {
		delete(s.m, id)
		return nil, false
	}
	return v, true
}

func (s *sessions) delete(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
}

// deleteActor ends every session of actor (a deleted or demoted user, a rotated token).
func (s *sessions) deleteActor(actor string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, v := range s.m {
		if v.who.actor == actor {
			delete(s.m, id)
		}
	}
}

// loginLimiter slows down token guessing per client address: the first `free` failures cost
// nothing (typos), then each further failure blocks the address for a delay that doubles from
// base up to max. A success clears the address. Entries idle for longer than forget are dropped,
// and the map is bounded.
type loginLimiter struct {
	mu      sync.Mutex
	free    int
	base    time.Duration
	max     time.Duration
	forget  time.Duration
	entries int
	now     func() time.Time
	clients map[string]*failState
}

type failState struct {
	failures     int
	blockedUntil time.Time
	last         time.Time
}

func newLoginLimiter(free int, base, maxDelay time.Duration, now func() time.Time) *loginLimiter {
	return &loginLimiter{
		free: free, base: base, max: maxDelay,
		forget:  max(defaultLimiterForgetAge, 2*maxDelay),
		entries: defaultLimiterEntries,
		now:     now,
		clients: make(map[string]*failState),
	}
}

// wait returns how long the client must wait before its next attempt (0: go ahead).
func (l *loginLimiter) wait(client string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	st, ok := l.clients[client]
	if !ok {
		return 0
	}
	if d := st.blockedUntil.Sub(l.now()); d > 0 {
		return d
	}
	return 0
}

// fail records a wrong token and returns the delay now imposed (0 while failures are free).
func (l *loginLimiter) fail(client string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	st, ok := l.clients[client]
	if !ok {
		if len(l.clients) >= l.entries {
			l.evictLocked(now)
		}
		st = &failState{}
		l.clients[client] = st
	} else if now.Sub(st.last) > l.forget {
		*st = failState{}
	}
	st.failures++
	st.last = now
	over := st.failures - l.free
	if over <= 0 {
		return 0
	}
	d := l.base
	for i := 1; i < over && d < l.max; i++ {
		d *= 2
	}
	d = min(d, l.max)
	st.blockedUntil = now.Add(d)
	return d
}

func (l *loginLimiter) succeed(client string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.clients, client)
}

// failures reports the failure count of client (for tests and the debug log).
func (l *loginLimiter) failures(client string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if st, ok := l.clients[client]; ok {
		return st.failures
	}
	return 0
}

func (l *loginLimiter) evictLocked(now time.Time) {
	var oldestKey string
	var oldest time.Time
	for k, st := range l.clients {
		if now.Sub(st.last) > l.forget {
			delete(l.clients, k)
			continue
		}
		if oldestKey == "" || st.last.Before(oldest) {
			oldestKey, oldest = k, st.last
		}
	}
	if len(l.clients) >= l.entries && oldestKey != "" {
		delete(l.clients, oldestKey)
	}
}

// clientKey is the limiter key of a request: the peer address (never X-Forwarded-For, which
// a guesser could vary freely), with IPv6 grouped by /64 because one host usually owns a
// whole /64.
func clientKey(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return host
	}
	if ip.To4() == nil {
		return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
	}
	return ip.String()
}

// retryAfterSeconds rounds a wait up to whole seconds for Retry-After.
func retryAfterSeconds(d time.Duration) int {
	return int((d + time.Second - 1) / time.Second)
}

func (s *Server) cookieName() string {
	if s.tls {
		return secureCookie
	}
	return cookieName
}

// sessionFromCookie returns the request's valid session, if any.
func (s *Server) sessionFromCookie(r *http.Request) (string, *session, bool) {
	ck, err := r.Cookie(s.cookieName())
	if err != nil {
		return "", nil, false
	}
	sess, ok := s.sessions.lookup(ck.Value)
	return ck.Value, sess, ok
}

// byToken is who holds token: the bootstrap admin token or a user's API token.
func (s *Server) byToken(token string) (principal, bool) {
	if token == "" {
		return principal{}, false
	}
	if tokenEqual(token, s.adminToken()) {
		return principal{actor: adminTokenActor, role: RoleAdmin}, true
	}
	return s.users.byToken(token)
}

// checkBearer validates an Authorization header, applying the limiter. ok is false with a
// nil error when the request has no Authorization header at all.
func (s *Server) checkBearer(r *http.Request) (p principal, ok bool, err error) {
	h := r.Header.Get(echo.HeaderAuthorization)
	if h == "" {
		return principal{}, false, nil
	}
	client := clientKey(r)
	scheme, token, found := strings.Cut(h, " ")
	if found && strings.EqualFold(scheme, "Bearer") {
		if p, ok := s.byToken(strings.TrimSpace(token)); ok {
			s.limiter.succeed(client)
			return p, true, nil
		}
	}
	if d := s.limiter.wait(client); d > 0 {
		s.limiter.fail(client)
		return principal{}, false, &APIError{Code: http.StatusTooManyRequests, Message: "too many failed attempts; retry later", RetryAfter: retryAfterSeconds(d)}
	}
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return principal{}, false, apiErr(http.StatusUnauthorized, "Authorization must be \"Bearer <token>\" (the admin token or a user's API token)")
	}
	s.limiter.fail(client)
	s.auditAs("", "login_failed", "invalid bearer token from "+client)
	return principal{}, false, apiErr(http.StatusUnauthorized, "invalid token")
}

// principalOf is who made the request (set by need).
func principalOf(c echo.Context) principal {
	p, _ := c.Get(ctxPrincipal).(principal)
	return p
}

// requireAuth is for routes that do not name a role: reads need a viewer, changes an admin.
func (s *Server) requireAuth(next echo.HandlerFunc) echo.HandlerFunc {
	viewer, admin := s.need(RoleViewer)(next), s.need(RoleAdmin)(next)
	return func(c echo.Context) error {
		if safeMethod(c.Request().Method) {
			return viewer(c)
		}
		return admin(c)
	}
}

// need guards a route of /api/v1 (and /metrics with MetricsAuth): the caller must be
// authenticated and hold role, or a role that includes it.
func (s *Server) need(role Role) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return s.authenticated(func(c echo.Context) error {
			p := principalOf(c)
			if !p.role.includes(role) {
				return apiErr(http.StatusForbidden, "%s %s needs the %s role; %s has the %s role", c.Request().Method, c.Request().URL.Path, role, p.actor, p.role)
			}
			return next(c)
		})
	}
}

// authenticated finds who calls, by Bearer token or session cookie (with CSRF check).
func (s *Server) authenticated(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		p, ok, err := s.checkBearer(r)
		if err != nil {
			return err
		}
		if ok {
			c.Set(ctxSession, (*session)(nil))
			c.Set(ctxPrincipal, p)
			c.SetRequest(r.WithContext(WithActor(r.Context(), p.actor)))
			return next(c)
		}
		_, sess, ok := s.sessionFromCookie(r)
		if !ok {
			return apiErr(http.StatusUnauthorized, "authentication required: Authorization: Bearer <admin token>, or log in at /login")
		}
		if !safeMethod(r.Method) {
			got := r.Header.Get(csrfHeader)
			if got == "" || !tokenEqual(got, sess.csrf) {
				return apiErr(http.StatusForbidden, "missing or wrong %s header (a session-authenticated change needs the CSRF token from GET /api/v1/session)", csrfHeader)
			}
		}
		c.Set(ctxSession, sess)
		c.Set(ctxPrincipal, sess.who)
		c.SetRequest(r.WithContext(WithActor(r.Context(), sess.who.actor)))
		return next(c)
	}
}

type actorKey struct{}

// WithActor returns ctx carrying who asked for a change, for the components
// behind the API that audit their changes themselves (the rollout
// controller): the request context of every authenticated call carries it.
func WithActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, actorKey{}, actor)
}

// ActorFrom is the actor WithActor put into ctx; "" when the appliance acts
// by itself (a planned rollout step, a guard's rollback).
func ActorFrom(ctx context.Context) string {
	a, _ := ctx.Value(actorKey{}).(string)
	return a
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// handleSession tells the dashboard its CSRF token and who is logged in.
func (s *Server) handleSession(c echo.Context) error {
	p := principalOf(c)
	sess, _ := c.Get(ctxSession).(*session)
	if sess == nil {
		return c.JSON(http.StatusOK, map[string]any{"via": authViaBearer, "actor": p.actor, "role": p.role})
	}
	return c.JSON(http.StatusOK, map[string]any{"via": authViaSession, "csrf_token": sess.csrf, "expires_at": sess.expires.UTC(),
		"actor": p.actor, "role": p.role})
}

type loginPage struct {
	Error   string
	Version string
}

func (s *Server) handleLoginPage(c echo.Context) error {
	if _, _, ok := s.sessionFromCookie(c.Request()); ok {
		return c.Redirect(http.StatusSeeOther, "/")
	}
	return s.renderLogin(c, http.StatusOK, "")
}

func (s *Server) renderLogin(c echo.Context, code int, msg string) error {
	c.Response().Header().Set(echo.HeaderContentType, echo.MIMETextHTMLCharsetUTF8)
	c.Response().Header().Set("Cache-Control", "no-store")
	c.Response().WriteHeader(code)
	return s.loginTmpl.Execute(c.Response(), loginPage{Error: msg, Version: s.cfg.Version})
}

// handleLogin checks the login form (user name and password, or a token) and starts a
// session.
func (s *Server) handleLogin(c echo.Context) error {
	r := c.Request()
	client := clientKey(r)
	r.Body = http.MaxBytesReader(c.Response(), r.Body, 4096)
	user := strings.TrimSpace(c.FormValue("username"))
	var who principal
	ok := false
	what := "wrong token"
	// The wait comes first for passwords: bcrypt costs ~50 ms, which a blocked guesser
	// must not be able to spend.
	if user != "" {
		what = "wrong user name or password for " + strconv.Quote(user)
		if d := s.limiter.wait(client); d == 0 {
			who, ok = s.users.login(user, c.FormValue("password"))
		}
	} else {
		who, ok = s.byToken(strings.TrimSpace(c.FormValue("token")))
	}
	if !ok {
		if d := s.limiter.wait(client); d > 0 {
			s.limiter.fail(client)
			c.Response().Header().Set("Retry-After", itoa(retryAfterSeconds(d)))
			return s.renderLogin(c, http.StatusTooManyRequests, "Too many failed attempts. Try again in "+itoa(retryAfterSeconds(d))+" s.")
		}
		d := s.limiter.fail(client)
		s.log.Warn("failed dashboard login", "client", client, "failures", s.limiter.failures(client), "blocked_for", d)
		s.auditAs("", "login_failed", what+" at the dashboard login from "+client)
		if user != "" {
			return s.renderLogin(c, http.StatusUnauthorized, "Wrong user name or password.")
		}
		return s.renderLogin(c, http.StatusUnauthorized, "Wrong admin token or API token.")
	}
	s.limiter.succeed(client)
	id, _ := s.sessions.create(who)
	c.SetCookie(&http.Cookie{
		Name:     s.cookieName(),
		Value:    id,
		Path:     "/",
		MaxAge:   int(s.cfg.SessionTTL / time.Second),
		HttpOnly: true,
		Secure:   s.tls,
		SameSite: http.SameSiteStrictMode,
	})
	s.auditAs(who.actor, "login", "dashboard session ("+string(who.role)+") from "+client)
	return c.Redirect(http.StatusSeeOther, "/")
}

// handleLogout ends the session. It needs the CSRF token (header or form field) so another
// site cannot log the operator out.
func (s *Server) handleLogout(c echo.Context) error {
	id, sess, ok := s.sessionFromCookie(c.Request())
	if ok {
		got := c.Request().Header.Get(csrfHeader)
		if got == "" {
			got = c.FormValue(csrfFormField)
		}
		if !tokenEqual(got, sess.csrf) {
			return apiErr(http.StatusForbidden, "missing or wrong CSRF token")
		}
		s.sessions.delete(id)
	}
	c.SetCookie(&http.Cookie{Name: s.cookieName(), Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: s.tls, SameSite: http.SameSiteStrictMode})
	return c.Redirect(http.StatusSeeOther, "/login")
}
