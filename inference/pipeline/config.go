package pipeline

import (
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/infergate/infergate/internal/field"
)

// Delivery guarantees the pipeline offers (docs/pipeline.md, "Delivery").
const (
	AtLeastOnce = "at-least-once"
	ExactlyOnce = "exactly-once"
)

// Config tunes the pipeline. Start from DefaultConfig and override: zero
// values are not replaced by defaults, because for MaxBatchWait and
// DefaultInput zero has a meaning of its own. The appliance composes this
// struct into its own Config and binds each field to a config key
// (appliance/settings.go), so Validate names fields, not keys.
type Config struct {
	RequestsTopic string
	ResultsTopic  string
	DLQTopic      string
	Group         string

	// InstanceID is the static group membership id (KIP-345,
	// group.instance.id); "" joins as a dynamic member. A static member that
	// restarts within SessionTimeout takes its partitions back without a
	// rebalance, so the other members never pause for it. It must be unique
	// among live members: a second member with the same id fences the first.
	InstanceID string
	// SessionTimeout is how long the group waits for a silent member (a
	// crashed process) before giving its partitions to the others.
	SessionTimeout time.Duration
	// HeartbeatInterval is how often the member tells the group it lives.
	HeartbeatInterval time.Duration
	// RebalanceTimeout is how long the group waits for every member to
	// rejoin during a rebalance (and for this member to finish its revoked
	// partitions' work).
	RebalanceTimeout time.Duration
	// AutoOffsetReset is where a partition without a committed offset
	// starts: "earliest" (every request in the topic) or "latest" (only
	// requests produced from now on).
	AutoOffsetReset string

	// DefaultModel serves requests that name no model (in the body or the
	// record header "model").
	DefaultModel string
	// DefaultInput is the input the short form's "features" feed; "" means
	// the signature's only input (a request for a model with several inputs
	// must then use the full form).
	DefaultInput string

	// MaxBatchSize is the most rows in one model call.
	MaxBatchSize int
	// MaxBatchWait is how long the first request of a batch waits for the
	// batch to fill. 0 (the default) sends the oldest open batch as soon as
	// one of the MaxInflightBatches model calls is free, so batches grow
	// exactly as much as the model's pace requires; measured, that beats any
	// fixed wait at every rate (docs/pipeline.md). A fixed wait can still pay
	// off against a remote model server with a high per-call cost.
	MaxBatchWait time.Duration
	// MaxInflightBatches is how many batches are being predicted at once.
	MaxInflightBatches int

	// Delivery is AtLeastOnce or ExactlyOnce.
	Delivery string
	// TransactionalID identifies this instance's transactional producer in
	// exactly-once mode. It must be unique among live instances and stable
	// across restarts (so a restarted instance fences its previous
	// incarnation). "" means "<group>-<InstanceID>" for a static member,
	// else "<group>-<hostname>"; the appliance derives one per data dir.
	TransactionalID string

	// An unavailable model server is retried with a backoff that starts at
	// RetryBackoff and doubles up to RetryBackoffMax; RetryAttempts failed
	// calls in a row open the circuit (consumption pauses, the server is
	// probed every ProbeInterval with a Metadata call).
	RetryBackoff    time.Duration
	RetryBackoffMax time.Duration
	RetryAttempts   int
	ProbeInterval   time.Duration
	// PredictTimeout bounds one model call.
	PredictTimeout time.Duration
	// MaxAttempts is how many model calls of a request alone may time out
	// (DEADLINE_EXCEEDED, PredictTimeout) or run out of resources
	// (RESOURCE_EXHAUSTED) before it is dead-lettered (class timeout or
	// resource_exhausted), provided other requests succeeded meanwhile: one
	// stuck request must not hold its partition forever. A batch that fails
	// so is retried one request at a time first. When every call fails,
	// nothing is dead-lettered: after RetryAttempts such failures in a row
	// the circuit opens, as for an unavailable server.
	MaxAttempts int
	// ShutdownTimeout bounds the drain on shutdown and the wait for in-flight
	// work when partitions are revoked. Work not finished by then is not
	// committed and is redelivered.
	ShutdownTimeout time.Duration
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

// DefaultConfig returns the documented defaults (docs/configuration.md) and the measured batching
// settings (docs/pipeline.md).
func DefaultConfig() Config {
	return Config{
		RequestsTopic:      "inference_requests",
		ResultsTopic:       "inference_results",
		DLQTopic:           "inference_dlq",
		Group:              "infergate",
		DefaultModel:       "demo",
		MaxBatchSize:       256,
		MaxBatchWait:       0,
		MaxInflightBatches: 4,
		Delivery:           AtLeastOnce,
		SessionTimeout:     DefaultSessionTimeout,
		HeartbeatInterval:  DefaultHeartbeatInterval,
		RebalanceTimeout:   DefaultRebalanceTimeout,
		AutoOffsetReset:    OffsetEarliest,
		RetryBackoff:       50 * time.Millisecond,
		RetryBackoffMax:    2 * time.Second,
		RetryAttempts:      5,
		ProbeInterval:      time.Second,
		PredictTimeout:     10 * time.Second,
		MaxAttempts:        3,
		ShutdownTimeout:    30 * time.Second,
	}
}

var (
	topicName = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)
	modelName = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,128}$`)
)

// Validate reports every invalid field as a *field.Error. It changes
// nothing: defaults come from DefaultConfig only.
func (c *Config) Validate() error {
	var v field.Errors
	seen := map[string]string{}
	for _, t := range []struct {
		p          *string
		name, role string
	}{
		{&c.RequestsTopic, "RequestsTopic", "requests"},
		{&c.ResultsTopic, "ResultsTopic", "results"},
		{&c.DLQTopic, "DLQTopic", "DLQ"},
	} {
		if !topicName.MatchString(*t.p) || *t.p == "." || *t.p == ".." {
			v.Add(t.p, t.name, "%q is not a Kafka topic name (1 to 249 of letters, digits, '.', '_', '-')", *t.p)
			continue
		}
		if other, dup := seen[*t.p]; dup {
			v.Add(t.p, t.name, "%q is also the %s topic: the three topics must differ (the pipeline would consume its own output)", *t.p, other)
		}
		seen[*t.p] = t.role
	}
	if strings.TrimSpace(c.Group) == "" {
		v.Add(&c.Group, "Group", "must be set")
	}
	if !modelName.MatchString(c.DefaultModel) {
		v.Add(&c.DefaultModel, "DefaultModel", "%q is not a model name (letters, digits, '.', '_', '-'; at most 128)", c.DefaultModel)
	}
	if c.MaxBatchSize < 1 || c.MaxBatchSize > 65536 {
		v.Add(&c.MaxBatchSize, "MaxBatchSize", "%d is not between 1 and 65536", c.MaxBatchSize)
	}
	switch {
	case c.MaxBatchWait < 0:
		v.Add(&c.MaxBatchWait, "MaxBatchWait", "%s: must not be negative", c.MaxBatchWait)
	case c.MaxBatchWait > time.Minute:
		v.Add(&c.MaxBatchWait, "MaxBatchWait", "%s is longer than a minute: requests would wait that long for a batch", c.MaxBatchWait)
	}
	if c.MaxInflightBatches < 1 || c.MaxInflightBatches > 1024 {
		v.Add(&c.MaxInflightBatches, "MaxInflightBatches", "%d is not between 1 and 1024", c.MaxInflightBatches)
	}
	if c.Delivery != AtLeastOnce && c.Delivery != ExactlyOnce {
		v.Add(&c.Delivery, "Delivery", "%q is not one of %s, %s", c.Delivery, AtLeastOnce, ExactlyOnce)
	}
	positive := func(p *time.Duration, name string) {
		if *p <= 0 {
			v.Add(p, name, "%s: must be a positive duration such as 500ms or 10s", *p)
		}
	}
	if c.AutoOffsetReset != OffsetEarliest && c.AutoOffsetReset != OffsetLatest {
		v.Add(&c.AutoOffsetReset, "AutoOffsetReset", "%q is not one of %s, %s", c.AutoOffsetReset, OffsetEarliest, OffsetLatest)
	}
	if id := c.InstanceID; id != "" && (strings.TrimSpace(id) != id || len(id) > 249) {
		v.Add(&c.InstanceID, "InstanceID", "%q: no surrounding spaces, at most 249 characters", id)
	}
	positive(&c.SessionTimeout, "SessionTimeout")
	positive(&c.HeartbeatInterval, "HeartbeatInterval")
	positive(&c.RebalanceTimeout, "RebalanceTimeout")
	if c.HeartbeatInterval > 0 && c.HeartbeatInterval*3 > c.SessionTimeout {
		v.Add(&c.HeartbeatInterval, "HeartbeatInterval", "%s is more than a third of the session timeout (%s): one lost heartbeat would end the session",
			c.HeartbeatInterval, c.SessionTimeout)
	}
	positive(&c.RetryBackoff, "RetryBackoff")
	if c.RetryBackoffMax < c.RetryBackoff {
		v.Add(&c.RetryBackoffMax, "RetryBackoffMax", "%s is below the first backoff (%s)", c.RetryBackoffMax, c.RetryBackoff)
	}
	if c.RetryAttempts < 1 {
		v.Add(&c.RetryAttempts, "RetryAttempts", "%d: must be >= 1", c.RetryAttempts)
	}
	if c.MaxAttempts < 1 || c.MaxAttempts > 1000 {
		v.Add(&c.MaxAttempts, "MaxAttempts", "%d is not between 1 and 1000", c.MaxAttempts)
	}
	positive(&c.ProbeInterval, "ProbeInterval")
	positive(&c.PredictTimeout, "PredictTimeout")
	positive(&c.ShutdownTimeout, "ShutdownTimeout")
	return v.Err()
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
