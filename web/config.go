package web

import (
	"net"
	"time"

	"github.com/infergate/infergate/inference/feed"
	"github.com/infergate/infergate/internal/field"
	"github.com/infergate/infergate/internal/logring"
)

// Defaults of DefaultConfig, the one place they are filled in: New and Validate change nothing.
const (
	DefaultListen            = "127.0.0.1:8080"
	DefaultSessionTTL        = 12 * time.Hour
	DefaultLoginFreeFails    = 5
	DefaultLoginBackoff      = time.Second
	DefaultLoginMaxBackoff   = 5 * time.Minute
	DefaultEventsInterval    = time.Second
	DefaultMaxUploadBytes    = 256 << 20
	DefaultTestTimeout       = 10 * time.Second
	DefaultShutdownTimeout   = 5 * time.Second
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadTimeout       = time.Minute
	DefaultUploadTimeout     = 10 * time.Minute
	DefaultIdleTimeout       = 2 * time.Minute
	minAdminTokenLen         = 16
	maxEventsInterval        = time.Minute
	minEventsInterval        = 10 * time.Millisecond
	defaultMaxSessions       = 1000
	defaultLimiterEntries    = 10000
	defaultLimiterForgetAge  = time.Hour
)

// Config configures the dashboard, admin API and /metrics listener. Errors from Validate name
// settings as they appear in the config file (section "http"), because that is where the
// operator fixes them; the admin token comes from INFERGATE_ADMIN_TOKEN or the data dir.
type Config struct {
	// Listen is the address of the dashboard, API and /metrics. Loopback by default: the API
	// can replay and delete data, so exposing it on a LAN must be a deliberate choice.
	Listen string `yaml:"listen"`
	// TLSCert and TLSKey enable HTTPS (PEM files); both or neither. With TLS the session
	// cookie is marked Secure.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// AdminToken authenticates the API (Authorization: Bearer) and the login page.
	AdminToken string `yaml:"-"`
	// SessionTTL is how long a dashboard login lasts.
	SessionTTL time.Duration `yaml:"session_ttl"`
	// LoginFreeFailures is how many wrong tokens one client address may send before each
	// further attempt must wait; the wait doubles per failure from LoginBackoff up to
	// LoginMaxBackoff, so typos cost nothing and guessing costs exponentially more.
	LoginFreeFailures int           `yaml:"login_free_failures"`
	LoginBackoff      time.Duration `yaml:"login_backoff"`
	LoginMaxBackoff   time.Duration `yaml:"login_max_backoff"`
	// MetricsAuth requires the admin token on /metrics too. Off by default because
	// Prometheus scrapers usually sit on a trusted network and the metrics hold no payloads.
	MetricsAuth bool `yaml:"metrics_auth"`
	// EventsInterval is the period of the dashboard's live snapshots (/api/v1/events).
	EventsInterval time.Duration `yaml:"events_interval"`
	// MaxUploadBytes bounds an uploaded model file.
	MaxUploadBytes int64 `yaml:"max_upload_bytes"`
	// UploadDir is where uploads are streamed to before the backend takes them: the model
	// repository, so it can rename them into place. "" is os.TempDir().
	UploadDir string `yaml:"-"`
	// UploadMinFree is the free space an upload must leave in UploadDir's file system: the
	// appliance's min_free_bytes when UploadDir is in the data dir, so an upload cannot fill
	// the disk under the store and the broker. 0: no floor.
	UploadMinFree int64 `yaml:"-"`
	// TestTimeout bounds "send a test request" and replay-and-wait from the dashboard.
	TestTimeout time.Duration `yaml:"test_timeout"`
	// ShutdownTimeout bounds how long Run waits for requests in flight when ctx ends.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// ReadHeaderTimeout bounds the arrival of a request's headers, ReadTimeout that of its
	// body (UploadTimeout for a model upload), IdleTimeout how long a keep-alive connection
	// may wait for its next request. A connection that misses one is closed, so slow or
	// stalled senders cannot hold connections open. Responses are not bounded: event
	// streams last as long as the dashboard is open.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	ReadTimeout       time.Duration `yaml:"read_timeout"`
	UploadTimeout     time.Duration `yaml:"upload_timeout"`
	IdleTimeout       time.Duration `yaml:"idle_timeout"`
	// RotateAdminToken, when set, makes a new admin token durable (the appliance writes it
	// to <data dir>/admin-token) and returns it; nil when the token comes from the config
	// or the environment, which the API cannot change.
	RotateAdminToken func() (string, error) `yaml:"-"`
	// Logs holds the appliance's recent log records for the dashboard's log view (the
	// appliance tees its log handler into it); nil: web keeps its own records only.
	Logs *logring.Ring `yaml:"-"`
	// Predictions is the pipeline's recent predictions and per-model anomaly counts; nil
	// when no pipeline runs here (the Predictions view is then empty).
	Predictions *feed.Feed `yaml:"-"`
	// Version is the infergate build version shown by the dashboard and /api/v1/status.
	Version string `yaml:"-"`
}

// DefaultConfig returns the defaults; the caller sets AdminToken.
func DefaultConfig() Config {
	return Config{
		Listen:            DefaultListen,
		SessionTTL:        DefaultSessionTTL,
		LoginFreeFailures: DefaultLoginFreeFails,
		LoginBackoff:      DefaultLoginBackoff,
		LoginMaxBackoff:   DefaultLoginMaxBackoff,
		EventsInterval:    DefaultEventsInterval,
		MaxUploadBytes:    DefaultMaxUploadBytes,
		TestTimeout:       DefaultTestTimeout,
		ShutdownTimeout:   DefaultShutdownTimeout,
		ReadHeaderTimeout: DefaultReadHeaderTimeout,
		ReadTimeout:       DefaultReadTimeout,
		UploadTimeout:     DefaultUploadTimeout,
		IdleTimeout:       DefaultIdleTimeout,
	}
}

// Validate reports every invalid field as a *field.Error (the appliance names
// it by its setting; a Go caller sees the field's name). It changes nothing:
// defaults come from DefaultConfig.
func (c *Config) Validate() error {
	var v field.Errors
	if c.Listen == "" {
		v.Add(&c.Listen, "Listen", "must be set (host:port, e.g. 127.0.0.1:8080)")
	} else if _, port, err := net.SplitHostPort(c.Listen); err != nil {
		v.Add(&c.Listen, "Listen", "%q is not host:port: %w", c.Listen, err)
	} else if port == "" {
		v.Add(&c.Listen, "Listen", "%q has no port", c.Listen)
	}
	if c.AdminToken == "" {
		v.Add(&c.AdminToken, "AdminToken", "must be set (INFERGATE_ADMIN_TOKEN or <data dir>/admin-token)")
	}
	c.validateSettings(&v)
	return v.Err()
}

// ValidateSettings is Validate without the two fields the appliance fills
// after reading its settings: Listen may be empty (the dashboard off) and
// AdminToken empty (one is generated). Every other check is Validate's.
func (c *Config) ValidateSettings() error {
	var v field.Errors
	c.validateSettings(&v)
	return v.Err()
}

func (c *Config) validateSettings(v *field.Errors) {
	if (c.TLSCert == "") != (c.TLSKey == "") {
		v.Add(&c.TLSCert, "TLSCert", "set it and the TLS key both to serve HTTPS, or neither")
	}
	if c.AdminToken != "" && len(c.AdminToken) < minAdminTokenLen {
		v.Add(&c.AdminToken, "AdminToken", "is %d characters; use at least %d (or leave it empty to have one generated)", len(c.AdminToken), minAdminTokenLen)
	}
	// Durations and sizes that must be positive; the error names the
	// default, which is what the operator most likely meant by 0.
	for _, d := range []struct {
		ptr  *time.Duration
		name string
		def  time.Duration
	}{
		{&c.SessionTTL, "SessionTTL", DefaultSessionTTL},
		{&c.LoginBackoff, "LoginBackoff", DefaultLoginBackoff},
		{&c.LoginMaxBackoff, "LoginMaxBackoff", DefaultLoginMaxBackoff},
		{&c.TestTimeout, "TestTimeout", DefaultTestTimeout},
		{&c.ShutdownTimeout, "ShutdownTimeout", DefaultShutdownTimeout},
		{&c.ReadHeaderTimeout, "ReadHeaderTimeout", DefaultReadHeaderTimeout},
		{&c.ReadTimeout, "ReadTimeout", DefaultReadTimeout},
		{&c.UploadTimeout, "UploadTimeout", DefaultUploadTimeout},
		{&c.IdleTimeout, "IdleTimeout", DefaultIdleTimeout},
	} {
		if *d.ptr <= 0 {
			v.Add(d.ptr, d.name, "must be a positive duration such as 500ms or 10s (default %s), got %s", d.def, *d.ptr)
		}
	}
	if c.LoginFreeFailures < 0 {
		v.Add(&c.LoginFreeFailures, "LoginFreeFailures", "must be >= 0, got %d", c.LoginFreeFailures)
	}
	if c.LoginBackoff > 0 && c.LoginMaxBackoff > 0 && c.LoginMaxBackoff < c.LoginBackoff {
		v.Add(&c.LoginMaxBackoff, "LoginMaxBackoff", "must be >= the login backoff (%s), got %s", c.LoginBackoff, c.LoginMaxBackoff)
	}
	if c.EventsInterval < minEventsInterval || c.EventsInterval > maxEventsInterval {
		v.Add(&c.EventsInterval, "EventsInterval", "must be between %s and %s, got %s", minEventsInterval, maxEventsInterval, c.EventsInterval)
	}
	if c.MaxUploadBytes <= 0 {
		v.Add(&c.MaxUploadBytes, "MaxUploadBytes", "must be positive (default %d), got %d", DefaultMaxUploadBytes, c.MaxUploadBytes)
	}
}
