package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Durability says when the embedded broker forces acknowledged records to
// stable storage. Both settings write every record to the data dir before the
// produce is acknowledged, so both survive a crash of the process; they
// differ on power loss and kernel panics.
type Durability string

const (
	// DurabilityFsync acknowledges a produced batch (and every offset
	// commit) only once it is on stable storage, by a group commit
	// (groupsync.go): an acknowledged record survives power loss.
	DurabilityFsync Durability = "fsync"
	// DurabilityOS hands writes to the operating system and fsyncs only when
	// a segment rolls and on a clean Close: an acknowledged record survives a
	// crash or SIGKILL of the process, but the last seconds of writes can be
	// lost on power loss, as with Kafka's default flush settings.
	DurabilityOS Durability = "os"
	// DurabilityMemory keeps the topics in memory and writes nothing to the
	// data dir: every record still in a topic (requests not yet processed,
	// results not yet read) is lost when the process exits, and topic
	// budgets (retention.bytes) are RAM. It is the default on Windows, where
	// the other two cannot work (SupportedOn).
	DurabilityMemory Durability = "memory"
)

// DefaultDurabilityFor is the durability an unset broker.durability means
// on goos: DefaultDurability, except on Windows, DurabilityMemory.
func DefaultDurabilityFor(goos string) Durability {
	if goos == "windows" {
		return DurabilityMemory
	}
	return DefaultDurability
}

// SupportedOn says whether the embedded broker can run with d on goos.
// On Windows it cannot persist: kfake (v0.0.0-20260918054303-01f206a7e32c)
// writes its state files to a temporary file and renames it while the file
// is still open (persist.go writeJSONFile, savePIDsLog), which Windows
// refuses because Go opens files without FILE_SHARE_DELETE; the first start
// fails with "rename …\meta.json.tmp …\meta.json: Sharing violation" (seen
// with the windows/amd64 build under Wine 8.0, 2026-12-06).
func (d Durability) SupportedOn(goos string) error {
	if goos == "windows" && d != DurabilityMemory {
		return fmt.Errorf("%q cannot work on Windows: the embedded broker (kfake) renames its state files while they are open, "+
			"which Windows refuses; use %q (topics in memory, lost at exit) or an external Kafka cluster (broker.mode: external)", d, DurabilityMemory)
	}
	return nil
}

// Defaults of EmbeddedConfig, applied by Validate to zero-valued fields.
const (
	DefaultListen                 = "127.0.0.1:9092"
	DefaultDurability             = DurabilityFsync
	DefaultBrokerLogLevel         = "warn"
	DefaultRetentionCheckInterval = 5 * time.Minute
)

// EmbeddedConfig configures the in-process broker. Validate fills zero-valued
// fields with the defaults above.
type EmbeddedConfig struct {
	// DataDir holds topics, record segments, committed group offsets and
	// producer state. It is created if missing. One process at a time.
	DataDir string `yaml:"data_dir"`
	// Listen is the host:port to bind. Port 0 picks a free port.
	Listen string `yaml:"listen"`
	// Advertise is the host:port (or just host, to reuse the bound port)
	// that clients are told to connect to. Defaults to Listen; required when
	// Listen binds all interfaces, because "0.0.0.0" is not an address
	// another machine can dial.
	Advertise string `yaml:"advertise"`
	// Durability: "fsync" (default), "os" or "memory" (the default on
	// Windows). See docs/broker.md.
	Durability Durability `yaml:"durability"`
	// LogLevel is the most verbose kfake log level passed on to the
	// logger: "error", "warn" (default), "info" or "debug". kfake logs
	// every failed request at info, which is noise in production.
	LogLevel string `yaml:"log_level"`
	// RetentionCheckInterval is how often topic retention (retention.ms,
	// retention.bytes) is enforced.
	RetentionCheckInterval time.Duration `yaml:"retention_check_interval"`
	// MinFreeBytes is the free space the data dir's file system must keep:
	// below it produce requests are refused with KAFKA_STORAGE_ERROR, which
	// clients retry (see health.go). 0 turns the check off.
	MinFreeBytes int64 `yaml:"min_free_bytes"`
}

// Validate applies defaults to zero-valued fields and checks the rest. Errors
// name the setting (and its flag) at fault.
func (c *EmbeddedConfig) Validate() error {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.Durability == "" {
		c.Durability = DefaultDurabilityFor(runtime.GOOS)
	}
	if c.LogLevel == "" {
		c.LogLevel = DefaultBrokerLogLevel
	}
	if c.RetentionCheckInterval == 0 {
		c.RetentionCheckInterval = DefaultRetentionCheckInterval
	}

	var errs []error
	if strings.TrimSpace(c.DataDir) == "" {
		errs = append(errs, errors.New("broker.data_dir: must be set"))
	}
	host, _, err := splitHostPort(c.Listen, true)
	if err != nil {
		errs = append(errs, fmt.Errorf("broker.listen (--broker-listen): %w", err))
	}
	if c.Advertise == "" {
		if err == nil && unspecifiedHost(host) {
			errs = append(errs, fmt.Errorf("broker.advertise (--broker-advertise): must be set when broker.listen %q binds all interfaces: "+
				"give the host:port that other machines use to reach this one", c.Listen))
		}
	} else if _, _, err := splitHostPort(c.Advertise, false); err != nil {
		errs = append(errs, fmt.Errorf("broker.advertise (--broker-advertise): %w", err))
	}
	switch c.Durability {
	case DurabilityFsync, DurabilityOS, DurabilityMemory:
		if err := c.Durability.SupportedOn(runtime.GOOS); err != nil {
			errs = append(errs, fmt.Errorf("broker.durability: %w", err))
		}
	default:
		errs = append(errs, fmt.Errorf("broker.durability: %q is not one of %q, %q, %q", c.Durability, DurabilityFsync, DurabilityOS, DurabilityMemory))
	}
	if _, err := parseKfakeLevel(c.LogLevel); err != nil {
		errs = append(errs, fmt.Errorf("broker.log_level: %w", err))
	}
	if c.MinFreeBytes < 0 {
		errs = append(errs, fmt.Errorf("broker.min_free_bytes: must be >= 0 (0 turns the check off), got %d", c.MinFreeBytes))
	}
	if c.RetentionCheckInterval < time.Second {
		errs = append(errs, fmt.Errorf("broker.retention_check_interval: %s is below the minimum of 1s", c.RetentionCheckInterval))
	}
	return errors.Join(errs...)
}

// splitHostPort accepts host:port, and a bare host when the port is optional.
func splitHostPort(s string, needPort bool) (host string, port int, err error) {
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		var ae *net.AddrError
		if !needPort && errors.As(err, &ae) && ae.Err == "missing port in address" && s != "" {
			return strings.Trim(s, "[]"), 0, nil // a bare host: the bound port is used
		}
		return "", 0, fmt.Errorf("%q is not host:port: %w", s, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 0 || n > 65535 {
		return "", 0, fmt.Errorf("%q: port %q is not a number between 0 and 65535", s, p)
	}
	if !needPort && h == "" {
		return "", 0, fmt.Errorf("%q has no host", s)
	}
	return h, n, nil
}

func unspecifiedHost(h string) bool {
	if h == "" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsUnspecified()
}

// Embedded is a running in-process broker. It serves clients until Close.
type Embedded struct {
	cfg        EmbeddedConfig
	logger     *slog.Logger
	klog       *kfakeLogger
	guard      *diskGuard
	cluster    *kfake.Cluster
	gsync      *groupSync // nil unless durability is fsync
	lock       *os.File
	bound      string
	advertised string

	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// NewEmbedded validates cfg, takes the data dir, binds the listen address and
// starts the broker, loading whatever the data dir holds. After a clean Close
// the next start reads a snapshot; after a crash it replays every segment,
// which takes time and memory proportional to the retained data (see
// docs/broker.md).
func NewEmbedded(cfg EmbeddedConfig, logger *slog.Logger) (*Embedded, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger = logger.With("component", "broker")
	start := time.Now()

	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("broker.data_dir: creating %s: %w", cfg.DataDir, err)
	}
	lock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}

	// Bind before starting kfake so a busy port gives an error that names
	// the setting, and so we know the real port when Listen ends in :0.
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		unlockDataDir(lock)
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("broker.listen (--broker-listen): %s is already in use by another process "+
				"(another infergate or a Kafka broker?): choose another address: %w", cfg.Listen, err)
		}
		return nil, fmt.Errorf("broker.listen (--broker-listen): cannot listen on %s: %w", cfg.Listen, err)
	}
	bound := ln.Addr().String()
	adv := advertisedAddr(cfg.Advertise, bound)

	minLevel, _ := parseKfakeLevel(cfg.LogLevel)
	klog := &kfakeLogger{l: logger.With("source", "kfake"), min: minLevel}

	// kfake binds 127.0.0.1 itself; ListenFn hands it our listener instead,
	// and the listener's Addr() is what kfake advertises in metadata.
	var gsync *groupSync
	var kln net.Listener = &advertisedListener{Listener: ln, addr: tcpAddrString(adv)}
	if cfg.Durability == DurabilityFsync {
		gsync = newGroupSync(cfg.DataDir)
		gsync.onErr = func(err error) { logger.Error(err.Error(), "data_dir", cfg.DataDir) }
		kln = &gatedListener{Listener: kln, sync: gsync}
	}
	handed := false
	listenFn := func(string, string) (net.Listener, error) {
		if handed {
			return nil, errors.New("embedded broker runs one node only")
		}
		handed = true
		return kln, nil
	}

	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.ListenFn(listenFn),
		kfake.ClusterID("infergate"),
		kfake.WithLogger(klog),
		kfake.BrokerConfigs(map[string]string{
			// kfake's cleaner runs hourly by default; retention is
			// what keeps an unattended edge disk from filling.
			"log.cleaner.backoff.ms": strconv.FormatInt(cfg.RetentionCheckInterval.Milliseconds(), 10),
		}),
	}
	switch cfg.Durability {
	case DurabilityFsync:
		// Not kfake.SyncWrites: gsync holds each acknowledgement until a
		// group fsync covers it (groupsync.go).
		opts = append(opts, kfake.DataDir(cfg.DataDir))
	case DurabilityOS:
		opts = append(opts, kfake.DataDir(cfg.DataDir))
	case DurabilityMemory:
		// Nothing is written, so the disk cannot fill because of the
		// broker; the data dir only holds the lock.
		cfg.MinFreeBytes = 0
		logger.Warn("embedded broker keeps its topics in memory (broker.durability: memory): requests not yet processed and results not yet read are lost when infergate stops",
			"data_dir", cfg.DataDir)
	}
	cluster, err := kfake.NewCluster(opts...)
	if err != nil {
		ln.Close()
		if gsync != nil {
			gsync.Close()
		}
		unlockDataDir(lock)
		return nil, fmt.Errorf("starting embedded broker on data dir %s (broker.data_dir): %w", cfg.DataDir, err)
	}
	guard := &diskGuard{dir: cfg.DataDir, min: cfg.MinFreeBytes, onLog: func(full bool, free int64) {
		if full {
			logger.Error("broker: disk full: produce requests are refused (KAFKA_STORAGE_ERROR, retried by clients) until space returns",
				"data_dir", cfg.DataDir, "free_bytes", free, "min_free_bytes", cfg.MinFreeBytes)
		} else {
			logger.Info("broker: disk space is back; produce requests are accepted again", "data_dir", cfg.DataDir, "free_bytes", free)
		}
	}}
	guard.measure()
	guard.install(cluster)
	klog.mu.Lock()
	resolveLost(cfg.DataDir, klog.corrupt)
	for _, c := range klog.corrupt {
		logger.Error("broker: DATA CORRUPTION found while loading the data dir: "+c.String(), "data_dir", cfg.DataDir)
	}
	klog.mu.Unlock()

	e := &Embedded{
		cfg:        cfg,
		logger:     logger,
		klog:       klog,
		guard:      guard,
		cluster:    cluster,
		gsync:      gsync,
		lock:       lock,
		bound:      bound,
		advertised: adv,
		stop:       make(chan struct{}),
	}
	e.wg.Add(1)
	go e.retentionLoop()

	logger.Info("embedded broker started", "addr", adv, "listen", bound, "data_dir", cfg.DataDir,
		"durability", string(cfg.Durability), "startup", time.Since(start).Round(time.Millisecond))
	return e, nil
}

// retentionLoop enforces retention on a timer of our own. kfake only arms its
// cleaner when a topic's configs change while it runs, not for topics loaded
// from the data dir, so after a restart nothing would be deleted until the
// next config change.
func (e *Embedded) retentionLoop() {
	defer e.wg.Done()
	t := time.NewTicker(e.cfg.RetentionCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
			e.cluster.ApplyRetention()
		}
	}
}

// Addr is the advertised host:port: the bootstrap address for clients.
func (e *Embedded) Addr() string { return e.advertised }

// ListenAddr is the address actually bound (useful when Listen ends in :0).
func (e *Embedded) ListenAddr() string { return e.bound }

// Run blocks until ctx ends, then closes the broker. It lets the broker take
// part in a run group like the other components.
func (e *Embedded) Run(ctx context.Context) error {
	select {
	case <-ctx.Done():
	case <-e.stop:
	}
	return e.Close()
}

// Close stops accepting connections, finishes pending offset commits, writes
// the snapshot that makes the next start fast, and closes every file. It is
// safe to call more than once; later calls return the first result.
func (e *Embedded) Close() error {
	e.closeOnce.Do(func() {
		close(e.stop)
		e.wg.Wait() // ApplyRetention would block forever on a closed cluster
		start := time.Now()
		// kfake's Close reports failures to save state only through its
		// logger; collect them so a failed snapshot is not a silent nil.
		e.klog.capture(true)
		e.cluster.Close()
		saveErrs := e.klog.capture(false)
		if e.gsync != nil {
			if err := e.gsync.Close(); err != nil {
				saveErrs = append(saveErrs, err.Error())
			}
		}
		unlockDataDir(e.lock)
		if len(saveErrs) > 0 {
			e.closeErr = fmt.Errorf("closing embedded broker (data dir %s): %s", e.cfg.DataDir, strings.Join(saveErrs, "; "))
		}
		e.logger.Info("embedded broker stopped", "took", time.Since(start).Round(time.Millisecond), "err", e.closeErr)
	})
	return e.closeErr
}

// advertisedAddr resolves the advertised address against the bound one:
// an empty advertise means the bound address, a missing or zero port means the
// bound port.
func advertisedAddr(advertise, bound string) string {
	_, boundPort, _ := net.SplitHostPort(bound)
	if advertise == "" {
		return bound
	}
	host, port, _ := splitHostPort(advertise, false)
	if port == 0 {
		return net.JoinHostPort(host, boundPort)
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

type advertisedListener struct {
	net.Listener
	addr net.Addr
}

func (l *advertisedListener) Addr() net.Addr { return l.addr }

type tcpAddrString string

func (tcpAddrString) Network() string  { return "tcp" }
func (a tcpAddrString) String() string { return string(a) }

func parseKfakeLevel(s string) (kfake.LogLevel, error) {
	switch strings.ToLower(s) {
	case "none", "off":
		return kfake.LogLevelNone, nil
	case "error":
		return kfake.LogLevelError, nil
	case "warn", "warning":
		return kfake.LogLevelWarn, nil
	case "info":
		return kfake.LogLevelInfo, nil
	case "debug":
		return kfake.LogLevelDebug, nil
	}
	return 0, fmt.Errorf("%q is not one of error, warn, info, debug, none", s)
}

// kfakeLogger routes kfake's printf-style logs to slog.
type kfakeLogger struct {
	l   *slog.Logger
	min kfake.LogLevel

	mu        sync.Mutex
	capturing bool
	captured  []string
	corrupt   []Corruption // damage kfake reported (health.go)
}

func (k *kfakeLogger) Logf(level kfake.LogLevel, format string, args ...any) {
	if level == kfake.LogLevelWarn && k.noteCorruption(format, args) {
		return // logged at ERROR, with what was lost, once the broker has loaded
	}
	if level == kfake.LogLevelError {
		k.mu.Lock()
		if k.capturing {
			k.captured = append(k.captured, fmt.Sprintf(format, args...))
		}
		k.mu.Unlock()
	}
	if level > k.min || level == kfake.LogLevelNone {
		return
	}
	msg := fmt.Sprintf(format, args...)
	var sl slog.Level
	switch level {
	case kfake.LogLevelError:
		sl = slog.LevelError
	case kfake.LogLevelWarn:
		sl = slog.LevelWarn
	case kfake.LogLevelInfo:
		sl = slog.LevelInfo
	default:
		sl = slog.LevelDebug
	}
	k.l.Log(context.Background(), sl, msg)
}

// capture starts (on) or stops (off) collecting error messages and returns
// what was collected.
func (k *kfakeLogger) capture(on bool) []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.capturing = on
	out := k.captured
	k.captured = nil
	return out
}
