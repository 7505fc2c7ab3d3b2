// Package web serves the dashboard, the admin API (/api/v1), /metrics, /healthz and /readyz.
//
// The API is JSON; every error is {"error": "..."} with a status code chosen by statusOf. The
// dashboard is plain HTML, CSS and JavaScript embedded in the binary (it must work offline on
// a factory network) and gets live numbers from /api/v1/events (server-sent events).
package web

import (
	"context"
	"crypto/tls"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/infergate/infergate/internal/httpdeadline"
	"github.com/infergate/infergate/internal/logring"
	"github.com/infergate/infergate/store"
)

//go:embed ui
var uiFS embed.FS

// Server is the HTTP side of the appliance. New binds the listener, so a port conflict is
// reported before anything else starts; Run serves until its context ends.
type Server struct {
	cfg      Config
	log      *slog.Logger
	backend  Backend
	store    *store.Store
	gatherer prometheus.Gatherer // the appliance's metrics merged with web's own
	sampler  *sampler
	topics   *cache // Backend.Topics, shared by the sampler and scrapes
	models   *cache // Backend.Models, likewise

	echo      *echo.Echo
	srv       *http.Server
	ln        net.Listener
	tls       bool
	loginTmpl *template.Template
	sessions  *sessions
	limiter   *loginLimiter
	users     *users
	adminTok  atomic.Pointer[string] // the bootstrap admin token; rotation replaces it
	logs      *logring.Ring
	now       func() time.Time

	stopping  atomic.Bool
	done      chan struct{} // closed when Run starts shutting down, ends event streams
	doneOnce  sync.Once
	closeOnce sync.Once
	started   time.Time
}

// New validates cfg, binds the listener and builds the routes. gatherer holds the
// appliance's metrics (the pipeline's among them); web adds the Go runtime and process
// collectors (unless gatherer already has them), store gauges and consumer lag. Call Run, or
// Close if the appliance gives up before Run.
func New(cfg Config, logger *slog.Logger, backend Backend, st *store.Store, gatherer prometheus.Gatherer) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("web: %w", err)
	}
	if backend == nil || st == nil {
		return nil, errors.New("web: backend and store are required")
	}
	if logger == nil {
		logger = slog.Default()
	}
	if gatherer == nil {
		gatherer = prometheus.NewRegistry()
	}
	logs := cfg.Logs
	if logs == nil {
		logs = logring.New(0)
		logger = slog.New(logring.Tee(logger.Handler(), logs))
	}
	s := &Server{
		logs:     logs,
		cfg:      cfg,
		log:      logger.With("component", "web"),
		backend:  backend,
		store:    st,
		now:      time.Now,
		done:     make(chan struct{}),
		started:  time.Now(),
		sessions: newSessions(cfg.SessionTTL, time.Now),
		limiter:  newLoginLimiter(cfg.LoginFreeFailures, cfg.LoginBackoff, cfg.LoginMaxBackoff, time.Now),
	}
	s.adminTok.Store(&cfg.AdminToken)
	us, err := loadUsers(st)
	if err != nil {
		return nil, fmt.Errorf("web: users: %w", err)
	}
	s.users = us
	tmpl, err := template.ParseFS(uiFS, "ui/login.html")
	if err != nil {
		return nil, fmt.Errorf("web: login template: %w", err)
	}
	s.loginTmpl = tmpl

	s.topics = newCache(cfg.EventsInterval/2, func(ctx context.Context) (any, error) { return backend.Topics(ctx) })
	s.models = newCache(cfg.EventsInterval/2, func(ctx context.Context) (any, error) { return backend.Models(ctx) })
	skip := &skipSet{}
	own, err := ownRegistry(gatherer, st, backend, s.topics, s.models, skip)
	if err != nil {
		return nil, fmt.Errorf("web: metrics: %w", err)
	}
	s.gatherer = mergedGatherer{primary: gatherer, own: own, skip: skip, mu: &sync.Mutex{}}
	s.sampler = newSampler(gatherer, backend, st, s.topics, s.models, cfg.EventsInterval, s.log)

	var tlsCfg *tls.Config
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("web: http.tls_cert/http.tls_key: %w", err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		s.tls = true
	}

	s.echo = s.routes()
	s.srv = &http.Server{
		// No ReadTimeout/WriteTimeout: its deadline would also end event streams and slow
		// handlers; httpdeadline bounds the body alone (model uploads get longer).
		Handler:           httpdeadline.Handler(s.echo, s.bodyTimeout),
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("web: http.listen %s: %w", cfg.Listen, err)
	}
	s.ln = ln
	return s, nil
}

// bodyTimeout is how long a request's body may take to arrive: model uploads are large and
// may come over a slow link.
func (s *Server) bodyTimeout(r *http.Request) time.Duration {
	if r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/api/v1/models/") && strings.HasSuffix(r.URL.Path, "/versions") {
		return s.cfg.UploadTimeout
	}
	return s.cfg.ReadTimeout
}

// Addr is the bound address (useful with port 0).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// URL is the base URL of the dashboard.
func (s *Server) URL() string {
	if s.tls {
		return "https://" + s.Addr()
	}
	return "http://" + s.Addr()
}

// SetStopping makes /readyz answer 503 so load balancers and the supervisor stop sending
// work while the appliance drains. The API keeps working until Run returns.
func (s *Server) SetStopping() { s.stopping.Store(true) }

// Close releases the listener when Run was never called. Safe to call more than once and
// after Run.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		if e := s.ln.Close(); e != nil && !errors.Is(e, net.ErrClosed) {
			err = e
		}
	})
	return err
}

// Run serves until ctx ends, then stops accepting, ends event streams and waits up to
// ShutdownTimeout for requests in flight. It returns nil after a clean shutdown.
func (s *Server) Run(ctx context.Context) error {
	s.log.Info("dashboard and admin API listening", "url", s.URL())
	samplerCtx, stopSampler := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() { s.sampler.run(samplerCtx) })
	defer func() {
		stopSampler()
		wg.Wait()
	}()

	errc := make(chan error, 1)
	go func() {
		var err error
		if s.tls {
			err = s.srv.ServeTLS(s.ln, "", "")
		} else {
			err = s.srv.Serve(s.ln)
		}
		errc <- err
	}()
	select {
	case err := <-errc:
		s.closeOnce.Do(func() {})
		return fmt.Errorf("web: serve %s: %w", s.Addr(), err)
	case <-ctx.Done():
	}
	s.stopping.Store(true)
	s.doneOnce.Do(func() { close(s.done) })
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	err := s.srv.Shutdown(sctx)
	s.closeOnce.Do(func() {}) // Shutdown closed the listener
	<-errc
	if err != nil {
		_ = s.srv.Close()
		return fmt.Errorf("web: shutdown: %w", err)
	}
	return nil
}

func (s *Server) routes() *echo.Echo {
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = s.errorHandler
	// The peer address, never X-Forwarded-For: the login limiter keys on it.
	e.IPExtractor = echo.ExtractIPDirect()
	e.Use(s.recoverer, securityHeaders)

	e.GET("/healthz", s.handleHealthz)
	e.GET("/readyz", s.handleReadyz)
	metrics := promhttp.HandlerFor(s.gatherer, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError, ErrorLog: slogPromLogger{s.log}})
	if s.cfg.MetricsAuth {
		e.GET("/metrics", echo.WrapHandler(metrics), s.need(RoleViewer))
	} else {
		e.GET("/metrics", echo.WrapHandler(metrics))
	}

	e.GET("/login", s.handleLoginPage)
	e.POST("/login", s.handleLogin)
	e.POST("/logout", s.handleLogout)
	e.GET("/", s.handleIndex)
	assets, _ := fs.Sub(uiFS, "ui/assets")
	e.GET("/assets/*", echo.WrapHandler(http.StripPrefix("/assets/", noCache(http.FileServer(http.FS(assets))))))

	// Auth is route middleware rather than group middleware: echo's group middleware adds a
	// catch-all route that would turn "405 wrong method" into 404.
	// Each route names the least role that may call it (see users.go).
	api := e.Group("/api/v1")
	viewer, operator, admin := s.need(RoleViewer), s.need(RoleOperator), s.need(RoleAdmin)
	api.GET("/session", s.handleSession, viewer)
	api.GET("/me", s.handleMe, viewer)
	api.GET("/status", s.handleStatus, viewer)
	api.POST("/pipeline/pause", s.handlePause, operator)
	api.POST("/pipeline/resume", s.handleResume, operator)
	api.GET("/topics", s.handleTopics, viewer)
	api.GET("/group", s.handleGroup, viewer)
	api.POST("/test-request", s.handleTestRequest, operator)
	api.GET("/models", s.handleModels, viewer)
	api.POST("/models/reload", s.handleReload, admin)
	api.POST("/models/:name/versions", s.handleUpload, admin)
	api.PUT("/models/:name/labels/:label", s.handleSetLabel, admin)
	api.GET("/dlq", s.handleDLQList, viewer)
	api.POST("/dlq/replay", s.handleDLQReplay, operator)
	api.POST("/dlq/delete", s.handleDLQBulkDelete, operator)
	api.GET("/dlq/:id", s.handleDLQShow, viewer)
	api.DELETE("/dlq/:id", s.handleDLQDelete, operator)
	api.POST("/dlq/:id/replay", s.handleDLQReplayOne, operator)
	api.GET("/sidecar", s.handleSidecar, viewer)
	api.GET("/ingress", s.handleIngress, viewer)
	api.GET("/settings", s.handleSettings, viewer)
	api.PUT("/settings", s.handleSettingsUpdate, admin)
	api.GET("/audit", s.handleAudit, viewer)
	api.GET("/events", s.handleEvents, viewer)
	api.GET("/logs", s.handleLogs, viewer)
	api.GET("/predictions", s.handlePredictions, viewer)
	api.PUT("/models/:name/threshold", s.handleSetThreshold, admin)
	api.GET("/users", s.handleUsersList, admin)
	api.POST("/users", s.handleUserCreate, admin)
	api.PATCH("/users/:name", s.handleUserUpdate, admin)
	api.DELETE("/users/:name", s.handleUserDelete, admin)
	// A user's own password and tokens: the user or an admin (selfOrAdmin).
	api.POST("/users/:name/password", s.handleUserPassword, viewer)
	api.POST("/users/:name/tokens", s.handleUserTokenCreate, viewer)
	api.DELETE("/users/:name/tokens/:id", s.handleUserTokenDelete, viewer)
	api.POST("/admin-token/rotate", s.handleRotateAdminToken, admin)
	s.rolloutRoutes(api)
	s.datasetRoutes(api)
	return e
}

// recoverer turns a handler panic into a 500 and logs the stack, instead of echo's default
// of killing the connection.
func (s *Server) recoverer(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			if r := recover(); r != nil {
				if r == http.ErrAbortHandler {
					panic(r)
				}
				buf := make([]byte, 16<<10)
				buf = buf[:runtime.Stack(buf, false)]
				s.log.Error("handler panic", "path", c.Request().URL.Path, "panic", r, "stack", string(buf))
				err = apiErr(http.StatusInternalServerError, "internal error: %v", r)
			}
		}()
		return next(c)
	}
}

// securityHeaders: the dashboard loads nothing from elsewhere and runs no inline script, so a
// strict Content-Security-Policy costs nothing and blunts any injected markup.
func securityHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
		return next(c)
	}
}

func noCache(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Assets are small and change with the binary; revalidating keeps an upgraded
		// appliance from running yesterday's JavaScript.
		w.Header().Set("Cache-Control", "no-cache")
		h.ServeHTTP(w, r)
	})
}

func (s *Server) handleIndex(c echo.Context) error {
	if _, _, ok := s.sessionFromCookie(c.Request()); !ok {
		return c.Redirect(http.StatusSeeOther, "/login")
	}
	b, err := uiFS.ReadFile("ui/index.html")
	if err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.HTMLBlob(http.StatusOK, b)
}

func (s *Server) handleHealthz(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "alive"})
}

func (s *Server) handleReadyz(c echo.Context) error {
	if s.stopping.Load() {
		return apiErr(http.StatusServiceUnavailable, "stopping")
	}
	if err := s.backend.Ready(); err != nil {
		return &APIError{Code: http.StatusServiceUnavailable, Message: "not ready: " + err.Error(), Err: err}
	}
	if _, err := s.store.GetSetting("web.readyz"); err != nil && !errors.Is(err, store.ErrNotFound) {
		return &APIError{Code: http.StatusServiceUnavailable, Message: "not ready: store: " + err.Error(), Err: err}
	}
	body := map[string]any{"status": "ready"}
	// Data loss found in the store or the broker is "degraded", still 200: the rest of
	// the data is good and requests flow, and failing the probe would only take the
	// dashboard and API out of a load balancer while the pipeline goes on consuming.
	// What was lost is the reason; the status page, the metrics and the alert say it too.
	if w, ok := s.backend.(dataWarner); ok {
		if ws := w.DataWarnings(); len(ws) > 0 {
			body["status"] = "degraded"
			body["reason"] = strings.Join(ws, "; ")
			body["warnings"] = ws
		}
	}
	return c.JSON(http.StatusOK, body)
}

// dataWarner is a Backend that knows of data loss (the appliance's does).
type dataWarner interface{ DataWarnings() []string }

// audit records an action by the request's caller.
func (s *Server) audit(c echo.Context, action, detail string) {
	s.auditAs(principalOf(c).actor, action, detail)
}

// auditAs records an action by actor; a failure to write the audit log must not fail the
// action.
func (s *Server) auditAs(actor, action, detail string) {
	if err := s.store.AuditAs(actor, action, detail); err != nil {
		s.log.Warn("writing audit log", "action", action, "err", err)
	}
	s.log.Info("admin action", "actor", actor, "action", action, "detail", detail)
}

func (s *Server) adminToken() string { return *s.adminTok.Load() }

func (s *Server) setAdminToken(t string) { s.adminTok.Store(&t) }

func itoa(n int) string { return strconv.Itoa(n) }

// slogPromLogger adapts slog to promhttp's Println logger.
type slogPromLogger struct{ l *slog.Logger }

func (p slogPromLogger) Println(v ...any) { p.l.Warn("metrics gathering", "err", fmt.Sprint(v...)) }
