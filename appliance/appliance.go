package appliance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/infergate/infergate/broker"
	"github.com/infergate/infergate/buildinfo"
	"github.com/infergate/infergate/inference/feed"
	"github.com/infergate/infergate/inference/group"
	"github.com/infergate/infergate/inference/modelserver"
	"github.com/infergate/infergate/inference/pipeline"
	"github.com/infergate/infergate/inference/rollout"
	"github.com/infergate/infergate/ingress"
	"github.com/infergate/infergate/internal/logring"
	"github.com/infergate/infergate/store"
	"github.com/infergate/infergate/web"
)

// Appliance is one running infergate: every component of a Config, started
// in dependency order and stopped in reverse.
type Appliance struct {
	cfg    Config // as started; live holds what the dashboard changed since
	live   liveSettings
	level  *slog.LevelVar // log.level, changed live
	logger *slog.Logger
	logs   *logring.Ring // the log records of logger, for the dashboard
	paths  Paths
	token  atomic.Pointer[string] // rotated from the dashboard
	reg    *prometheus.Registry

	generatedToken string // set when New generated the token

	sup   *supervisor
	comps []*component

	mu       sync.Mutex // guards what components publish as they start
	store    *store.Store
	embedded *broker.Embedded
	// backend is the model server of model_server.mode: the pipeline's
	// predictor and the admin API's models (models.go). modelServer is the
	// embedded mode's server itself, for ModelServer.
	backend     modelBackend
	modelServer *modelserver.Server // model_server.mode embedded
	pipeline    *pipeline.Pipeline
	rollouts    *rollout.Controller // pins, shadows, splits; made with the pipeline
	sharer      *group.Sharer       // attached mode: the group's DLQ and member states
	feed        *feed.Feed          // recent predictions and anomaly counts, for the dashboard
	web         *web.Server
	ingress     *ingress.Ingress
	client      broker.ClientConfig // brokers filled in once the broker runs
}

// New validates cfg, prepares the data dir (creating broker/, store/,
// models/ and the admin token) and checks that every listen address is
// free, so the common mistakes fail here with a message naming the setting.
// Nothing is started until Run.
func New(cfg Config, logger *slog.Logger) (*Appliance, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// The dashboard's log view reads what the log stream gets from here on.
	// log.level gates every record here, so a change from the dashboard
	// applies at once (levelOf: NewLogger's handler shares the same gate).
	logs := logring.New(0)
	level := levelOf(logger.Handler())
	if level == nil {
		level = new(slog.LevelVar)
		level.Set(parseLevel(cfg.Log.Level))
	}
	logger = slog.New(levelHandler{logring.Tee(logger.Handler(), logs), level})
	a := &Appliance{
		cfg:    cfg,
		level:  level,
		logger: logger,
		logs:   logs,
		paths:  DataPaths(cfg.DataDir),
		reg:    prometheus.NewRegistry(),
		client: cfg.ClientConfig(),
	}
	a.live.init(cfg)
	// kgo logs every metadata refresh at info: useful when debugging,
	// noise otherwise.
	a.client.Logger = slog.New(clientLevel{logger.Handler(), level})
	a.reg.MustRegister(buildinfo.Collector())
	if err := prepareDataDir(a.paths, logger); err != nil {
		return nil, err
	}
	if err := cfg.checkListeners(); err != nil {
		return nil, err
	}
	token, state, err := adminToken(cfg.HTTP.AdminToken, a.paths)
	if err != nil {
		return nil, err
	}
	a.token.Store(&token)
	// The token itself never goes into the log stream (logs are shipped
	// elsewhere); GeneratedToken lets the command show it on a terminal.
	switch state {
	case tokenNew:
		a.generatedToken = token
		logger.Warn("generated the admin token; read it from the file (mode 0600)", "file", a.paths.AdminToken)
	case tokenReplaced:
		a.generatedToken = token
		logger.Warn("the admin token file was empty; generated a new admin token, in the file (mode 0600); "+
			"the old token no longer works", "file", a.paths.AdminToken)
	}
	a.sup = newSupervisor(logger)
	a.comps = a.components()
	return a, nil
}

// Run starts the components and blocks until ctx ends or one of them fails,
// then stops them in reverse order: the web server stops taking requests,
// the pipeline drains (finishes in-flight batches, produces, commits), then
// the model server, the broker and last the store stop.
func (a *Appliance) Run(ctx context.Context) error {
	a.logger.Info("starting infergate", "data_dir", a.paths.Root, "broker", a.cfg.Broker.Mode,
		"model_server", a.cfg.ModelServer.Mode, "delivery", a.cfg.Pipeline.Delivery, "config_file", a.cfg.ConfigFile())
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	go a.logReadiness(wctx, 250*time.Millisecond)
	return a.sup.run(ctx, a.comps)
}

// logReadiness logs what /readyz says when it changes: "infergate is ready"
// the first time every component is ready (not merely started: a model may
// still be loading, partitions not yet assigned), then each change, with
// the reason when it goes unready or degraded (data loss found).
func (a *Appliance) logReadiness(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	was, seen := false, false
	lost := "" // the data loss last logged as degraded
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := a.Ready()
		if err == nil {
			// /readyz answers "degraded" with this reason; say so here too.
			if w := strings.Join(a.DataWarnings(), "; "); w != lost {
				if w != "" {
					a.logger.Error("infergate is degraded: data was lost", "reason", w)
				}
				lost = w
			}
		}
		switch {
		case err == nil && !seen:
			a.logger.Info("infergate is ready")
		case err == nil && !was:
			a.logger.Info("infergate is ready again")
		case err != nil && was:
			a.logger.Warn("infergate is not ready", "reason", err.Error())
		}
		if err == nil {
			seen = true
		}
		was = err == nil
	}
}

// Ready returns nil when every component is ready, else an error (wrapping
// ErrNotReady) that names each one that is not. It backs /readyz.
func (a *Appliance) Ready() error { return a.sup.ready(a.comps) }

// Config is the configuration the appliance runs with.
func (a *Appliance) Config() Config { return a.cfg }

// AdminToken is the bootstrap admin token (the current one, after a rotation).
func (a *Appliance) AdminToken() string { return *a.token.Load() }

// rotateAdminToken writes a new admin token to the data dir and switches to it. The file is
// replaced atomically, so a crash leaves the old or the new token, never none.
func (a *Appliance) rotateAdminToken() (string, error) {
	t, err := writeNewToken(a.paths.AdminToken, true)
	if err != nil {
		return "", err
	}
	a.token.Store(&t)
	return t, nil
}

// Paths are the files and directories of the appliance's data dir.
func (a *Appliance) Paths() Paths { return a.paths }

// GeneratedToken is the admin token when New generated it (first start, or
// an empty token file), else "". `infergate run` shows it on a terminal only.
func (a *Appliance) GeneratedToken() string { return a.generatedToken }

// Registry holds the appliance's Prometheus metrics.
func (a *Appliance) Registry() *prometheus.Registry { return a.reg }

// ModelServer is the embedded model server, nil unless model_server.mode is
// embedded and it has started.
func (a *Appliance) ModelServer() *modelserver.Server {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.modelServer
}

// Store is the DLQ store, nil until it has started.
func (a *Appliance) Store() *store.Store {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.store
}

// Pipeline is the streaming pipeline, nil until it has started.
func (a *Appliance) Pipeline() *pipeline.Pipeline {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.pipeline
}

// BrokerAddr is the bootstrap address clients use: the embedded broker's
// advertised address once it runs, else the configured seed brokers.
func (a *Appliance) BrokerAddr() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return strings.Join(a.client.Brokers, ",")
}

// components lists what Run starts, in order. The order is the dependency
// order; the supervisor stops them in reverse.
func (a *Appliance) components() []*component {
	comps := []*component{
		a.storeComponent(),
		a.brokerComponent(),
		a.topicsComponent(),
		a.modelServerComponent(),
		a.pipelineComponent(),
	}
	if a.cfg.Broker.Mode == BrokerExternal {
		// The instances of a group attached to one cluster share their DLQ and states.
		comps = append(comps, a.groupComponent())
	}
	comps = append(comps, a.healthComponent())
	if a.cfg.Ingress.Enabled {
		comps = append(comps, a.ingressComponent())
	}
	if a.cfg.Demo.Enabled {
		comps = append(comps, a.demoComponent())
	}
	// Once broker and model server listen (endpoints.go).
	comps = append(comps, a.endpointsComponent())
	// Last: it reports on all the others, and stops first (web.go).
	if a.cfg.HTTP.Listen != "" {
		comps = append(comps, a.webComponent())
	}
	return comps
}

func (a *Appliance) storeComponent() *component {
	var st *store.Store
	return &component{
		name: "store",
		start: func(context.Context) error {
			sc := a.cfg.Store
			sc.Dir, sc.MinFreeBytes = a.paths.Store, a.cfg.MinFreeBytes
			var err error
			st, err = store.Open(sc, a.logger.With("component", "store"))
			if err != nil {
				if errors.Is(err, store.ErrLocked) {
					return a.dataDirInUse(err)
				}
				return err
			}
			a.mu.Lock()
			a.store = st
			a.mu.Unlock()
			return nil
		},
		run: func(ctx context.Context) error { return st.Run(ctx) },
		stop: func() error {
			if st == nil {
				return nil
			}
			return st.Close()
		},
	}
}

// dataDirInUse reports a lock held on the store or the broker's data: both
// mean another infergate runs on the same data dir.
func (a *Appliance) dataDirInUse(err error) error {
	return fmt.Errorf("data_dir (--data-dir, INFERGATE_DATA_DIR): %s is in use by another running infergate: %w", a.paths.Root, err)
}

func (a *Appliance) brokerComponent() *component {
	if a.cfg.Broker.Mode == BrokerExternal {
		return &component{
			name: "broker",
			start: func(ctx context.Context) error {
				return a.pingBrokers(ctx)
			},
		}
	}
	var e *broker.Embedded
	return &component{
		name: "broker",
		start: func(context.Context) error {
			var err error
			e, err = broker.NewEmbedded(broker.EmbeddedConfig{
				DataDir:    a.paths.Broker,
				Listen:     a.cfg.Broker.Listen,
				Advertise:  a.cfg.Broker.Advertise,
				Durability: broker.Durability(a.cfg.Broker.Durability),
				LogLevel:   a.cfg.Broker.LogLevel,

				RetentionCheckInterval: a.cfg.Broker.RetentionCheckInterval,
				MinFreeBytes:           a.cfg.MinFreeBytes,
			}, a.logger)
			if err != nil {
				if errors.Is(err, broker.ErrDataDirLocked) {
					return a.dataDirInUse(err)
				}
				return err
			}
			a.mu.Lock()
			a.embedded = e
			a.client.Brokers = []string{e.Addr()}
			a.mu.Unlock()
			return nil
		},
		run: func(ctx context.Context) error { return e.Run(ctx) },
		stop: func() error {
			if e == nil {
				return nil
			}
			return e.Close()
		},
	}
}

// pingBrokers checks that the external cluster answers, so a wrong address
// or a TLS/SASL mistake is reported at start with the setting to fix.
func (a *Appliance) pingBrokers(ctx context.Context) error {
	cl, err := a.kafkaClient()
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := kadm.NewClient(cl).ListBrokers(ctx); err != nil {
		return fmt.Errorf("broker.brokers (--brokers, INFERGATE_BROKERS): cannot reach the Kafka cluster at %s "+
			"(check the addresses and the broker.tls / broker.sasl settings): %w", strings.Join(a.cfg.Broker.Brokers, ","), err)
	}
	return nil
}

// kafkaClient is a client of the appliance's broker with extra options.
func (a *Appliance) kafkaClient(extra ...kgo.Opt) (*kgo.Client, error) {
	a.mu.Lock()
	cc := a.client
	a.mu.Unlock()
	opts, err := cc.Opts()
	if err != nil {
		return nil, err
	}
	return kgo.NewClient(append(opts, extra...)...)
}

func (a *Appliance) topicsComponent() *component {
	return &component{
		name: "topics",
		start: func(ctx context.Context) error {
			cl, err := a.kafkaClient()
			if err != nil {
				return err
			}
			defer cl.Close()
			ctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			err = broker.EnsureTopics(ctx, kadm.NewClient(cl), a.topicSpecs()...)
			if errors.Is(err, broker.ErrFewerPartitions) {
				// The pipeline works with fewer partitions; only the
				// parallelism differs from what was asked.
				a.logger.Warn("topic partitions", "err", err, "setting", "topics.partitions")
				return nil
			}
			if err != nil {
				return fmt.Errorf("creating topics %s, %s, %s: %w", a.cfg.Pipeline.RequestsTopic, a.cfg.Pipeline.ResultsTopic, a.cfg.Pipeline.DLQTopic, err)
			}
			return nil
		},
	}
}

// topicSpecs are broker.DefaultTopics with the configured retention. A
// changed size budget is split over the partitions by broker's rule
// (per partition at least 1 MiB, segments an eighth of that, 1 to 64 MiB);
// the settings' 0 ("unbounded") is Kafka's -1.
func (a *Appliance) topicSpecs() []broker.TopicSpec {
	t, pl := a.cfg.Topics, a.cfg.Pipeline
	d := Default().Topics
	specs := broker.DefaultTopics(pl.RequestsTopic, pl.ResultsTopic, pl.DLQTopic, int32(t.Partitions))
	for i := range specs {
		retention, budget, defBudget := t.Retention, t.RequestsBytes, d.RequestsBytes
		switch specs[i].Name {
		case pl.ResultsTopic:
			budget, defBudget = t.ResultsBytes, d.ResultsBytes
		case pl.DLQTopic:
			retention, budget, defBudget = t.DLQRetention, t.DLQBytes, d.DLQBytes
		}
		if t.ReplicationFactor > 0 {
			specs[i].ReplicationFactor = int16(t.ReplicationFactor)
		}
		specs[i].RetentionMs = retention.Milliseconds()
		if retention == 0 {
			specs[i].RetentionMs = -1
		}
		switch {
		case budget == 0:
			specs[i].RetentionBytes = -1
		case budget != defBudget:
			perPart := max(budget/int64(t.Partitions), 1<<20)
			seg := strconv.FormatInt(min(max(perPart/8, 1<<20), 64<<20), 10)
			specs[i].RetentionBytes = perPart
			specs[i].Configs["segment.bytes"] = &seg
		}
	}
	if a.cfg.Broker.Mode == BrokerExternal {
		specs = append(specs, a.controlTopicSpec())
	}
	return specs
}

// controlTopicSpec is the topic on which attached instances announce their states and
// their DLQ changes (inference/group). One partition keeps the changes in one order; it
// keeps them as long as the DLQ topic keeps dead letters, so an instance that reads the
// DLQ topic from its start also learns of every delete among them.
func (a *Appliance) controlTopicSpec() broker.TopicSpec {
	t := a.cfg.Topics
	seg, segMs := strconv.Itoa(8<<20), strconv.FormatInt(broker.DefaultSegmentRoll.Milliseconds(), 10)
	spec := broker.TopicSpec{
		Name: t.Control, Partitions: 1, RetentionMs: t.DLQRetention.Milliseconds(), RetentionBytes: -1,
		Configs: map[string]*string{"segment.bytes": &seg, "segment.ms": &segMs},
	}
	if t.DLQRetention == 0 {
		spec.RetentionMs = -1
	}
	if t.ReplicationFactor > 0 {
		spec.ReplicationFactor = int16(t.ReplicationFactor)
	}
	return spec
}

// checkListeners binds and releases every address the appliance will listen
// on, so "address in use" names the setting and flag, for all of them, before
// anything starts (another process could still take a port in between; the
// components report that case too).
func (c *Config) checkListeners() error {
	type l struct{ key, flag, env, addr string }
	var ls []l
	if c.Broker.Mode == BrokerEmbedded {
		ls = append(ls, l{"broker.listen", "--broker-listen", "INFERGATE_BROKER_LISTEN", c.Broker.Listen})
	}
	if c.ModelServer.Mode != ModelServerExternal {
		ls = append(ls, l{"model_server.grpc_listen", "--grpc-listen", "INFERGATE_MODEL_SERVER_GRPC_LISTEN", c.ModelServer.GRPCListen})
		if c.ModelServer.RESTListen != "" {
			ls = append(ls, l{"model_server.rest_listen", "--rest-listen", "INFERGATE_MODEL_SERVER_REST_LISTEN", c.ModelServer.RESTListen})
		}
	}
	if c.HTTP.Listen != "" {
		ls = append(ls, l{"http.listen", "--http-listen", "INFERGATE_HTTP_LISTEN", c.HTTP.Listen})
	}
	if c.Ingress.Enabled && c.Ingress.MQTTListen != "" {
		ls = append(ls, l{"ingress.mqtt_listen", "--mqtt-listen", "INFERGATE_INGRESS_MQTT_LISTEN", c.Ingress.MQTTListen})
	}
	if c.Ingress.Enabled && c.Ingress.NATSListen != "" {
		ls = append(ls, l{"ingress.nats_listen", "--nats-listen", "INFERGATE_INGRESS_NATS_LISTEN", c.Ingress.NATSListen})
	}
	var errs []error
	for _, x := range ls {
		ln, err := net.Listen("tcp", x.addr)
		if err != nil {
			errs = append(errs, listenError(x.key, x.flag, x.env, x.addr, err))
			continue
		}
		ln.Close()
	}
	return errors.Join(errs...)
}

func listenError(key, flag, env, addr string, err error) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%s (%s, %s): %s is already in use by another process (another infergate?): "+
			"stop it or choose another address with %s: %w", key, flag, env, addr, flag, err)
	}
	if errors.Is(err, syscall.EADDRNOTAVAIL) {
		return fmt.Errorf("%s (%s, %s): %s is not an address of this machine: %w", key, flag, env, addr, err)
	}
	return fmt.Errorf("%s (%s, %s): cannot listen on %s: %w", key, flag, env, addr, err)
}

// observers hands each observed batch to several observers, in order.
type observers []pipeline.Observer

func (os observers) Observe(o *pipeline.Observation) {
	for _, x := range os {
		x.Observe(o)
	}
}

// clientLevel drops Kafka client records below warnings, unless the
// appliance logs at debug.
type clientLevel struct {
	slog.Handler
	level *slog.LevelVar
}

func (h clientLevel) Enabled(ctx context.Context, l slog.Level) bool {
	least := slog.LevelWarn
	if h.level.Level() <= slog.LevelDebug {
		least = slog.LevelDebug
	}
	return l >= least && h.Handler.Enabled(ctx, l)
}
func (h clientLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return clientLevel{h.Handler.WithAttrs(as), h.level}
}
func (h clientLevel) WithGroup(g string) slog.Handler {
	return clientLevel{h.Handler.WithGroup(g), h.level}
}

// levelHandler drops records below a level that can change while the
// process runs (log.level from the dashboard).
type levelHandler struct {
	slog.Handler
	level *slog.LevelVar
}

func (h levelHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.level.Level() && h.Handler.Enabled(ctx, l)
}
func (h levelHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return levelHandler{h.Handler.WithAttrs(as), h.level}
}
func (h levelHandler) WithGroup(g string) slog.Handler {
	return levelHandler{h.Handler.WithGroup(g), h.level}
}

// levelOf is the level of a NewLogger handler (also after With), else nil.
func levelOf(h slog.Handler) *slog.LevelVar {
	if lh, ok := h.(levelHandler); ok {
		return lh.level
	}
	return nil
}

// parseLevel reads log.level (validated: debug, info, warn, error).
func parseLevel(s string) slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return slog.LevelInfo
	}
	return l
}

// NewLogger returns the process logger of a LogConfig, writing to w. Its
// level is the one an appliance made with it changes when log.level is set
// from the dashboard.
func NewLogger(cfg LogConfig, w io.Writer) *slog.Logger {
	level := new(slog.LevelVar)
	level.Set(parseLevel(cfg.Level))
	opts := &slog.HandlerOptions{Level: slog.LevelDebug} // levelHandler decides
	var h slog.Handler
	if cfg.Format == "json" {
		// slog's JSON handler writes a time.Duration as integer
		// nanoseconds; the text handler writes "1.5s". Both write Go
		// duration strings here, so one reader parses either format.
		opts.ReplaceAttr = durationsAsStrings
		h = slog.NewJSONHandler(w, opts)
	} else {
		h = slog.NewTextHandler(w, opts)
	}
	return slog.New(levelHandler{h, level})
}

func (a *Appliance) pipelineComponent() *component {
	var p *pipeline.Pipeline
	return &component{
		name: "pipeline",
		start: func(ctx context.Context) error {
			a.mu.Lock()
			cc, be, st := a.client, a.backend, a.store
			a.mu.Unlock()
			var pred pipeline.Predictor
			if be != nil {
				pred = be.predictor()
			}
			opts, err := cc.Opts()
			if err != nil {
				return err
			}
			if err := a.checkInstanceID(ctx); err != nil {
				return err
			}
			opts = append(opts, kgo.ClientID(a.cfg.ClientID()))
			p, err = pipeline.New(a.cfg.pipelineConfig(), a.logger.With("component", "pipeline"), opts, pred, st, a.reg)
			if err != nil {
				return err
			}
			ro, err := rollout.New(a.cfg.Rollout, a.logger.With("component", "rollout"), st, pred, a.availableVersions, a.auditCtx, a.reg)
			if err != nil {
				return err
			}
			fd, err := feed.New(st)
			if err != nil {
				return err
			}
			pc := a.cfg.Pipeline
			ro.SetRequests(rollout.Requests{Topic: pc.RequestsTopic, DefaultModel: pc.DefaultModel,
				DefaultInput: pc.DefaultInput, NewClient: a.kafkaClient})
			p.SetRouter(ro)
			p.SetObserver(observers{ro, fd})
			if be != nil {
				ro.SetHolder(func(h rollout.Holds) {
					be.hold(h)
					if why := be.notHeld(); why != "" && len(h) > 0 {
						a.logger.Warn("versions pinned or in a rollout may be unloaded by the model server's version policy",
							"held", fmt.Sprint(h), "why", why)
					}
				})
			}
			a.mu.Lock()
			a.pipeline = p
			a.rollouts = ro
			a.feed = fd
			a.mu.Unlock()
			return nil
		},
		run: func(ctx context.Context) error {
			// The rollout controller lives and ends with the pipeline it
			// routes for; its shadow only reads what the pipeline observed.
			a.mu.Lock()
			ro := a.rollouts
			a.mu.Unlock()
			rctx, cancel := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() { defer close(done); ro.Run(rctx) }()
			err := p.Run(ctx)
			cancel()
			<-done
			return err
		},
		ready: func() error {
			reason := p.NotReadyReason()
			if reason == "" {
				return nil
			}
			if st := p.Status(); st.LastError != "" && !strings.Contains(reason, st.LastError) {
				return fmt.Errorf("%s (last error: %s)", reason, st.LastError)
			}
			return errors.New(reason)
		},
	}
}

// durationsAsStrings is a slog ReplaceAttr writing durations as Go duration
// strings ("250ms", "1m30s").
func durationsAsStrings(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}
