package appliance

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/infergate/infergate/internal/bytesize"
)

// setting is one row of the table that drives the config file, the
// environment and the flags: adding a setting here gives it all three, its
// --help line and its line in docs/configuration.md.
type setting struct {
	Key    string // config-file key, dotted: "broker.listen"
	Env    string // INFERGATE_BROKER_LISTEN
	Flag   string // "broker-listen"; "" for secrets, which do not belong on a command line (ps shows it)
	Arg    string // placeholder in --help: "ADDR"
	Help   string
	Secret bool
	val    value
}

// value is a typed pointer into a Config.
type value interface {
	Set(string) error
	String() string
	// ptr is the field the value sets, to match a package's field.Error.
	ptr() any
}

// boolFlag marks values that flag parsing accepts without an argument.
type boolFlag interface{ IsBoolFlag() bool }

// settings binds the table to c. The order is the order of --help and of
// docs/configuration.md.
func (c *Config) settings() []setting {
	return []setting{
		{Key: "data_dir", Flag: "data-dir", Arg: "DIR", Help: "data directory: broker/, store/, models/, admin-token", val: str(&c.DataDir)},
		{Key: "profile", Flag: "profile", Arg: "NAME", Help: "default, or small: defaults for boards with 512 MB of RAM (docs/install.md); settings given explicitly win", val: str(&c.Profile)},
		{Key: "min_free_bytes", Flag: "min-free-bytes", Arg: "BYTES", Help: "free space the data dir's file system must keep; below it the appliance reports disk full and stops consuming until space returns (0: no check)", val: size(&c.MinFreeBytes)},

		{Key: "log.level", Flag: "log-level", Arg: "LEVEL", Help: "debug, info, warn or error", val: str(&c.Log.Level)},
		{Key: "log.format", Flag: "log-format", Arg: "FORMAT", Help: "text or json", val: str(&c.Log.Format)},

		{Key: "broker.mode", Flag: "broker", Arg: "MODE", Help: "embedded (in-process broker) or external (a Kafka cluster at --brokers)", val: str(&c.Broker.Mode)},
		{Key: "broker.brokers", Env: "INFERGATE_BROKERS", Flag: "brokers", Arg: "HOST:PORT,...", Help: "seed brokers of the external Kafka cluster", val: list(&c.Broker.Brokers)},
		{Key: "broker.listen", Flag: "broker-listen", Arg: "ADDR", Help: "embedded broker: address to listen on (port 0 picks a free port)", val: str(&c.Broker.Listen)},
		{Key: "broker.advertise", Flag: "broker-advertise", Arg: "HOST:PORT", Help: "embedded broker: address clients are told to connect to (required when listening on all interfaces)", val: str(&c.Broker.Advertise)},
		{Key: "broker.durability", Flag: "broker-durability", Arg: "MODE", Help: "embedded broker: fsync (every acknowledged record survives power loss), os (survives a process crash; see docs/operations.md) or memory (nothing written; topics lost at exit; the default and the only choice on Windows)", val: str(&c.Broker.Durability)},
		{Key: "broker.log_level", Flag: "broker-log-level", Arg: "LEVEL", Help: "embedded broker: kfake's own logs routed to the log: error, warn, info, debug or none", val: str(&c.Broker.LogLevel)},
		{Key: "broker.retention_check_interval", Flag: "broker-retention-check-interval", Arg: "DURATION", Help: "embedded broker: how often retention deletes expired data (at least 1s)", val: duration(&c.Broker.RetentionCheckInterval)},
		{Key: "broker.compression", Flag: "broker-compression", Arg: "CODEC", Help: "compression of produced records: none, gzip, lz4, zstd or snappy", val: str(&c.Broker.Compression)},
		{Key: "broker.tls.enabled", Flag: "broker-tls", Help: "use TLS towards the external cluster", val: boolean(&c.Broker.TLS.Enabled)},
		{Key: "broker.tls.ca_file", Flag: "broker-tls-ca", Arg: "FILE", Help: "PEM file of the CAs that sign the brokers' certificates (default: system roots)", val: str(&c.Broker.TLS.CAFile)},
		{Key: "broker.tls.cert_file", Flag: "broker-tls-cert", Arg: "FILE", Help: "PEM client certificate for mutual TLS", val: str(&c.Broker.TLS.CertFile)},
		{Key: "broker.tls.key_file", Flag: "broker-tls-key", Arg: "FILE", Help: "PEM key of the client certificate", val: str(&c.Broker.TLS.KeyFile)},
		{Key: "broker.tls.server_name", Flag: "broker-tls-server-name", Arg: "NAME", Help: "server name to verify instead of the broker's host", val: str(&c.Broker.TLS.ServerName)},
		{Key: "broker.tls.insecure_skip_verify", Flag: "broker-tls-insecure", Help: "do not verify the brokers' certificates (testing only)", val: boolean(&c.Broker.TLS.InsecureSkipVerify)},
		{Key: "broker.sasl.mechanism", Flag: "broker-sasl-mechanism", Arg: "MECH", Help: "SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (empty: no SASL)", val: str(&c.Broker.SASL.Mechanism)},
		{Key: "broker.sasl.username", Flag: "broker-sasl-username", Arg: "USER", Help: "SASL user", val: str(&c.Broker.SASL.Username)},
		{Key: "broker.sasl.password", Secret: true, Help: "SASL password (config file or environment only)", val: str(&c.Broker.SASL.Password)},

		{Key: "topics.requests", Flag: "requests-topic", Arg: "TOPIC", Help: "topic the pipeline consumes requests from", val: str(&c.Pipeline.RequestsTopic)},
		{Key: "topics.results", Flag: "results-topic", Arg: "TOPIC", Help: "topic predictions are produced to", val: str(&c.Pipeline.ResultsTopic)},
		{Key: "topics.dlq", Flag: "dlq-topic", Arg: "TOPIC", Help: "dead-letter topic", val: str(&c.Pipeline.DLQTopic)},
		{Key: "topics.control", Flag: "control-topic", Arg: "TOPIC", Help: "attached mode: topic on which the instances of a group announce their states and their DLQ deletes and replays (one partition, the DLQ topic's retention)", val: str(&c.Topics.Control)},
		{Key: "topics.partitions", Flag: "topic-partitions", Arg: "N", Help: "partitions of each topic when infergate creates it", val: integer(&c.Topics.Partitions)},
		{Key: "topics.replication_factor", Flag: "topic-replication-factor", Arg: "N", Help: "replication factor of created topics (-1: the cluster's default)", val: integer(&c.Topics.ReplicationFactor)},
		{Key: "topics.retention", Flag: "topic-retention", Arg: "DURATION", Help: "retention.ms of the requests and results topics (0: unbounded)", val: duration(&c.Topics.Retention)},
		{Key: "topics.dlq_retention", Flag: "dlq-topic-retention", Arg: "DURATION", Help: "retention.ms of the DLQ topic (0: unbounded)", val: duration(&c.Topics.DLQRetention)},
		{Key: "topics.requests_bytes", Flag: "requests-topic-bytes", Arg: "BYTES", Help: "disk budget of the requests topic, split over its partitions (0: unbounded)", val: size(&c.Topics.RequestsBytes)},
		{Key: "topics.results_bytes", Flag: "results-topic-bytes", Arg: "BYTES", Help: "disk budget of the results topic, split over its partitions (0: unbounded)", val: size(&c.Topics.ResultsBytes)},
		{Key: "topics.dlq_bytes", Flag: "dlq-topic-bytes", Arg: "BYTES", Help: "disk budget of the DLQ topic, split over its partitions (0: unbounded)", val: size(&c.Topics.DLQBytes)},

		{Key: "model_server.mode", Flag: "model-server", Arg: "MODE", Help: "embedded (in-process, ONNX), isolated (the same in a supervised child process), sidecar (supervised tensorflow_model_server) or external (TF Serving at --tfserving-endpoints)", val: str(&c.ModelServer.Mode)},
		{Key: "model_server.grpc_listen", Flag: "grpc-listen", Arg: "ADDR", Help: "TF Serving gRPC API of the embedded model server or sidecar", val: str(&c.ModelServer.GRPCListen)},
		{Key: "model_server.rest_listen", Flag: "rest-listen", Arg: "ADDR", Help: "TF Serving REST API of the embedded model server or sidecar", val: str(&c.ModelServer.RESTListen)},
		{Key: "model_server.tfserving_bin", Flag: "tfserving-bin", Arg: "PATH", Help: "tensorflow_model_server binary the sidecar runs", val: str(&c.ModelServer.TFServingBin)},
		{Key: "model_server.tfserving_endpoints", Flag: "tfserving-endpoints", Arg: "HOST:PORT,...", Help: "external TF Serving gRPC endpoints (load-balanced)", val: list(&c.ModelServer.TFServingEndpoints)},
		{Key: "model_server.timeout", Flag: "predict-timeout", Arg: "DURATION", Help: "deadline of one Predict call", val: duration(&c.Pipeline.PredictTimeout)},
		{Key: "model_server.reload_rpc", Flag: "reload-rpc", Help: "embedded: allow HandleReloadConfigRequest on the gRPC port to callers with the admin token (gRPC metadata authorization: Bearer <token>); off, it is refused. Every call is audited", val: boolean(&c.ModelServer.ReloadRPC)},
		{Key: "model_server.max_request_elements", Flag: "max-request-elements", Arg: "N", Help: "embedded gRPC/REST: most tensor elements one request may decode to, all inputs together (checked before allocating)", val: int64v(&c.ModelServer.MaxRequestElements)},
		{Key: "model_server.max_request_rows", Flag: "max-request-rows", Arg: "N", Help: "embedded gRPC/REST: most rows (dim 0, REST instances) one request may have", val: int64v(&c.ModelServer.MaxRequestRows)},
		{Key: "model_server.max_inflight_request_bytes", Flag: "max-inflight-request-bytes", Arg: "BYTES", Help: "embedded gRPC/REST: estimated decode memory of the requests served at once; more wait (a larger request runs alone)", val: size(&c.ModelServer.MaxInflightBytes)},
		{Key: "model_server.max_message_bytes", Flag: "max-message-bytes", Arg: "BYTES", Help: "embedded gRPC: largest message received or sent", val: size(&c.ModelServer.MaxMessageBytes)},
		{Key: "model_server.threads", Flag: "model-threads", Arg: "N", Help: "embedded: goroutines one model call may use for a large operator (convolution, large matrix products); 0: every core", val: integer(&c.ModelServer.Threads)},
		{Key: "model_server.max_folded_constant_bytes", Flag: "max-folded-constant-bytes", Arg: "BYTES", Help: "embedded: most bytes of constants an ONNX model may fold into while loading, all together; a model over it does not load", val: size(&c.ModelServer.MaxFoldedConstantBytes)},
		{Key: "model_server.version_policy", Flag: "version-policy", Arg: "POLICY", Help: "versions served of every model (embedded and sidecar): latest:N (the N highest), all, or specific:V,V,...; latest:2 keeps the version before an upload loaded, so rollback is instant", val: str(&c.ModelServer.VersionPolicy)},
		{Key: "model_server.model_version_policies", Flag: "model-version-policies", Arg: "NAME=POLICY,...", Help: "version policy of single models, overriding model_server.version_policy, e.g. demo=latest:3", val: list(&c.ModelServer.ModelVersionPolicies)},
		{Key: "model_server.sidecar.enable_batching", Flag: "sidecar-batching", Help: "sidecar: TF Serving's server-side batching (--enable_batching with <data dir>/tfserving/batching.config)", val: boolean(&c.ModelServer.Sidecar.EnableBatching)},
		{Key: "model_server.sidecar.max_batch_size", Flag: "sidecar-max-batch-size", Arg: "N", Help: "sidecar batching: largest batch TF forms (0: TF's default)", val: int64v(&c.ModelServer.Sidecar.Batching.MaxBatchSize)},
		{Key: "model_server.sidecar.batch_timeout", Flag: "sidecar-batch-timeout", Arg: "DURATION", Help: "sidecar batching: longest TF waits to fill a batch (batch_timeout_micros; 0: TF's default)", val: duration(&c.ModelServer.Sidecar.Batching.BatchTimeout)},
		{Key: "model_server.sidecar.max_enqueued_batches", Flag: "sidecar-max-enqueued-batches", Arg: "N", Help: "sidecar batching: batches queued before TF refuses calls (0: TF's default)", val: int64v(&c.ModelServer.Sidecar.Batching.MaxEnqueuedBatches)},
		{Key: "model_server.sidecar.num_batch_threads", Flag: "sidecar-batch-threads", Arg: "N", Help: "sidecar batching: batches TF processes at once (0: TF's default)", val: int64v(&c.ModelServer.Sidecar.Batching.NumBatchThreads)},
		{Key: "model_server.sidecar.allowed_batch_sizes", Flag: "sidecar-allowed-batch-sizes", Arg: "N,...", Help: "sidecar batching: sizes TF pads batches to, increasing and ending at max_batch_size (empty: no padding)", val: int64List(&c.ModelServer.Sidecar.Batching.AllowedBatchSizes)},
		{Key: "model_server.sidecar.monitoring", Flag: "sidecar-monitoring", Help: "sidecar: TF exports Prometheus metrics at /monitoring/prometheus/metrics of its REST port", val: boolean(&c.ModelServer.Sidecar.Monitoring)},
		{Key: "model_server.sidecar.extra_flags", Flag: "sidecar-flags", Arg: "--FLAG=VALUE,...", Help: "sidecar: more tensorflow_model_server flags, e.g. --tensorflow_intra_op_parallelism=2 (ports, model config, batching and monitoring are set by infergate)", val: list(&c.ModelServer.Sidecar.ExtraFlags)},
		{Key: "model_server.sidecar.ready_timeout", Flag: "sidecar-ready-timeout", Arg: "DURATION", Help: "sidecar: longest TF may take to serve every model before it is restarted (large models load for minutes)", val: duration(&c.ModelServer.Sidecar.ReadyTimeout)},
		{Key: "model_server.sidecar.grace_period", Flag: "sidecar-grace-period", Arg: "DURATION", Help: "sidecar: time between SIGTERM and SIGKILL on stop", val: duration(&c.ModelServer.Sidecar.GracePeriod)},
		{Key: "model_server.sidecar.restart_backoff", Flag: "sidecar-restart-backoff", Arg: "DURATION", Help: "sidecar: first wait before restarting an exited TF (doubles with each failed run)", val: duration(&c.ModelServer.Sidecar.RestartBackoff)},
		{Key: "model_server.sidecar.restart_backoff_max", Flag: "sidecar-restart-backoff-max", Arg: "DURATION", Help: "sidecar: longest wait between restarts", val: duration(&c.ModelServer.Sidecar.RestartBackoffMax)},
		{Key: "model_server.sidecar.crash_loop_restarts", Flag: "sidecar-crash-loop-restarts", Arg: "N", Help: "sidecar: exits within crash_loop_window that count as a crash loop (retried at restart_backoff_max)", val: integer(&c.ModelServer.Sidecar.CrashLoopRestarts)},
		{Key: "model_server.sidecar.crash_loop_window", Flag: "sidecar-crash-loop-window", Arg: "DURATION", Help: "sidecar: window of crash_loop_restarts", val: duration(&c.ModelServer.Sidecar.CrashLoopWindow)},
		{Key: "model_server.sidecar.log_max_bytes", Flag: "sidecar-log-max-bytes", Arg: "BYTES", Help: "sidecar: size at which each of TF's stdout and stderr logs (<data dir>/tfserving/logs) is rotated", val: size(&c.ModelServer.Sidecar.LogMaxBytes)},

		{Key: "pipeline.group", Flag: "group", Arg: "GROUP", Help: "consumer group of the pipeline", val: str(&c.Pipeline.Group)},
		{Key: "pipeline.instance_id", Flag: "instance-id", Arg: "ID", Help: "static group membership (group.instance.id): unique per live instance, stable across its restarts (a StatefulSet pod name); a restart within session_timeout takes the partitions back without a rebalance; empty: dynamic member", val: str(&c.Pipeline.InstanceID)},
		{Key: "pipeline.session_timeout", Flag: "session-timeout", Arg: "DURATION", Help: "how long the group waits for a silent (crashed) member before moving its partitions", val: duration(&c.Pipeline.SessionTimeout)},
		{Key: "pipeline.heartbeat_interval", Flag: "heartbeat-interval", Arg: "DURATION", Help: "how often the member heartbeats the group (at most a third of session_timeout)", val: duration(&c.Pipeline.HeartbeatInterval)},
		{Key: "pipeline.rebalance_timeout", Flag: "rebalance-timeout", Arg: "DURATION", Help: "how long a rebalance waits for every member to rejoin", val: duration(&c.Pipeline.RebalanceTimeout)},
		{Key: "pipeline.auto_offset_reset", Flag: "auto-offset-reset", Arg: "WHERE", Help: "where a partition with no committed offset starts: earliest (every request in the topic) or latest (only new ones)", val: str(&c.Pipeline.AutoOffsetReset)},
		{Key: "pipeline.default_model", Flag: "default-model", Arg: "NAME", Help: "model for requests that name none", val: str(&c.Pipeline.DefaultModel)},
		{Key: "pipeline.default_input", Flag: "default-input", Arg: "NAME", Help: "input the short form's \"features\" feed (empty: the signature's only input)", val: str(&c.Pipeline.DefaultInput)},
		{Key: "pipeline.max_batch_size", Flag: "max-batch-size", Arg: "N", Help: "most requests in one model call", val: integer(&c.Pipeline.MaxBatchSize)},
		{Key: "pipeline.max_batch_wait", Flag: "max-batch-wait", Arg: "DURATION", Help: "longest a request waits for its batch to fill", val: duration(&c.Pipeline.MaxBatchWait)},
		{Key: "pipeline.max_inflight_batches", Flag: "max-inflight-batches", Arg: "N", Help: "batches being predicted at once", val: integer(&c.Pipeline.MaxInflightBatches)},
		{Key: "pipeline.retry_backoff", Flag: "retry-backoff", Arg: "DURATION", Help: "first backoff when the model server is unavailable (doubles each retry)", val: duration(&c.Pipeline.RetryBackoff)},
		{Key: "pipeline.retry_backoff_max", Flag: "retry-backoff-max", Arg: "DURATION", Help: "longest backoff between retries", val: duration(&c.Pipeline.RetryBackoffMax)},
		{Key: "pipeline.retry_attempts", Flag: "retry-attempts", Arg: "N", Help: "failed model calls in a row before consumption pauses (circuit open) and the model server is probed", val: integer(&c.Pipeline.RetryAttempts)},
		{Key: "pipeline.max_attempts", Flag: "max-attempts", Arg: "N", Help: "model calls of one request alone that may time out (DEADLINE_EXCEEDED) or exhaust resources (RESOURCE_EXHAUSTED) while others succeed before it is dead-lettered (class timeout or resource_exhausted)", val: integer(&c.Pipeline.MaxAttempts)},
		{Key: "pipeline.probe_interval", Flag: "probe-interval", Arg: "DURATION", Help: "how often an open circuit probes the model server", val: duration(&c.Pipeline.ProbeInterval)},
		{Key: "pipeline.shutdown_timeout", Flag: "shutdown-timeout", Arg: "DURATION", Help: "longest graceful drain on shutdown; unfinished requests are redelivered after restart", val: duration(&c.Pipeline.ShutdownTimeout)},

		{Key: "rollout.shadow_queue", Flag: "shadow-queue", Arg: "N", Help: "observed batches that may wait for a rollout's shadow model; beyond it sampled requests are skipped (counted), never delayed", val: integer(&c.Rollout.QueueSize)},
		{Key: "rollout.shadow_busy_share", Flag: "shadow-busy-share", Arg: "RATIO", Help: "share of wall time a rollout's shadow may spend scoring while the pipeline has a backlog, more than 0 and at most 1; beyond it sampled requests are skipped (counted)", val: float(&c.Rollout.BusyShare)},
		{Key: "rollout.retention", Flag: "rollout-retention", Arg: "DURATION", Help: "how long a rollout's per-request comparisons (both predictions and latencies) are kept in the store", val: duration(&c.Rollout.Retention)},
		{Key: "rollout.check_interval", Flag: "rollout-check-interval", Arg: "DURATION", Help: "how often a rollout's guards are checked and its planned steps advanced", val: duration(&c.Rollout.CheckInterval)},

		{Key: "delivery.guarantee", Flag: "delivery", Arg: "MODE", Help: "at-least-once or exactly-once (Kafka transactions)", val: str(&c.Pipeline.Delivery)},
		{Key: "delivery.transactional_id", Flag: "transactional-id", Arg: "ID", Help: "exactly-once: transactional id, unique per live instance and stable across restarts (default <group>-<instance id>, else <group>-<hostname>-<hash of the data dir>)", val: str(&c.Pipeline.TransactionalID)},

		{Key: "store.dlq_retention", Flag: "dlq-retention", Arg: "DURATION", Help: "how long dead-lettered records stay in the store (0: forever)", val: duration(&c.Store.Retention)},
		{Key: "store.dlq_max_records", Flag: "dlq-max-records", Arg: "N", Help: "most dead-lettered records kept in the store; the oldest go first (0: no cap)", val: integer(&c.Store.MaxRecords)},
		{Key: "store.sync_writes", Flag: "store-sync-writes", Help: "fsync every store write", val: boolean(&c.Store.SyncWrites)},

		{Key: "http.listen", Flag: "http-listen", Arg: "ADDR", Help: "dashboard, admin API and /metrics (empty: disabled)", val: str(&c.HTTP.Listen)},
		{Key: "http.admin_token", Env: "INFERGATE_ADMIN_TOKEN", Secret: true, Help: "admin API token (default: generated into <data dir>/admin-token)", val: str(&c.HTTP.AdminToken)},
		{Key: "http.tls_cert", Flag: "http-tls-cert", Arg: "FILE", Help: "PEM certificate: serve the dashboard and API over HTTPS (with --http-tls-key)", val: str(&c.HTTP.TLSCert)},
		{Key: "http.tls_key", Flag: "http-tls-key", Arg: "FILE", Help: "PEM key of --http-tls-cert", val: str(&c.HTTP.TLSKey)},
		{Key: "http.session_ttl", Flag: "http-session-ttl", Arg: "DURATION", Help: "how long a dashboard login lasts", val: duration(&c.HTTP.SessionTTL)},
		{Key: "http.login_free_failures", Flag: "http-login-free-failures", Arg: "N", Help: "wrong tokens one client address may send before each further attempt must wait", val: integer(&c.HTTP.LoginFreeFailures)},
		{Key: "http.login_backoff", Flag: "http-login-backoff", Arg: "DURATION", Help: "first wait after the free failed logins; doubles with each further failure", val: duration(&c.HTTP.LoginBackoff)},
		{Key: "http.login_max_backoff", Flag: "http-login-max-backoff", Arg: "DURATION", Help: "longest wait between failed logins", val: duration(&c.HTTP.LoginMaxBackoff)},
		{Key: "http.events_interval", Flag: "http-events-interval", Arg: "DURATION", Help: "period of the dashboard's live updates (/api/v1/events), 10ms to 1m", val: duration(&c.HTTP.EventsInterval)},
		{Key: "http.max_upload_bytes", Flag: "http-max-upload-bytes", Arg: "BYTES", Help: "largest model file the dashboard and API accept (413 beyond it)", val: size(&c.HTTP.MaxUploadBytes)},
		{Key: "http.test_timeout", Flag: "http-test-timeout", Arg: "DURATION", Help: "how long \"send a test request\" and replay-and-wait from the dashboard and API wait for the result or DLQ record (a slow model needs more)", val: duration(&c.HTTP.TestTimeout)},
		{Key: "http.metrics_auth", Flag: "http-metrics-auth", Help: "require the admin token on /metrics too", val: boolean(&c.HTTP.MetricsAuth)},
		{Key: "http.read_header_timeout", Flag: "http-read-header-timeout", Arg: "DURATION", Help: "every HTTP listener (dashboard, API, /metrics, model server REST): close a connection whose request headers take longer", val: duration(&c.HTTP.ReadHeaderTimeout)},
		{Key: "http.read_timeout", Flag: "http-read-timeout", Arg: "DURATION", Help: "every HTTP listener: close a connection whose request body takes longer to arrive (model uploads: http.upload_timeout)", val: duration(&c.HTTP.ReadTimeout)},
		{Key: "http.upload_timeout", Flag: "http-upload-timeout", Arg: "DURATION", Help: "longest a model upload's body may take to arrive", val: duration(&c.HTTP.UploadTimeout)},
		{Key: "http.idle_timeout", Flag: "http-idle-timeout", Arg: "DURATION", Help: "every HTTP listener: close a keep-alive connection idle for longer", val: duration(&c.HTTP.IdleTimeout)},

		{Key: "ingress.enabled", Flag: "ingress", Help: "run the edge ingress: an embedded nats-server taking device requests over MQTT and NATS and answering with their predictions (docs/ingress.md)", val: boolean(&c.Ingress.Enabled)},
		{Key: "ingress.mode", Flag: "ingress-mode", Arg: "MODE", Help: "ingress: embedded (a nats-server in this process with the listeners below) or external (attach to the NATS server at --ingress-nats-url, where devices connect; docs/ingress.md)", val: str(&c.Ingress.Mode)},
		{Key: "ingress.nats_url", Flag: "ingress-nats-url", Arg: "URL,...", Help: "ingress, external mode: URLs of the NATS server or cluster (nats://host:4222, tls://host:4222)", val: list(&c.Ingress.NATSURL)},
		{Key: "ingress.nats_user", Flag: "ingress-nats-user", Arg: "USER", Help: "ingress, external mode: NATS user", val: str(&c.Ingress.NATSUser)},
		{Key: "ingress.nats_password", Secret: true, Help: "ingress, external mode: NATS password (config file or environment only)", val: str(&c.Ingress.NATSPassword)},
		{Key: "ingress.nats_creds_file", Flag: "ingress-nats-creds", Arg: "FILE", Help: "ingress, external mode: NATS credentials file (user JWT and nkey seed), instead of user and password", val: str(&c.Ingress.NATSCredsFile)},
		{Key: "ingress.nats_ca_file", Flag: "ingress-nats-ca", Arg: "FILE", Help: "ingress, external mode: PEM file of the CAs that sign the NATS server's certificate (default: system roots)", val: str(&c.Ingress.NATSCAFile)},
		{Key: "ingress.nats_cert_file", Flag: "ingress-nats-cert", Arg: "FILE", Help: "ingress, external mode: PEM client certificate for mutual TLS", val: str(&c.Ingress.NATSCertFile)},
		{Key: "ingress.nats_key_file", Flag: "ingress-nats-key", Arg: "FILE", Help: "ingress, external mode: PEM key of the client certificate", val: str(&c.Ingress.NATSKeyFile)},
		{Key: "ingress.mqtt_listen", Flag: "mqtt-listen", Arg: "ADDR", Help: "ingress: MQTT 3.1.1 listener (empty: no MQTT)", val: str(&c.Ingress.MQTTListen)},
		{Key: "ingress.nats_listen", Flag: "nats-listen", Arg: "ADDR", Help: "ingress: NATS listener (empty: no NATS clients)", val: str(&c.Ingress.NATSListen)},
		{Key: "ingress.group", Flag: "ingress-group", Arg: "GROUP", Help: "ingress: consumer group reading results and DLQ records to answer devices", val: str(&c.Ingress.Group)},
		{Key: "ingress.max_ack_pending", Flag: "ingress-max-ack-pending", Arg: "N", Help: "ingress: most device requests on their way to Kafka at once; beyond it they wait on disk in the inbox", val: integer(&c.Ingress.MaxAckPending)},
		{Key: "ingress.ack_wait", Flag: "ingress-ack-wait", Arg: "DURATION", Help: "ingress: how long a request may wait for Kafka's ack before the inbox delivers it again", val: duration(&c.Ingress.AckWait)},
		{Key: "ingress.max_store", Flag: "ingress-max-store", Arg: "BYTES", Help: "ingress: disk budget of the JetStream store under <data dir>/nats; when full, devices' QoS 1 publishes are refused (0: nats-server's default)", val: size(&c.Ingress.MaxStore)},
		{Key: "ingress.sync_always", Flag: "ingress-sync-always", Help: "ingress: fsync every JetStream write, so a PUBACK also survives a power loss (slower)", val: boolean(&c.Ingress.SyncAlways)},
		{Key: "ingress.answer_qos", Flag: "ingress-answer-qos", Arg: "QOS", Help: "ingress: MQTT QoS of the answers to devices, 0 or 1: 1 stores each in JetStream so persistent sessions get answers published while away; 0 is cheaper and drops the answers of devices not connected (they stay in the results topic)", val: integer(&c.Ingress.AnswerQoS)},
		{Key: "ingress.devices_file", Flag: "ingress-devices-file", Arg: "FILE", Help: "ingress: device credentials, one \"NAME PASSWORD\" a line (\"observer NAME PASSWORD\" for read-only clients); required when a listener is not on loopback", val: str(&c.Ingress.DevicesFile)},
		{Key: "ingress.tls_cert", Flag: "ingress-tls-cert", Arg: "FILE", Help: "ingress: PEM certificate; both listeners then accept TLS only (MQTT over TLS, NATS with TLS required; with --ingress-tls-key)", val: str(&c.Ingress.TLSCert)},
		{Key: "ingress.tls_key", Flag: "ingress-tls-key", Arg: "FILE", Help: "ingress: PEM key of --ingress-tls-cert", val: str(&c.Ingress.TLSKey)},

		{Key: "demo.enabled", Flag: "demo", Help: "feed synthetic sensor readings to the requests topic", val: boolean(&c.Demo.Enabled)},
		{Key: "demo.rate", Flag: "demo-rate", Arg: "PER_SECOND", Help: "demo requests per second", val: float(&c.Demo.Rate)},
		{Key: "demo.anomaly_ratio", Flag: "demo-anomaly-ratio", Arg: "RATIO", Help: "share of anomalous demo readings, 0 to 1", val: float(&c.Demo.AnomalyRatio)},
		{Key: "demo.summary_interval", Flag: "demo-summary-interval", Arg: "DURATION", Help: "how often --demo logs a one-line summary", val: duration(&c.Demo.SummaryInterval)},
	}
}

// envName is the environment variable of a key unless the table says otherwise.
func (s setting) envName() string {
	if s.Env != "" {
		return s.Env
	}
	return "INFERGATE_" + strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(s.Key))
}

// describe names a setting the way errors do: key (--flag, ENV).
func (s setting) describe() string {
	if s.Flag == "" {
		return fmt.Sprintf("%s (%s)", s.Key, s.envName())
	}
	return fmt.Sprintf("%s (--%s, %s)", s.Key, s.Flag, s.envName())
}

type stringValue struct{ p *string }

func str(p *string) value                { return stringValue{p} }
func (v stringValue) Set(s string) error { *v.p = s; return nil }
func (v stringValue) ptr() any           { return v.p }
func (v stringValue) String() string     { return *v.p }

type intValue struct{ p *int }

func integer(p *int) value { return intValue{p} }
func (v intValue) Set(s string) error {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("%q is not a whole number", s)
	}
	*v.p = n
	return nil
}
func (v intValue) ptr() any       { return v.p }
func (v intValue) String() string { return strconv.Itoa(*v.p) }

type int64Value struct{ p *int64 }

func int64v(p *int64) value { return int64Value{p} }
func (v int64Value) Set(s string) error {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return fmt.Errorf("%q is not a whole number", s)
	}
	*v.p = n
	return nil
}
func (v int64Value) ptr() any       { return v.p }
func (v int64Value) String() string { return strconv.FormatInt(*v.p, 10) }

// sizeValue is a number of bytes, with or without a unit: 1048576, 512MiB, 2GiB.
type sizeValue struct{ p *int64 }

func size(p *int64) value { return sizeValue{p} }
func (v sizeValue) Set(s string) error {
	n, err := bytesize.Parse(s)
	if err != nil {
		return err
	}
	*v.p = n
	return nil
}
func (v sizeValue) ptr() any       { return v.p }
func (v sizeValue) String() string { return bytesize.Format(*v.p) }

type floatValue struct{ p *float64 }

func float(p *float64) value { return floatValue{p} }
func (v floatValue) Set(s string) error {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil {
		return fmt.Errorf("%q is not a number", s)
	}
	*v.p = f
	return nil
}
func (v floatValue) ptr() any       { return v.p }
func (v floatValue) String() string { return strconv.FormatFloat(*v.p, 'g', -1, 64) }

type boolValue struct{ p *bool }

func boolean(p *bool) value { return boolValue{p} }
func (v boolValue) Set(s string) error {
	b, err := strconv.ParseBool(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("%q is not true or false", s)
	}
	*v.p = b
	return nil
}
func (v boolValue) ptr() any         { return v.p }
func (v boolValue) String() string   { return strconv.FormatBool(*v.p) }
func (v boolValue) IsBoolFlag() bool { return true }

type durationValue struct{ p *time.Duration }

func duration(p *time.Duration) value { return durationValue{p} }
func (v durationValue) Set(s string) error {
	s = strings.TrimSpace(s)
	if s == "0" {
		*v.p = 0
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration such as 500ms, 30s or 168h", s)
	}
	*v.p = d
	return nil
}
func (v durationValue) ptr() any       { return v.p }
func (v durationValue) String() string { return v.p.String() }

// lister marks the values a YAML sequence may set (joined with commas).
type lister interface{ isList() }

// listValue is a comma-separated list; an empty string is the empty list.
type listValue struct{ p *[]string }

func list(p *[]string) value { return listValue{p} }
func (v listValue) Set(s string) error {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	*v.p = out
	return nil
}
func (v listValue) ptr() any       { return v.p }
func (v listValue) String() string { return strings.Join(*v.p, ",") }
func (listValue) isList()          {}

// int64ListValue is a comma-separated list of whole numbers.
type int64ListValue struct{ p *[]int64 }

func int64List(p *[]int64) value { return int64ListValue{p} }
func (v int64ListValue) Set(s string) error {
	var out []int64
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		n, err := strconv.ParseInt(part, 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not a whole number", part)
		}
		out = append(out, n)
	}
	*v.p = out
	return nil
}
func (v int64ListValue) ptr() any { return v.p }
func (v int64ListValue) String() string {
	parts := make([]string, len(*v.p))
	for i, n := range *v.p {
		parts[i] = strconv.FormatInt(n, 10)
	}
	return strings.Join(parts, ",")
}
func (int64ListValue) isList() {}
