package appliance

import (
	"errors"
	"fmt"
	"math"
	"net"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/infergate/infergate/broker"
	"github.com/infergate/infergate/inference/sidecar"
	"github.com/infergate/infergate/inference/tfserving"
	"github.com/infergate/infergate/internal/field"
)

// Validate checks every setting and reports all problems at once, each
// naming the setting as "key (--flag, ENV): ...".
func (c *Config) Validate() error {
	v := validator{names: map[string]string{}, byPtr: map[any]string{}}
	for _, s := range c.settings() {
		v.names[s.Key] = s.describe()
		v.byPtr[s.val.ptr()] = s.describe()
	}

	if c.MinFreeBytes < 0 {
		v.errf("min_free_bytes", "%d: must be >= 0 (0 turns the free-space check off)", c.MinFreeBytes)
	}
	if strings.TrimSpace(c.DataDir) == "" {
		v.errf("data_dir", "must be set")
	}
	v.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	v.oneOf("log.format", c.Log.Format, "text", "json")

	// Broker.
	v.oneOf("broker.mode", c.Broker.Mode, BrokerEmbedded, BrokerExternal)
	embeddedBroker := c.Broker.Mode == BrokerEmbedded
	switch c.Broker.Mode {
	case BrokerEmbedded:
		v.listenAddr("broker.listen", c.Broker.Listen)
		if c.Broker.Advertise != "" {
			v.hostPort("broker.advertise", c.Broker.Advertise)
		} else if host, _, err := net.SplitHostPort(c.Broker.Listen); err == nil && unspecified(host) {
			v.errf("broker.advertise", "must be set when broker.listen %q listens on all interfaces: give the host:port other machines use to reach this one", c.Broker.Listen)
		}
		v.oneOf("broker.durability", c.Broker.Durability, string(broker.DurabilityFsync), string(broker.DurabilityOS), string(broker.DurabilityMemory))
		if err := broker.Durability(c.Broker.Durability).SupportedOn(runtime.GOOS); err != nil {
			v.errf("broker.durability", "%v", err)
		}
		if len(c.Broker.Brokers) > 0 {
			v.errf("broker.brokers", "is only used with an external broker (--broker external); the embedded broker listens on broker.listen")
		}
	case BrokerExternal:
		if len(c.Broker.Brokers) == 0 {
			v.errf("broker.brokers", "must list the seed brokers (HOST:PORT,...) when broker.mode is external")
		}
		for _, b := range c.Broker.Brokers {
			v.hostPort("broker.brokers", b)
		}
	}
	v.oneOf("broker.compression", c.Broker.Compression, "none", "gzip", "lz4", "zstd", "snappy")
	tls := c.Broker.TLS
	if !tls.Enabled && (tls.CAFile != "" || tls.CertFile != "" || tls.KeyFile != "" || tls.ServerName != "" || tls.InsecureSkipVerify) {
		v.errf("broker.tls.enabled", "TLS options are set but TLS is off: set broker.tls.enabled (--broker-tls) too")
	}
	if (tls.CertFile == "") != (tls.KeyFile == "") {
		v.errf("broker.tls.key_file", "broker.tls.cert_file and broker.tls.key_file go together: set both or neither")
	}
	sasl := c.Broker.SASL
	if sasl.Mechanism != "" {
		v.oneOf("broker.sasl.mechanism", sasl.Mechanism, "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
		if sasl.Username == "" {
			v.errf("broker.sasl.username", "must be set with broker.sasl.mechanism %s", sasl.Mechanism)
		}
		if sasl.Password == "" {
			v.errf("broker.sasl.password", "must be set with broker.sasl.mechanism %s", sasl.Mechanism)
		}
	} else if sasl.Username != "" || sasl.Password != "" {
		v.errf("broker.sasl.mechanism", "a SASL user or password is set but no mechanism: set PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
	}
	if embeddedBroker && (tls.Enabled || sasl.Mechanism != "") {
		v.errf("broker.mode", "TLS and SASL settings apply to an external cluster; the embedded broker listens in plain text (use --broker external)")
	}

	// Topics (their names are the pipeline's: see below).
	if c.Topics.Partitions < 1 || c.Topics.Partitions > 10000 {
		v.errf("topics.partitions", "%d is not between 1 and 10000", c.Topics.Partitions)
	}
	if c.Topics.ReplicationFactor == 0 || c.Topics.ReplicationFactor < -1 {
		v.errf("topics.replication_factor", "%d: must be -1 (the cluster's default) or at least 1", c.Topics.ReplicationFactor)
	}
	if embeddedBroker && c.Topics.ReplicationFactor > 1 {
		v.errf("topics.replication_factor", "%d: the embedded broker is a single node; use -1 or 1", c.Topics.ReplicationFactor)
	}
	if !embeddedBroker {
		switch c.Topics.Control {
		case "":
			v.errf("topics.control", "must be set with broker.mode external")
		case c.Pipeline.RequestsTopic, c.Pipeline.ResultsTopic, c.Pipeline.DLQTopic:
			v.errf("topics.control", "%q is also the requests, results or DLQ topic: the control topic must be a topic of its own", c.Topics.Control)
		}
	}
	v.nonNegative("topics.retention", c.Topics.Retention)
	v.nonNegative("topics.dlq_retention", c.Topics.DLQRetention)
	for _, b := range []struct {
		key string
		v   int64
	}{{"topics.requests_bytes", c.Topics.RequestsBytes}, {"topics.results_bytes", c.Topics.ResultsBytes}, {"topics.dlq_bytes", c.Topics.DLQBytes}} {
		if b.v < 0 || (b.v > 0 && b.v < 1<<20) {
			v.errf(b.key, "%d: must be 0 (unbounded) or at least 1048576 (1 MiB)", b.v)
		}
	}

	// Model server.
	v.oneOf("model_server.mode", c.ModelServer.Mode, ModelServerEmbedded, ModelServerSidecar, ModelServerExternal, ModelServerIsolated)
	switch c.ModelServer.Mode {
	case ModelServerEmbedded, ModelServerSidecar, ModelServerIsolated:
		v.listenAddr("model_server.grpc_listen", c.ModelServer.GRPCListen)
		v.listenAddr("model_server.rest_listen", c.ModelServer.RESTListen)
		if c.ModelServer.Mode == ModelServerIsolated {
			c.validateIsolated(&v)
		}
		if c.ModelServer.Mode == ModelServerSidecar && strings.TrimSpace(c.ModelServer.TFServingBin) == "" {
			v.errf("model_server.tfserving_bin", "must name the tensorflow_model_server binary when model_server.mode is sidecar")
		}
		if len(c.ModelServer.TFServingEndpoints) > 0 {
			v.errf("model_server.tfserving_endpoints", "is only used with an external model server (--model-server external)")
		}
	case ModelServerExternal:
		if len(c.ModelServer.TFServingEndpoints) == 0 {
			v.errf("model_server.tfserving_endpoints", "must list TF Serving gRPC endpoints (HOST:PORT,...) when model_server.mode is external")
		}
		for _, e := range c.ModelServer.TFServingEndpoints {
			v.hostPort("model_server.tfserving_endpoints", e)
		}
	}
	for _, l := range []struct {
		key string
		n   int64
	}{
		{"model_server.max_request_elements", c.ModelServer.MaxRequestElements},
		{"model_server.max_request_rows", c.ModelServer.MaxRequestRows},
		{"model_server.max_inflight_request_bytes", c.ModelServer.MaxInflightBytes},
		{"model_server.max_message_bytes", c.ModelServer.MaxMessageBytes},
		{"model_server.max_folded_constant_bytes", c.ModelServer.MaxFoldedConstantBytes},
	} {
		if l.n < 1 {
			v.errf(l.key, "must be at least 1, got %d", l.n)
		}
	}
	if _, err := tfserving.ParseVersionPolicy(c.ModelServer.VersionPolicy); err != nil {
		v.errf("model_server.version_policy", "%v", err)
	}
	if _, err := c.modelPolicies(); err != nil {
		v.errf("model_server.model_version_policies", "%v", err)
	}
	if c.ModelServer.Threads < 0 {
		v.errf("model_server.threads", "must be 0 (every core) or more, got %d", c.ModelServer.Threads)
	}
	if c.ModelServer.MaxMessageBytes > math.MaxInt32 {
		v.errf("model_server.max_message_bytes", "must be at most %d (gRPC's limit), got %d", math.MaxInt32, c.ModelServer.MaxMessageBytes)
	}
	c.validateSidecar(&v)

	// The packages check their own fields.
	v.fields(c.Pipeline.Validate())
	v.fields(c.Rollout.Validate())
	v.fields(c.Store.Validate())

	// HTTP.
	if c.HTTP.Listen != "" {
		v.listenAddr("http.listen", c.HTTP.Listen)
	}
	v.fields(c.HTTP.ValidateSettings())

	// Demo.
	if c.Demo.Rate <= 0 || c.Demo.Rate > 1e6 {
		v.errf("demo.rate", "%g is not between 0 (exclusive) and 1000000 requests per second", c.Demo.Rate)
	}
	if c.Demo.AnomalyRatio < 0 || c.Demo.AnomalyRatio > 1 {
		v.errf("demo.anomaly_ratio", "%g is not between 0 and 1", c.Demo.AnomalyRatio)
	}
	if c.Demo.SummaryInterval < 100*time.Millisecond {
		v.errf("demo.summary_interval", "%s is below the minimum of 100ms", c.Demo.SummaryInterval)
	}

	c.validateIngress(&v)
	c.checkPortClashes(&v)
	return errors.Join(v.errs...)
}

// validateIsolated checks what model_server.mode isolated adds: the child
// binds one interface for both ports, loopback or all of them
// (backend_isolated.go's isolatedListen).
func (c *Config) validateIsolated(v *validator) {
	ms := c.ModelServer
	grpcHost, _, gerr := isolatedListen("grpc_listen", "grpc-listen", ms.GRPCListen)
	if gerr != nil {
		if _, _, err := net.SplitHostPort(ms.GRPCListen); err == nil {
			v.errf("model_server.grpc_listen", "%q: in isolated mode the model server listens on loopback (127.0.0.1, ::1, localhost) or every interface (0.0.0.0)", ms.GRPCListen)
		}
		return
	}
	if ms.RESTListen == "" {
		return
	}
	if restHost, _, err := isolatedListen("rest_listen", "rest-listen", ms.RESTListen); err == nil && restHost != grpcHost {
		v.errf("model_server.rest_listen", "%q: in isolated mode both ports are on one interface; model_server.grpc_listen is on %s", ms.RESTListen, grpcHost)
	} else if err != nil {
		if _, _, err := net.SplitHostPort(ms.RESTListen); err == nil {
			v.errf("model_server.rest_listen", "%q: in isolated mode the model server listens on loopback (127.0.0.1, ::1, localhost) or every interface (0.0.0.0)", ms.RESTListen)
		}
	}
}

// validateSidecar checks model_server.sidecar.*, which only sidecar mode
// uses; what would make TF refuse to start is caught here, naming the
// setting, rather than in a restart loop of the child.
func (c *Config) validateSidecar(v *validator) {
	sc := c.ModelServer.Sidecar
	if c.ModelServer.Mode != ModelServerSidecar {
		if sc.EnableBatching {
			v.errf("model_server.sidecar.enable_batching", "is only used with model_server.mode sidecar (--model-server sidecar)")
		}
		if len(sc.ExtraFlags) > 0 {
			v.errf("model_server.sidecar.extra_flags", "is only used with model_server.mode sidecar (--model-server sidecar)")
		}
	}
	b := &c.ModelServer.Sidecar.Batching
	batching := []struct {
		key string
		set bool
	}{
		{"model_server.sidecar.max_batch_size", b.MaxBatchSize != 0},
		{"model_server.sidecar.batch_timeout", b.BatchTimeout != 0},
		{"model_server.sidecar.max_enqueued_batches", b.MaxEnqueuedBatches != 0},
		{"model_server.sidecar.num_batch_threads", b.NumBatchThreads != 0},
		{"model_server.sidecar.allowed_batch_sizes", len(b.AllowedBatchSizes) > 0},
	}
	for _, s := range batching {
		if s.set && !sc.EnableBatching {
			v.errf(s.key, "is set but batching is off: set model_server.sidecar.enable_batching (--sidecar-batching) too")
		}
	}
	v.fields(b.Validate())
	if b.BatchTimeout > 0 && b.BatchTimeout < time.Microsecond {
		v.errf("model_server.sidecar.batch_timeout", "%s: TF counts in microseconds; use at least 1µs", b.BatchTimeout)
	}
	for _, f := range sc.ExtraFlags {
		if !strings.HasPrefix(f, "-") {
			v.errf("model_server.sidecar.extra_flags", "%q is not a flag (tensorflow_model_server takes --name=value)", f)
			continue
		}
		if name, _, managed := sidecar.ManagedFlag(f); managed {
			v.errf("model_server.sidecar.extra_flags", "--%s is set by infergate itself (ports from grpc_listen/rest_listen, models from the model repository, batching and monitoring from model_server.sidecar.*); remove it", name)
		}
	}
	v.positive("model_server.sidecar.ready_timeout", sc.ReadyTimeout)
	v.positive("model_server.sidecar.grace_period", sc.GracePeriod)
	v.positive("model_server.sidecar.restart_backoff", sc.RestartBackoff)
	if sc.RestartBackoffMax < sc.RestartBackoff {
		v.errf("model_server.sidecar.restart_backoff_max", "%s is below model_server.sidecar.restart_backoff (%s)", sc.RestartBackoffMax, sc.RestartBackoff)
	}
	if sc.CrashLoopRestarts < 1 {
		v.errf("model_server.sidecar.crash_loop_restarts", "%d: must be >= 1", sc.CrashLoopRestarts)
	}
	v.positive("model_server.sidecar.crash_loop_window", sc.CrashLoopWindow)
	if sc.LogMaxBytes < 1024 {
		v.errf("model_server.sidecar.log_max_bytes", "%d: must be at least 1024", sc.LogMaxBytes)
	}
}

// checkPortClashes catches two listeners on the same port before anything
// binds, so the error names both settings instead of "address in use".
func (c *Config) checkPortClashes(v *validator) {
	type listener struct{ key, host, port string }
	var ls []listener
	add := func(key, addr string) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil || port == "0" || port == "" {
			return
		}
		ls = append(ls, listener{key, host, port})
	}
	if c.Broker.Mode == BrokerEmbedded {
		add("broker.listen", c.Broker.Listen)
	}
	if c.ModelServer.Mode != ModelServerExternal {
		add("model_server.grpc_listen", c.ModelServer.GRPCListen)
		if c.ModelServer.RESTListen != "" {
			add("model_server.rest_listen", c.ModelServer.RESTListen)
		}
	}
	if c.HTTP.Listen != "" {
		add("http.listen", c.HTTP.Listen)
	}
	if c.Ingress.Enabled {
		if c.Ingress.MQTTListen != "" {
			add("ingress.mqtt_listen", c.Ingress.MQTTListen)
		}
		if c.Ingress.NATSListen != "" {
			add("ingress.nats_listen", c.Ingress.NATSListen)
		}
	}
	for i := range ls {
		for j := 0; j < i; j++ {
			a, b := ls[j], ls[i]
			if a.port == b.port && (a.host == b.host || unspecified(a.host) || unspecified(b.host)) {
				v.errf(b.key, "port %s is also used by %s", b.port, v.names[a.key])
			}
		}
	}
}

type validator struct {
	names map[string]string // key -> "key (--flag, ENV)"
	byPtr map[any]string    // field pointer -> "key (--flag, ENV)"
	errs  []error
}

// fields adds the errors of a package's Validate, called on the package
// Config inside c: each field.Error's pointer is looked up in the settings
// table, so the message names the setting's key, flag and variable.
func (v *validator) fields(err error) {
	fes, other := field.All(err)
	for _, fe := range fes {
		name, ok := v.byPtr[fe.Ptr]
		if !ok {
			name = fe.Name + " (not a setting)" // a field no table row binds: a bug the tests catch
		}
		v.errs = append(v.errs, fmt.Errorf("%s: %w", name, fe.Err))
	}
	v.errs = append(v.errs, other...)
}

func (v *validator) errf(key, format string, args ...any) {
	name := v.names[key]
	if name == "" {
		name = key // a key missing from the table is a bug, but still say which
	}
	v.errs = append(v.errs, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...)))
}

func (v *validator) oneOf(key, val string, allowed ...string) {
	for _, a := range allowed {
		if val == a {
			return
		}
	}
	v.errf(key, "%q is not one of %s", val, strings.Join(allowed, ", "))
}

func (v *validator) positive(key string, d time.Duration) {
	if d <= 0 {
		v.errf(key, "%s: must be a positive duration such as 500ms or 10s", d)
	}
}

func (v *validator) nonNegative(key string, d time.Duration) {
	if d < 0 {
		v.errf(key, "%s: must not be negative", d)
	}
}

// hostPort checks HOST:PORT with a port in 1..65535 (something to dial).
func (v *validator) hostPort(key, addr string) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		v.errf(key, "%q is not HOST:PORT", addr)
		return
	}
	if host == "" {
		v.errf(key, "%q has no host", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		v.errf(key, "%q: port %q is not a number between 1 and 65535", addr, port)
	}
}

// listenAddr checks an address to bind: HOST:PORT, port 0 meaning any free
// port; an empty host means all interfaces.
func (v *validator) listenAddr(key, addr string) {
	if addr == "" {
		v.errf(key, "must be set (HOST:PORT, e.g. 127.0.0.1:0 for a free port)")
		return
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		v.errf(key, "%q is not HOST:PORT", addr)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		v.errf(key, "%q: port %q is not a number between 0 and 65535", addr, port)
	}
}

func unspecified(host string) bool {
	if host == "" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsUnspecified()
}
