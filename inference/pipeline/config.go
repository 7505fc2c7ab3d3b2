package pipeline

import (
	"errors"
	"fmt"
	"os"
	"time"
)

// Delivery guarantees the pipeline offers (DESIGN.md, "Delivery").
const (
	AtLeastOnce = "at-least-once"
	ExactlyOnce = "exactly-once"
)

// Config tunes the pipeline. Start from DefaultConfig and override: zero
// values are not replaced by defaults, because for MaxWait and DefaultInput
// zero has a meaning of its own.
type Config struct {
	RequestsTopic string `yaml:"requests_topic"`
	ResultsTopic  string `yaml:"results_topic"`
	DLQTopic      string `yaml:"dlq_topic"`
	Group         string `yaml:"group"`

	// InstanceID is the static group membership id (KIP-345,
	// group.instance.id); "" joins as a dynamic member. A static member that
	// restarts within SessionTimeout takes its partitions back without a
	// rebalance, so the other members never pause for it. It must be unique
	// among live members: a second member with the same id fences the first.
	InstanceID string `yaml:"instance_id"`
	// SessionTimeout is how long the group waits for a silent member (a
	// crashed process) before giving its partitions to the others.
	SessionTimeout time.Duration `yaml:"session_timeout"`
	// HeartbeatInterval is how often the member tells the group it lives.
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval"`
	// RebalanceTimeout is how long the group waits for every member to
	// rejoin during a rebalance (and for this member to finish its revoked
	// partitions' work).
	RebalanceTimeout time.Duration `yaml:"rebalance_timeout"`
	// AutoOffsetReset is where a partition without a committed offset
	// starts: "earliest" (every request in the topic) or "latest" (only
	// requests produced from now on).
	AutoOffsetReset string `yaml:"auto_offset_reset"`

	// DefaultModel serves requests that name no model (in the body or the
	// record header "model").
	DefaultModel string `yaml:"default_model"`
	// DefaultInput is the input the short form's "features" feed; "" means
	// the signature's only input (a request for a model with several inputs
	// must then use the full form).
	DefaultInput string `yaml:"default_input"`

	// MaxBatch is the most rows in one model call.
	MaxBatch int `yaml:"max_batch"`
	// MaxWait is how long the first request of a batch waits for the batch to
	// fill. 0 (the default) sends the oldest open batch as soon as one of
	// the MaxInFlight model calls is free, so batches grow exactly as much
	// as the model's pace requires; measured, that beats any fixed wait at
	// every rate (docs/pipeline.md). A fixed wait can still pay off against a
	// remote model server with a high per-call cost.
	MaxWait time.Duration `yaml:"max_wait"`
	// MaxInFlight is how many batches are being predicted at once.
	MaxInFlight int `yaml:"max_in_flight"`

	// Delivery is AtLeastOnce or ExactlyOnce.
	Delivery string `yaml:"delivery"`
	// TransactionalID identifies this instance's transactional producer in
	// exactly-once mode. It must be unique among live instances and stable
	// across restarts (so a restarted instance fences its previous
	// incarnation). "" means "<group>-<InstanceID>" for a static member,
	// else "<group>-<hostname>"; the appliance derives one per data dir.
	TransactionalID string `yaml:"transactional_id"`

	Retry RetryConfig `yaml:"retry"`
	// ProbeInterval is how often an open circuit asks the model server
	// whether it is back (a Metadata call).
	ProbeInterval time.Duration `yaml:"probe_interval"`
	// PredictTimeout bounds one model call.
	PredictTimeout time.Duration `yaml:"predict_timeout"`
	// MaxAttempts is how many model calls of a request alone may time out
	// (DEADLINE_EXCEEDED, PredictTimeout) or run out of resources
	// (RESOURCE_EXHAUSTED) before it is dead-lettered (class timeout or
	// resource_exhausted), provided other requests succeeded meanwhile: one
	// stuck request must not hold its partition forever. A batch that fails
	// so is retried one request at a time first. When every call fails,
	// nothing is dead-lettered: after Retry.Attempts such failures in a row
	// the circuit opens, as for an unavailable server.
	MaxAttempts int `yaml:"max_attempts"`
	// ShutdownTimeout bounds the drain on shutdown and the wait for in-flight
	// work when partitions are revoked. Work not finished by then is not
	// committed and is redelivered.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
}

// RetryConfig is the backoff for an unavailable model server.
type RetryConfig struct {
	// Initial is the first backoff; it doubles on every retry up to Max.
	Initial time.Duration `yaml:"initial"`
	Max     time.Duration `yaml:"max"`
	// Attempts is how many failed calls in a row open the circuit (pause
	// consumption and probe).
	Attempts int `yaml:"attempts"`
}

// Where a partition without a committed offset starts (Config.AutoOffsetReset).
const (
	OffsetEarliest = "earliest"
	OffsetLatest   = "latest"
)

// Group timing defaults (docs/scaling.md). A crashed member's partitions
// wait SessionTimeout for it; a static member restarted within that time
// takes them back with no rebalance, so SessionTimeout must cover a restart
// (docs/scaling.md has the measured restart times); 20 s leaves room for a
// slow start and is less than half of kgo's 45 s. Heartbeats every 2 s
// allow several lost ones. The balancer is kgo's default, cooperative-sticky:
// a rebalance moves only the partitions that change owner.
const (
	DefaultSessionTimeout    = 20 * time.Second
	DefaultHeartbeatInterval = 2 * time.Second
	DefaultRebalanceTimeout  = time.Minute
)

// DefaultConfig returns the defaults of DESIGN.md and the measured batching
// settings (docs/pipeline.md).
func DefaultConfig() Config {
	return Config{
		RequestsTopic: "inference_requests",
		ResultsTopic:  "inference_results",
		DLQTopic:      "inference_dlq",
		Group:         "infergate",
		DefaultModel:  "demo",
		MaxBatch:      256,
		MaxWait:       0,
		MaxInFlight:   4,
		Delivery:      AtLeastOnce,

		SessionTimeout:    DefaultSessionTimeout,
		HeartbeatInterval: DefaultHeartbeatInterval,
		RebalanceTimeout:  DefaultRebalanceTimeout,
		AutoOffsetReset:   OffsetEarliest,
		Retry:             RetryConfig{Initial: 50 * time.Millisecond, Max: 2 * time.Second, Attempts: 5},
		ProbeInterval:     time.Second,
		PredictTimeout:    10 * time.Second,
		MaxAttempts:       3,
		ShutdownTimeout:   30 * time.Second,
	}
}

// Validate reports every invalid setting, each named as in the config file.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("pipeline.%s: %s", key, fmt.Sprintf(format, args...)))
	}
	for _, t := range []struct{ key, v string }{
		{"requests_topic", c.RequestsTopic}, {"results_topic", c.ResultsTopic},
		{"dlq_topic", c.DLQTopic}, {"group", c.Group}, {"default_model", c.DefaultModel},
	} {
		if t.v == "" {
			bad(t.key, "must be set")
		}
	}
	if c.RequestsTopic != "" && (c.RequestsTopic == c.ResultsTopic || c.RequestsTopic == c.DLQTopic) {
		bad("requests_topic", "%q is also the results or DLQ topic: the pipeline would consume its own output", c.RequestsTopic)
	}
	if c.MaxBatch < 1 || c.MaxBatch > 65536 {
		bad("max_batch", "must be 1..65536, got %d", c.MaxBatch)
	}
	if c.MaxWait < 0 || c.MaxWait > time.Minute {
		bad("max_wait", "must be 0..1m, got %s", c.MaxWait)
	}
	if c.MaxInFlight < 1 || c.MaxInFlight > 1024 {
		bad("max_in_flight", "must be 1..1024, got %d", c.MaxInFlight)
	}
	if c.Delivery != AtLeastOnce && c.Delivery != ExactlyOnce {
		bad("delivery", "must be %q or %q, got %q", AtLeastOnce, ExactlyOnce, c.Delivery)
	}
	if c.AutoOffsetReset != OffsetEarliest && c.AutoOffsetReset != OffsetLatest {
		bad("auto_offset_reset", "must be %q or %q, got %q", OffsetEarliest, OffsetLatest, c.AutoOffsetReset)
	}
	if c.SessionTimeout <= 0 || c.HeartbeatInterval <= 0 || c.RebalanceTimeout <= 0 {
		bad("session_timeout", "session_timeout, heartbeat_interval and rebalance_timeout must be > 0, got %s, %s, %s",
			c.SessionTimeout, c.HeartbeatInterval, c.RebalanceTimeout)
	} else if c.HeartbeatInterval*3 > c.SessionTimeout {
		bad("heartbeat_interval", "%s: at most a third of session_timeout (%s), so one lost heartbeat does not end the session",
			c.HeartbeatInterval, c.SessionTimeout)
	}
	if c.Retry.Initial <= 0 {
		bad("retry.initial", "must be > 0, got %s", c.Retry.Initial)
	}
	if c.Retry.Max < c.Retry.Initial {
		bad("retry.max", "must be >= retry.initial (%s), got %s", c.Retry.Initial, c.Retry.Max)
	}
	if c.MaxAttempts < 1 || c.MaxAttempts > 1000 {
		bad("max_attempts", "must be 1..1000, got %d", c.MaxAttempts)
	}
	if c.Retry.Attempts < 1 {
		bad("retry.attempts", "must be >= 1, got %d", c.Retry.Attempts)
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"probe_interval", c.ProbeInterval}, {"predict_timeout", c.PredictTimeout}, {"shutdown_timeout", c.ShutdownTimeout}} {
		if d.v <= 0 {
			bad(d.key, "must be > 0, got %s", d.v)
		}
	}
	return errors.Join(errs...)
}

func (c *Config) transactionalID() string {
	if c.TransactionalID != "" {
		return c.TransactionalID
	}
	if c.InstanceID != "" {
		return c.Group + "-" + c.InstanceID
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	return c.Group + "-" + host
}
