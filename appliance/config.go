// Package appliance turns one Config into a running infergate: it owns the
// configuration of `infergate run` (defaults, the YAML file, INFERGATE_*
// environment variables and flags, in that order), the data dir layout, the
// order in which the components start and stop, and readiness.
package appliance

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/infergate/infergate/broker"
	"github.com/infergate/infergate/inference/modelserver"
	"github.com/infergate/infergate/inference/pipeline"
	"github.com/infergate/infergate/inference/rollout"
	"github.com/infergate/infergate/inference/sidecar"
	"github.com/infergate/infergate/inference/tfserving"
	"github.com/infergate/infergate/ingress"
	"github.com/infergate/infergate/store"
	"github.com/infergate/infergate/web"
)

// Modes of the broker and the model server.
const (
	BrokerEmbedded = "embedded"
	BrokerExternal = "external"

	ModelServerEmbedded = "embedded"
	ModelServerSidecar  = "sidecar"
	ModelServerExternal = "external"
	ModelServerIsolated = "isolated"

	AtLeastOnce = pipeline.AtLeastOnce
	ExactlyOnce = pipeline.ExactlyOnce
)

// Config is everything `infergate run` can be told. Default() gives the
// values of DESIGN.md; the YAML file mirrors this struct (the yaml tags are
// the config-file keys), and settings() binds each field to its flag and
// environment variable.
type Config struct {
	// DataDir holds broker/, store/, models/ and admin-token.
	DataDir string `yaml:"data_dir"`
	// Profile replaces defaults for a class of machine ("small"); see profile.go.
	Profile string `yaml:"profile"`
	// MinFreeBytes is the free space the data dir's file system must keep.
	// Below it the appliance reports "disk full", stops consuming, the DLQ
	// store refuses writes and the embedded broker refuses produce requests
	// (retriable); all resume by themselves once space returns. 0 turns the
	// check off (not recommended: the store's database crashes the process
	// when the disk fills under it).
	MinFreeBytes int64 `yaml:"min_free_bytes"`

	Log         LogConfig         `yaml:"log"`
	Broker      BrokerConfig      `yaml:"broker"`
	Topics      TopicsConfig      `yaml:"topics"`
	ModelServer ModelServerConfig `yaml:"model_server"`
	// Pipeline is the pipeline package's own Config: its settings are
	// spread over the pipeline, topics, delivery and model_server sections
	// (settings.go binds each field to its key).
	Pipeline pipeline.Config `yaml:"-"`
	// Store is the store package's Config (store.* settings); Dir and
	// MinFreeBytes are set from the data dir and min_free_bytes at start.
	Store store.Config `yaml:"-"`
	// HTTP is the web package's Config (dashboard, admin API, /metrics):
	// the http.* settings set its fields; AdminToken, once resolved, and
	// the fields no setting binds are filled in when the server starts.
	HTTP    web.Config    `yaml:"http"`
	Demo    DemoConfig    `yaml:"demo"`
	Ingress IngressConfig `yaml:"ingress"`
	// Rollout is the rollout package's Config (rollout.* settings).
	Rollout rollout.Config `yaml:"-"`

	origin origin // how Load assembled it; not a setting
}

// LogConfig selects how the process logs.
type LogConfig struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text or json
}

// BrokerConfig is the Kafka side: the embedded broker, or an external cluster.
type BrokerConfig struct {
	Mode       string   `yaml:"mode"`       // embedded or external
	Brokers    []string `yaml:"brokers"`    // seed brokers of an external cluster
	Listen     string   `yaml:"listen"`     // embedded: address to bind
	Advertise  string   `yaml:"advertise"`  // embedded: address clients are told to use
	Durability string   `yaml:"durability"` // embedded: fsync, os or memory (default on Windows)
	// Compression of what infergate produces: every common client must be
	// able to read it (python3-kafka reads only gzip without extra
	// packages), hence broker.DefaultCompression rather than kgo's snappy.
	Compression string `yaml:"compression"`
	// LogLevel and RetentionCheckInterval tune the embedded broker
	// (broker.EmbeddedConfig has the details).
	LogLevel               string        `yaml:"log_level"`
	RetentionCheckInterval time.Duration `yaml:"retention_check_interval"`
	// TLS and SASL towards an external cluster are the broker package's
	// own types, set field by field from the settings table.
	TLS  broker.TLSConfig  `yaml:"tls"`
	SASL broker.SASLConfig `yaml:"sasl"`
}

// TopicsConfig is how the topics are created if missing (their names are
// in Pipeline: topics.requests, topics.results, topics.dlq).
type TopicsConfig struct {
	Partitions        int `yaml:"partitions"`
	ReplicationFactor int `yaml:"replication_factor"` // -1: the cluster's default
	// Retention bounds what the broker keeps so an unattended edge disk does
	// not fill: by age (requests and results share one limit; the DLQ, which
	// an operator inspects and replays, lives longer) and by size, as a
	// budget per topic split over its partitions. 0 means unbounded.
	Retention     time.Duration `yaml:"retention"`
	DLQRetention  time.Duration `yaml:"dlq_retention"`
	RequestsBytes int64         `yaml:"requests_bytes"`
	ResultsBytes  int64         `yaml:"results_bytes"`
	DLQBytes      int64         `yaml:"dlq_bytes"`
	// Control carries what the instances of a group attached to one cluster tell each
	// other: their states and their operators' DLQ deletes and replays (inference/group).
	// Not used with the embedded broker.
	Control string `yaml:"control"`
}

// ModelServerConfig selects and configures the model server.
type ModelServerConfig struct {
	Mode       string `yaml:"mode"`        // embedded, sidecar or external
	GRPCListen string `yaml:"grpc_listen"` // embedded and sidecar
	RESTListen string `yaml:"rest_listen"` // embedded and sidecar
	// TFServingBin is the tensorflow_model_server binary the sidecar runs.
	TFServingBin string `yaml:"tfserving_bin"`
	// TFServingEndpoints are external TF Serving gRPC endpoints.
	TFServingEndpoints []string `yaml:"tfserving_endpoints"`
	// Sidecar tunes the supervised tensorflow_model_server (mode sidecar).
	Sidecar SidecarConfig `yaml:"sidecar"`
	// ReloadRPC allows HandleReloadConfigRequest on the embedded server's
	// gRPC port, for callers with the admin token (off: refused).
	ReloadRPC bool `yaml:"reload_rpc"`
	// Limits of the embedded server's gRPC and REST APIs (not of the
	// pipeline's in-process calls), so memory is bounded by configuration
	// rather than by what a client sends.
	MaxRequestElements     int64 `yaml:"max_request_elements"`
	MaxRequestRows         int64 `yaml:"max_request_rows"`
	MaxInflightBytes       int64 `yaml:"max_inflight_request_bytes"`
	MaxMessageBytes        int64 `yaml:"max_message_bytes"`
	MaxFoldedConstantBytes int64 `yaml:"max_folded_constant_bytes"`
	Threads                int   `yaml:"threads"`
	// VersionPolicy is the embedded and sidecar model servers' version
	// policy for every model of the repository: latest:N, all or
	// specific:V,V. The default, latest:2, keeps the version before an
	// upload loaded, so a rollback (or a rollout) is a routing change.
	VersionPolicy string `yaml:"version_policy"`
	// ModelVersionPolicies override it per model: "NAME=POLICY".
	ModelVersionPolicies []string `yaml:"model_version_policies"`
}

// SidecarConfig is what model_server.mode sidecar passes to
// tensorflow_model_server and how it is supervised (inference/sidecar).
type SidecarConfig struct {
	// EnableBatching turns on TF's server-side batching, written to
	// <data dir>/tfserving/batching.config. It merges concurrent Predict
	// calls inside TF: the pipeline already sends micro-batches, so it pays
	// off with several batches in flight or other clients of the sidecar.
	// Zero values keep TF's defaults.
	EnableBatching bool `yaml:"enable_batching"`
	// Batching is TF's batching_parameters_file: its fields are the keys
	// max_batch_size, batch_timeout, max_enqueued_batches, num_batch_threads
	// and allowed_batch_sizes of this section (settings.go).
	Batching tfserving.BatchingConfig `yaml:",inline"`
	// Monitoring makes TF export Prometheus metrics on its REST port.
	Monitoring bool `yaml:"monitoring"`
	// ExtraFlags are appended to TF's command line.
	ExtraFlags []string `yaml:"extra_flags"`
	// ReadyTimeout: a child not serving every model by then is restarted
	// (and the appliance gives up waiting at start).
	ReadyTimeout time.Duration `yaml:"ready_timeout"`
	// GracePeriod is the time between SIGTERM and SIGKILL on stop.
	GracePeriod time.Duration `yaml:"grace_period"`
	// Restarts back off from RestartBackoff, doubling to RestartBackoffMax;
	// CrashLoopRestarts exits within CrashLoopWindow are a crash loop.
	RestartBackoff    time.Duration `yaml:"restart_backoff"`
	RestartBackoffMax time.Duration `yaml:"restart_backoff_max"`
	CrashLoopRestarts int           `yaml:"crash_loop_restarts"`
	CrashLoopWindow   time.Duration `yaml:"crash_loop_window"`
	// LogMaxBytes bounds each of the child's stdout and stderr log files.
	LogMaxBytes int64 `yaml:"log_max_bytes"`
}

// IngressConfig is the edge ingress (package ingress): an embedded
// nats-server whose MQTT and NATS listeners take requests from devices and
// send their predictions back (docs/ingress.md).
type IngressConfig struct {
	Enabled bool `yaml:"enabled"`
	// Mode is embedded (nats-server in this process) or external (attach
	// to the NATS server at NATSURL; devices connect there).
	Mode string `yaml:"mode"`
	// NATSURL and the credentials and TLS files reach the external server.
	NATSURL       []string `yaml:"nats_url"`
	NATSUser      string   `yaml:"nats_user"`
	NATSPassword  string   `yaml:"nats_password"`
	NATSCredsFile string   `yaml:"nats_creds_file"`
	NATSCAFile    string   `yaml:"nats_ca_file"`
	NATSCertFile  string   `yaml:"nats_cert_file"`
	NATSKeyFile   string   `yaml:"nats_key_file"`

	MQTTListen string `yaml:"mqtt_listen"` // "" disables MQTT
	NATSListen string `yaml:"nats_listen"` // "" disables the NATS listener
	// Group is the consumer group reading results and DLQ records to
	// answer devices.
	Group         string        `yaml:"group"`
	MaxAckPending int           `yaml:"max_ack_pending"`
	AckWait       time.Duration `yaml:"ack_wait"`
	MaxStore      int64         `yaml:"max_store"`
	SyncAlways    bool          `yaml:"sync_always"`
	// DevicesFile lists device credentials, one "NAME PASSWORD" a line
	// ("observer NAME PASSWORD" for read-only clients); required when a
	// listener is not on loopback.
	DevicesFile string `yaml:"devices_file"`
	// TLSCert and TLSKey (PEM files, both or neither) put both listeners
	// on TLS.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// AnswerQoS is the MQTT QoS of the answers: 1 (stored for persistent
	// sessions) or 0 (cheaper; a device away misses its answers).
	AnswerQoS int `yaml:"answer_qos"`
}

// DemoConfig drives the synthetic sensor traffic of --demo.
type DemoConfig struct {
	Enabled         bool          `yaml:"enabled"`
	Rate            float64       `yaml:"rate"` // requests per second
	AnomalyRatio    float64       `yaml:"anomaly_ratio"`
	SummaryInterval time.Duration `yaml:"summary_interval"`
}

// Default returns the configuration of `infergate run` with nothing set.
// Component defaults come from the components, so a tuned default (batching,
// retention, fsync) is changed in one place.
func Default() Config {
	ing := ingress.DefaultConfig()
	return Config{
		DataDir:      defaultDataDir(),
		MinFreeBytes: store.DefaultMinFreeBytes,
		Log:          LogConfig{Level: "info", Format: "text"},
		Broker: BrokerConfig{
			Mode:        BrokerEmbedded,
			Listen:      "127.0.0.1:9092",
			Durability:  string(broker.DefaultDurabilityFor(runtime.GOOS)),
			Compression: broker.DefaultCompression,
			LogLevel:    broker.DefaultBrokerLogLevel,

			RetentionCheckInterval: broker.DefaultRetentionCheckInterval,
		},
		Topics: TopicsConfig{
			Partitions:        6,
			ReplicationFactor: -1,
			Retention:         broker.DefaultRequestsRetention,
			DLQRetention:      broker.DefaultDLQRetention,
			RequestsBytes:     broker.DefaultRequestsTopicBytes,
			ResultsBytes:      broker.DefaultResultsTopicBytes,
			DLQBytes:          broker.DefaultDLQTopicBytes,
			Control:           "inference_control",
		},
		ModelServer: ModelServerConfig{
			Mode:         ModelServerEmbedded,
			GRPCListen:   "127.0.0.1:8500",
			RESTListen:   "127.0.0.1:8501",
			TFServingBin: "tensorflow_model_server",

			MaxRequestElements:     modelserver.DefaultLimits.MaxRequestElements,
			MaxRequestRows:         modelserver.DefaultLimits.MaxRequestRows,
			MaxInflightBytes:       modelserver.DefaultLimits.MaxInflightBytes,
			MaxMessageBytes:        modelserver.EdgeMaxMessageSize,
			MaxFoldedConstantBytes: modelserver.DefaultLimits.MaxFoldedConstantBytes,
			VersionPolicy:          "latest:2",
			Sidecar: SidecarConfig{
				Monitoring:        true,
				ReadyTimeout:      sidecar.DefaultReadyTimeout,
				GracePeriod:       sidecar.DefaultGracePeriod,
				RestartBackoff:    sidecar.DefaultBackoffInitial,
				RestartBackoffMax: sidecar.DefaultBackoffMax,
				CrashLoopRestarts: sidecar.DefaultCrashLoopRestarts,
				CrashLoopWindow:   sidecar.DefaultCrashLoopWindow,
				LogMaxBytes:       sidecar.DefaultLogMaxBytes,
			},
		},
		Pipeline: pipeline.DefaultConfig(),
		Store:    store.DefaultConfig(""),
		HTTP:     web.DefaultConfig(),
		Ingress: IngressConfig{
			Mode:          ingress.ModeEmbedded,
			MQTTListen:    ing.MQTTListen,
			NATSListen:    ing.NATSListen,
			Group:         ing.Group,
			MaxAckPending: ing.MaxAckPending,
			AckWait:       ing.AckWait,
			AnswerQoS:     ing.AnswerQoS,
		},
		Rollout: rollout.DefaultConfig(),
		Demo: DemoConfig{
			Rate:            20,
			AnomalyRatio:    0.05,
			SummaryInterval: 10 * time.Second,
		},
	}
}

// ClientConfig is how clients reach the appliance's Kafka: the embedded
// broker's advertised (else listen) address, or the external cluster, with
// TLS, SASL and compression.
func (c *Config) ClientConfig() broker.ClientConfig {
	cc := broker.ClientConfig{
		Brokers:     append([]string(nil), c.Broker.Brokers...),
		Compression: c.Broker.Compression,
		TLS:         c.Broker.TLS,
		SASL:        c.Broker.SASL,
	}
	if c.Broker.Mode == BrokerEmbedded {
		addr := c.Broker.Advertise
		if addr == "" {
			addr = c.Broker.Listen
		}
		cc.Brokers = []string{addr}
	}
	return cc
}

// pipelineConfig is c.Pipeline with the transactional id resolved.
func (c *Config) pipelineConfig() pipeline.Config {
	pc := c.Pipeline
	pc.TransactionalID = c.TransactionalID()
	return pc
}

// TransactionalID is the exactly-once producer's id: delivery.transactional_id
// when set, else derived so that it is unique among live instances and stable
// across restarts by construction: from the static member id (unique in the
// group, or the group fences one of the two), else from the host and the data
// dir (two live instances cannot share a data dir: it is locked). The old
// default, "<group>-<hostname>", fenced one of two instances on one host.
func (c *Config) TransactionalID() string {
	if c.Pipeline.TransactionalID != "" {
		return c.Pipeline.TransactionalID
	}
	if c.Pipeline.InstanceID != "" {
		return c.Pipeline.Group + "-" + c.Pipeline.InstanceID
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	dir, err := filepath.Abs(c.DataDir)
	if err != nil {
		dir = c.DataDir
	}
	sum := sha256.Sum256([]byte(dir))
	return c.Pipeline.Group + "-" + host + "-" + hex.EncodeToString(sum[:4])
}
