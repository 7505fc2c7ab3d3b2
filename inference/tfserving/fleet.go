package tfserving

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/tensor"
)

// Balancing policies of a Fleet.
const (
	// LeastOutstanding sends each call to the healthy endpoint with the
	// fewest calls in flight (ties in turn): a slow or overloaded replica
	// gets less work without any tuning.
	LeastOutstanding = "least-outstanding"
	RoundRobin       = "round-robin"
)

// Defaults of FleetConfig, filled in by DefaultFleetConfig only.
const (
	DefaultHealthInterval = 5 * time.Second
	DefaultHealthTimeout  = 2 * time.Second
)

// FleetConfig configures a Fleet. Start from DefaultFleetConfig: NewFleet
// and Validate fill in nothing.
type FleetConfig struct {
	// Endpoints are the TF Serving gRPC addresses (host:port), at least one.
	Endpoints []string
	// TLS, if set, is used for every endpoint; nil means plaintext.
	TLS *tls.Config
	// Timeout bounds each attempt of a call whose context has no deadline.
	Timeout        time.Duration
	MaxRecvMsgSize int
	// HealthInterval is how often every endpoint is checked.
	HealthInterval time.Duration
	// HealthTimeout bounds one check.
	HealthTimeout time.Duration
	// HealthModel, if set, makes the check GetModelStatus of this model,
	// healthy when a version is AVAILABLE. Otherwise the check is the gRPC
	// health service (tensorflow_model_server serves it with
	// --enable_grpc_healthcheck_service); a server without it, answering
	// UNIMPLEMENTED, counts as healthy since it answered.
	HealthModel string
	// Balance is LeastOutstanding (default) or RoundRobin.
	Balance string
	// DialOptions are appended to every endpoint's.
	DialOptions []grpc.DialOption
}

// DefaultFleetConfig returns the defaults for a fleet of endpoints.
func DefaultFleetConfig(endpoints []string) FleetConfig {
	return FleetConfig{
		Endpoints:      endpoints,
		Timeout:        DefaultTimeout,
		MaxRecvMsgSize: DefaultMaxRecvMsgSize,
		HealthInterval: DefaultHealthInterval,
		HealthTimeout:  DefaultHealthTimeout,
		Balance:        LeastOutstanding,
	}
}

// Validate reports the first invalid setting, named as in FleetConfig.
func (c FleetConfig) Validate() error {
	if len(c.Endpoints) == 0 {
		return errors.New("tfserving: fleet: Endpoints is empty")
	}
	seen := map[string]bool{}
	for i, ep := range c.Endpoints {
		ep = strings.TrimSpace(ep)
		if ep == "" {
			return fmt.Errorf("tfserving: fleet: Endpoints[%d] is empty", i)
		}
		if seen[ep] {
			return fmt.Errorf("tfserving: fleet: Endpoints[%d] %s appears twice", i, ep)
		}
		seen[ep] = true
	}
	switch {
	case c.HealthInterval <= 0 || c.HealthTimeout <= 0:
		return errors.New("tfserving: fleet: HealthInterval and HealthTimeout must be positive")
	case c.Balance != LeastOutstanding && c.Balance != RoundRobin:
		return fmt.Errorf("tfserving: fleet: Balance %q is neither %s nor %s", c.Balance, LeastOutstanding, RoundRobin)
	}
	return Config{Address: "x", Timeout: c.Timeout, MaxRecvMsgSize: c.MaxRecvMsgSize}.Validate()
}

// EndpointStatus describes one endpoint of a Fleet, JSON-ready for the
// admin API.
type EndpointStatus struct {
	Address     string    `json:"address"`
	Healthy     bool      `json:"healthy"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	CheckedAt   time.Time `json:"checked_at,omitzero"`
	InFlight    int64     `json:"in_flight"`
	Requests    uint64    `json:"requests"`
	Failures    uint64    `json:"failures"`
}

type endpoint struct {
	client   *Client
	healthy  atomic.Bool
	inflight atomic.Int64
	requests atomic.Uint64
	failures atomic.Uint64

	mu          sync.Mutex
	lastErr     string
	lastErrAt   time.Time
	checkedAt   time.Time
	unhealthyAt time.Time
}

// Fleet spreads calls over several TF Serving endpoints. An endpoint that
// answers UNAVAILABLE (or cannot be reached) is marked unhealthy and the
// call is retried on another one, so one replica going down shifts its load
// to the others without failing requests; errors about the request itself
// (INVALID_ARGUMENT, NOT_FOUND, ...) come straight back, since another
// replica would answer the same. Health checks bring endpoints back.
//
// Fleet has the same Predict and Metadata methods as Client, so it is a
// pipeline Predictor. It is safe for concurrent use.
type Fleet struct {
	cfg  FleetConfig
	log  *slog.Logger
	eps  []*endpoint
	next atomic.Uint64

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// NewFleet dials every endpoint (without waiting for connections, like
// Dial) and starts health checking; Close stops it.
func NewFleet(cfg FleetConfig, logger *slog.Logger) (*Fleet, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	f := &Fleet{cfg: cfg, log: logger, stop: make(chan struct{}), done: make(chan struct{})}
	for _, addr := range cfg.Endpoints {
		c, err := Dial(Config{
			Address:        strings.TrimSpace(addr),
			Timeout:        cfg.Timeout,
			MaxRecvMsgSize: cfg.MaxRecvMsgSize,
			TLS:            cfg.TLS,
			DialOptions: append([]grpc.DialOption{
				// Reconnect within seconds, not gRPC's default of up to two
				// minutes, so a replica that comes back is used again soon.
				grpc.WithConnectParams(grpc.ConnectParams{
					Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
					MinConnectTimeout: 5 * time.Second,
				}),
			}, cfg.DialOptions...),
		})
		if err != nil {
			for _, ep := range f.eps {
				ep.client.Close()
			}
			return nil, fmt.Errorf("tfserving: fleet: %w", err)
		}
		ep := &endpoint{client: c}
		// Optimistic until the first check: calls work at once and the
		// retry covers an endpoint that is in fact down.
		ep.healthy.Store(true)
		f.eps = append(f.eps, ep)
	}
	go f.healthLoop()
	return f, nil
}

// Close stops health checking and closes every connection; calls in flight
// fail with CANCELLED. It is idempotent.
func (f *Fleet) Close() error {
	var errs []error
	f.once.Do(func() {
		close(f.stop)
		<-f.done
		for _, ep := range f.eps {
			errs = append(errs, ep.client.Close())
		}
	})
	return errors.Join(errs...)
}

// Endpoints describes every endpoint, in configuration order.
func (f *Fleet) Endpoints() []EndpointStatus {
	out := make([]EndpointStatus, len(f.eps))
	for i, ep := range f.eps {
		ep.mu.Lock()
		out[i] = EndpointStatus{
			Address:     ep.client.Address(),
			Healthy:     ep.healthy.Load(),
			LastError:   ep.lastErr,
			LastErrorAt: ep.lastErrAt,
			CheckedAt:   ep.checkedAt,
			InFlight:    ep.inflight.Load(),
			Requests:    ep.requests.Load(),
			Failures:    ep.failures.Load(),
		}
		ep.mu.Unlock()
	}
	return out
}

// Healthy reports whether at least one endpoint passed its last check.
func (f *Fleet) Healthy() bool {
	for _, ep := range f.eps {
		if ep.healthy.Load() {
			return true
		}
	}
	return false
}

// Predict sends the call to one endpoint, retrying on others as described
// on Fleet.
func (f *Fleet) Predict(ctx context.Context, spec model.Spec, inputs map[string]*tensor.Tensor) (*model.Result, error) {
	var res *model.Result
	err := f.call(ctx, func(c *Client) error {
		var err error
		res, err = c.Predict(ctx, spec, inputs)
		return err
	})
	return res, err
}

// Metadata asks one endpoint, retrying on others as described on Fleet.
func (f *Fleet) Metadata(ctx context.Context, spec model.Spec) (*model.Metadata, error) {
	var md *model.Metadata
	err := f.call(ctx, func(c *Client) error {
		var err error
		md, err = c.Metadata(ctx, spec)
		return err
	})
	return md, err
}

// Status asks one endpoint for a model's versions.
func (f *Fleet) Status(ctx context.Context, name string, version int64) ([]VersionStatus, error) {
	var vs []VersionStatus
	err := f.call(ctx, func(c *Client) error {
		var err error
		vs, err = c.Status(ctx, name, version)
		return err
	})
	return vs, err
}

// EndpointVersions is one endpoint's answer to GetModelStatus.
type EndpointVersions struct {
	Address  string
	Versions []VersionStatus // highest first
	Err      error           // it did not answer, or does not serve the model (NOT_FOUND)
}

// StatusEach asks every endpoint at once for a model's versions, in
// configuration order. Status asks one endpoint; a call may reach any, so
// what must be served everywhere (both versions of a rollout) is checked
// with this.
func (f *Fleet) StatusEach(ctx context.Context, name string) []EndpointVersions {
	out := make([]EndpointVersions, len(f.eps))
	var wg sync.WaitGroup
	for i, ep := range f.eps {
		out[i].Address = ep.client.Address()
		wg.Go(func() { out[i].Versions, out[i].Err = ep.client.Status(ctx, name, 0) })
	}
	wg.Wait()
	return out
}

// retryElsewhere reports errors another endpoint may not have: this one is
// down or unreachable (UNAVAILABLE, which gRPC also uses for refused and
// reset connections), or its queue is full (RESOURCE_EXHAUSTED, which TF
// Serving's batching answers). DEADLINE_EXCEEDED is not retried: the
// caller's time is spent, and the request may be running still.
func retryElsewhere(err error) (retry, markDown bool) {
	switch status.Code(err) {
	case codes.Unavailable:
		return true, true
	case codes.ResourceExhausted:
		return true, false
	}
	return false, false
}

// call runs fn on endpoints in the order pick gives until one answers with
// something other than a retry-elsewhere error, or every endpoint has been
// tried (then the last error is returned, still UNAVAILABLE so the
// pipeline waits rather than dead-letters).
func (f *Fleet) call(ctx context.Context, fn func(*Client) error) error {
	tried := make([]bool, len(f.eps))
	var lastErr error
	for range f.eps {
		i := f.pick(tried)
		tried[i] = true
		ep := f.eps[i]
		ep.inflight.Add(1)
		ep.requests.Add(1)
		err := fn(ep.client)
		ep.inflight.Add(-1)
		if err == nil {
			if !ep.healthy.Load() {
				// It answered: whatever the last check said is stale.
				f.setHealth(ep, true, "")
			}
			return nil
		}
		retry, down := retryElsewhere(err)
		if !retry {
			return err
		}
		ep.failures.Add(1)
		if down {
			f.setHealth(ep, false, status.Convert(err).Message())
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return lastErr
}

// pick chooses among endpoints not tried yet: healthy ones first, by the
// balancing policy; unhealthy ones last (a check may be stale, and trying
// costs one refused connection).
func (f *Fleet) pick(tried []bool) int {
	n := len(f.eps)
	start := int(f.next.Add(1) % uint64(n))
	best, bestLoad := -1, int64(0)
	for _, wantHealthy := range []bool{true, false} {
		for k := range n {
			i := (start + k) % n
			ep := f.eps[i]
			if tried[i] || ep.healthy.Load() != wantHealthy {
				continue
			}
			if f.cfg.Balance == RoundRobin {
				return i
			}
			if load := ep.inflight.Load(); best < 0 || load < bestLoad {
				best, bestLoad = i, load
			}
		}
		if best >= 0 {
			return best
		}
	}
	// Unreachable: call tries each endpoint once.
	for i := range tried {
		if !tried[i] {
			return i
		}
	}
	return 0
}

func (f *Fleet) setHealth(ep *endpoint, healthy bool, detail string) {
	ep.mu.Lock()
	was := ep.healthy.Swap(healthy)
	now := time.Now()
	if !healthy {
		ep.lastErr, ep.lastErrAt = detail, now
		if was {
			ep.unhealthyAt = now
		}
	}
	down := ep.unhealthyAt
	ep.mu.Unlock()
	switch {
	case was && !healthy:
		f.log.Warn("TF Serving endpoint unhealthy; sending its calls to the others", "endpoint", ep.client.Address(), "err", detail)
	case !was && healthy:
		f.log.Info("TF Serving endpoint healthy again", "endpoint", ep.client.Address(), "down_for", now.Sub(down).Round(time.Millisecond))
	}
}

func (f *Fleet) healthLoop() {
	defer close(f.done)
	t := time.NewTicker(f.cfg.HealthInterval)
	defer t.Stop()
	for {
		f.checkAll()
		select {
		case <-f.stop:
			return
		case <-t.C:
		}
	}
}

func (f *Fleet) checkAll() {
	ctx, cancel := context.WithTimeout(context.Background(), f.cfg.HealthTimeout)
	defer cancel()
	go func() {
		select {
		case <-f.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	var wg sync.WaitGroup
	for _, ep := range f.eps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := f.check(ctx, ep.client)
			ep.mu.Lock()
			ep.checkedAt = time.Now()
			ep.mu.Unlock()
			if err != nil {
				f.setHealth(ep, false, err.Error())
			} else {
				f.setHealth(ep, true, "")
			}
		}()
	}
	wg.Wait()
}

// check is one health check of an endpoint.
func (f *Fleet) check(ctx context.Context, c *Client) error {
	if f.cfg.HealthModel != "" {
		vs, err := c.Status(ctx, f.cfg.HealthModel, 0)
		if err != nil {
			return err
		}
		for _, v := range vs {
			if v.Available() {
				return nil
			}
		}
		return fmt.Errorf("model %s has no AVAILABLE version", f.cfg.HealthModel)
	}
	resp, err := healthpb.NewHealthClient(c.conn).Check(ctx, &healthpb.HealthCheckRequest{})
	switch {
	case status.Code(err) == codes.Unimplemented:
		return nil
	case err != nil:
		return fmt.Errorf("health check: %w", err)
	case resp.GetStatus() != healthpb.HealthCheckResponse_SERVING:
		return fmt.Errorf("health check: %s", resp.GetStatus())
	}
	return nil
}
