package ingress

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Ingress is the embedded nats-server with the mover (devices -> Kafka
// requests topic) and the returner (results and DLQ topics -> devices).
type Ingress struct {
	cfg      Config
	logger   *slog.Logger
	kopts    []kgo.Opt
	metrics  *metrics
	auth     *authenticator
	opts     *server.Options
	srv      *server.Server
	nc       *nats.Conn
	js       jetstream.JetStream
	producer *kgo.Client
	started  time.Time

	rejects   rejectLog
	mu        sync.Mutex
	mqttAddr  string
	natsAddr  string
	consumers []jetstream.ConsumeContext
	coreSub   *nats.Subscription
}

// New validates cfg and prepares the server options; nothing listens until
// Start. kopts are the Kafka client options of the appliance's broker.
func New(cfg Config, logger *slog.Logger, kopts []kgo.Opt, reg prometheus.Registerer) (*Ingress, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	token, err := randomToken()
	if err != nil {
		return nil, err
	}
	in := &Ingress{cfg: cfg, logger: logger, kopts: kopts, auth: newAuthenticator(cfg.Auth, token)}
	in.auth.onRefused = func(client, remote string) {
		in.reject(Reject{Reason: RejectCredentials, Client: client, Detail: "bad or missing credentials, from " + remote})
	}
	var clients func() float64
	if !cfg.external() {
		clients = func() float64 {
			if in.srv == nil {
				return 0
			}
			// The ingress's own in-process connection is not a device.
			return float64(max(in.srv.NumClients()-1, 0))
		}
	}
	in.metrics, err = newMetrics(reg, clients)
	if err != nil {
		return nil, err
	}
	if cfg.external() {
		return in, nil
	}
	o := &server.Options{
		ServerName:                 cfg.ServerName,
		NoSigs:                     true,
		JetStream:                  true,
		StoreDir:                   cfg.StoreDir,
		JetStreamMaxStore:          cfg.MaxStore,
		SyncAlways:                 cfg.SyncAlways,
		CustomClientAuthentication: in.auth,
		DisableJetStreamBanner:     true,
	}
	if cfg.TLSCert != "" {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: cfg.TLSCert, KeyFile: cfg.TLSKey})
		if err != nil {
			return nil, fmt.Errorf("ingress TLS certificate %s / key %s: %w", cfg.TLSCert, cfg.TLSKey, err)
		}
		o.TLSConfig, o.TLS, o.TLSTimeout = tc, true, 5
		o.MQTT.TLSConfig, o.MQTT.TLSTimeout = tc.Clone(), 5
	}
	if cfg.NATSListen == "" {
		o.DontListen = true
	} else {
		o.Host, o.Port, _ = splitListen(cfg.NATSListen)
	}
	if cfg.MQTTListen != "" {
		o.MQTT.Host, o.MQTT.Port, _ = splitListen(cfg.MQTTListen)
	}
	in.opts = o
	return in, nil
}

func randomToken() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("ingress: generating the internal token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// Start starts nats-server, creates the inbox consumer and opens the
// listeners to devices. Devices are refused until the consumer exists.
func (in *Ingress) Start(ctx context.Context) error {
	if in.cfg.external() {
		nc, err := in.connectExternal()
		if err != nil {
			return err
		}
		return in.startMoving(ctx, nc)
	}
	srv, err := server.NewServer(in.opts)
	if err != nil {
		return fmt.Errorf("ingress: nats-server options: %w", err)
	}
	srv.SetLoggerV2(&natsLogger{l: in.logger.With("component", "nats-server"), onError: func(line string) {
		if r, ok := permissionViolation(line); ok {
			in.reject(r)
		}
	}}, false, false, false)
	in.srv = srv
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		return fmt.Errorf("ingress: nats-server did not start listening within 30s (see its log above; MQTT %s, NATS %s)",
			in.cfg.MQTTListen, in.cfg.NATSListen)
	}
	in.mu.Lock()
	if a := srv.Addr(); a != nil && !in.opts.DontListen {
		in.natsAddr = a.String()
	}
	if in.cfg.MQTTListen != "" {
		in.mqttAddr = net.JoinHostPort(in.opts.MQTT.Host, strconv.Itoa(in.opts.MQTT.Port))
	}
	in.mu.Unlock()

	nc, err := nats.Connect("", nats.InProcessServer(srv), nats.Token(in.auth.internal), nats.Name(internalClientName),
		nats.MaxReconnects(-1))
	if err != nil {
		return fmt.Errorf("ingress: connecting to the embedded nats-server: %w", err)
	}
	return in.startMoving(ctx, nc)
}

// connectExternal connects to the external NATS server (Config.External).
// It keeps reconnecting for as long as the ingress runs: the durable inbox
// consumer lives on the server, so nothing acknowledged is lost while the
// connection is down.
func (in *Ingress) connectExternal() (*nats.Conn, error) {
	e := in.cfg.External
	opts := []nats.Option{nats.Name(internalClientName), nats.MaxReconnects(-1), nats.ReconnectWait(time.Second),
		nats.Timeout(10 * time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				in.logger.Warn("ingress: disconnected from the NATS server; reconnecting", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			in.logger.Info("ingress: reconnected to the NATS server", "url", nc.ConnectedUrlRedacted())
		})}
	if e.User != "" || e.Password != "" {
		opts = append(opts, nats.UserInfo(e.User, e.Password))
	}
	if e.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(e.CredsFile))
	}
	if e.CAFile != "" {
		opts = append(opts, nats.RootCAs(e.CAFile))
	}
	if e.CertFile != "" {
		opts = append(opts, nats.ClientCert(e.CertFile, e.KeyFile))
	}
	nc, err := nats.Connect(strings.Join(e.URLs, ","), opts...)
	if err != nil {
		return nil, fmt.Errorf("ingress: connecting to the external NATS server %s: %w", strings.Join(e.URLs, ","), err)
	}
	in.logger.Info("ingress: attached to an external NATS server", "url", nc.ConnectedUrlRedacted(),
		"server", nc.ConnectedServerName(), "version", nc.ConnectedServerVersion())
	return nc, nil
}

// startMoving sets up JetStream on nc, the inbox and the Kafka producer.
func (in *Ingress) startMoving(ctx context.Context, nc *nats.Conn) error {
	var err error
	in.nc = nc
	in.js, err = jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(8192))
	if err != nil {
		return err
	}
	if err := in.ensureInbox(ctx); err != nil {
		return err
	}
	in.producer, err = kgo.NewClient(append(append([]kgo.Opt(nil), in.kopts...),
		kgo.DefaultProduceTopic(in.cfg.RequestsTopic),
		kgo.ProducerLinger(time.Millisecond),
		kgo.MaxBufferedRecords(max(2*in.cfg.MaxAckPending, 1024)),
	)...)
	if err != nil {
		return fmt.Errorf("ingress: Kafka producer: %w", err)
	}
	in.started = time.Now()
	return nil
}

// ensureInbox creates the stream nats-server's MQTT layer uses (it adopts
// an existing one with this configuration) and the ingress's durable
// consumer on the request subjects, before any device can publish.
func (in *Ingress) ensureInbox(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err := in.js.CreateStream(ctx, jetstream.StreamConfig{
		Name:      InboxStream,
		Subjects:  []string{InboxPrefix + ">"},
		Storage:   jetstream.FileStorage,
		Retention: jetstream.InterestPolicy,
		Replicas:  1,
	})
	if err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return fmt.Errorf("ingress: creating the inbox stream %s: %w", InboxStream, err)
	}
	_, err = in.js.CreateOrUpdateConsumer(ctx, InboxStream, jetstream.ConsumerConfig{
		Durable:       inboxConsumer,
		Description:   "infergate: MQTT QoS 1/2 and JetStream requests to the Kafka requests topic",
		FilterSubject: InboxPrefix + RequestsPrefix + ">",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       in.cfg.AckWait,
		MaxAckPending: in.cfg.MaxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("ingress: creating the inbox consumer: %w", err)
	}
	return nil
}

// Ready reports whether devices are let in (Run has started moving).
func (in *Ingress) Ready() bool { return in.auth.open.Load() }

// MQTTAddr and NATSAddr are the bound listener addresses ("" if disabled).
func (in *Ingress) MQTTAddr() string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.mqttAddr
}

func (in *Ingress) NATSAddr() string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.natsAddr
}

// Run moves requests in and results out until ctx ends, then stops taking
// requests, waits for Kafka to acknowledge what it holds (so those are
// acknowledged in JetStream and not redelivered) and returns.
func (in *Ingress) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := in.startMover(); err != nil {
		return err
	}
	in.auth.open.Store(true)
	in.logger.Info("ingress open to devices", "mqtt", in.MQTTAddr(), "nats", in.NATSAddr(),
		"anonymous", in.auth.anonymous)

	errc := make(chan error, 1)
	go func() { errc <- in.runReturner(ctx) }()
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		cancel()
	}
	in.auth.open.Store(false)
	in.stopMover()
	if err == nil {
		err = <-errc
	}
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// Close shuts the server down; safe to call more than once and after a
// failed Start.
func (in *Ingress) Close() error {
	if in.producer != nil {
		in.producer.Close()
	}
	if in.nc != nil {
		in.nc.Close()
	}
	if in.srv != nil {
		in.srv.Shutdown()
		in.srv.WaitForShutdown()
	}
	return nil
}

// internalClientName names the ingress's own connection, and inboxConsumer
// its durable consumer on the inbox.
const (
	internalClientName = "infergate-ingress"
	inboxConsumer      = "infergate-ingress"
)

// natsLogger routes nats-server's log to slog; onError also sees every
// error line (permission violations are reported only there).
type natsLogger struct {
	l       *slog.Logger
	onError func(line string)
}

// Notices (the start banner, listeners) go to debug: the ingress logs its
// own line with the addresses.
func (n *natsLogger) Noticef(format string, v ...any) { n.l.Debug(fmt.Sprintf(format, v...)) }
func (n *natsLogger) Warnf(format string, v ...any)   { n.l.Warn(fmt.Sprintf(format, v...)) }
func (n *natsLogger) Fatalf(format string, v ...any)  { n.l.Error(fmt.Sprintf(format, v...)) }
func (n *natsLogger) Errorf(format string, v ...any) {
	line := fmt.Sprintf(format, v...)
	if n.onError != nil {
		n.onError(line)
	}
	n.l.Error(line)
}
func (n *natsLogger) Debugf(format string, v ...any) { n.l.Debug(fmt.Sprintf(format, v...)) }
func (n *natsLogger) Tracef(format string, v ...any) { n.l.Debug(fmt.Sprintf(format, v...)) }
