package appliance

// Wiring of the dashboard, admin API and /metrics (package web): the
// appliance's implementation of web.Backend over the broker, the pipeline,
// the model server (embedded, sidecar or external) and the store.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/infergate/infergate/broker"
	"github.com/infergate/infergate/buildinfo"
	"github.com/infergate/infergate/inference/pipeline"
	"github.com/infergate/infergate/store"
	"github.com/infergate/infergate/web"
)

// webComponent serves the dashboard and admin API. It starts last, when
// everything it reports on runs, and stops first: /readyz turns 503 and the
// API stops taking work before the pipeline drains.
func (a *Appliance) webComponent() *component {
	var (
		srv *web.Server
		be  *webBackend
	)
	return &component{
		name: "web",
		start: func(context.Context) error {
			cl, err := a.kafkaClient()
			if err != nil {
				return fmt.Errorf("web: %w", err)
			}
			be = &webBackend{a: a, cl: cl, adm: kadm.NewClient(cl), started: time.Now()}
			wc := a.cfg.HTTP
			wc.AdminToken = a.AdminToken()
			if a.cfg.HTTP.AdminToken == "" { // from the data dir's file, so it can be rotated there
				wc.RotateAdminToken = a.rotateAdminToken
			}
			wc.Version = buildinfo.Get().Version
			wc.Logs = a.logs
			if mb := a.modelBackend(); mb != nil && mb.uploadDir() != "" {
				wc.UploadDir = mb.uploadDir()
				wc.UploadMinFree = a.cfg.MinFreeBytes
			}
			a.mu.Lock()
			st := a.store
			wc.Predictions = a.feed
			a.mu.Unlock()
			// The same registry as the pipeline's: /metrics serves its series,
			// except its consumer lag (see brokerLag).
			srv, err = web.New(wc, a.logger, be, st, brokerLag{a.reg})
			if err != nil {
				if errors.Is(err, syscall.EADDRINUSE) {
					return listenError("http.listen", "--http-listen", "INFERGATE_HTTP_LISTEN", a.cfg.HTTP.Listen, err)
				}
				return err
			}
			a.mu.Lock()
			a.web = srv
			a.mu.Unlock()
			// The CLI finds the API of the appliance owning a data dir here
			// (the listen address may come from flags it does not see).
			if err := os.WriteFile(filepath.Join(a.paths.Root, AdminURLFile), []byte(dialableURL(srv)+"\n"), 0o644); err != nil {
				a.logger.Warn("writing the admin API address into the data dir", "err", err)
			}
			return nil
		},
		run: func(ctx context.Context) error {
			// Run marks the server stopping (/readyz 503) as soon as ctx ends,
			// then lets requests in flight finish.
			return srv.Run(ctx)
		},
		stop: func() error {
			if srv != nil {
				srv.SetStopping()
				_ = srv.Close()
				_ = os.Remove(filepath.Join(a.paths.Root, AdminURLFile))
			}
			if be != nil {
				be.cl.Close()
			}
			return nil
		},
	}
}

// brokerLag hides the pipeline's infergate_consumer_lag, so web serves the
// lag of the consumer group's committed offsets that it reads from the
// broker instead. The pipeline's gauge is the lag seen by its last fetch: it
// stops changing when fetching stops, which is when lag matters most (an
// operator pause, an open circuit, a stuck consumer), so a "lag growing"
// alert on it could never fire then. The committed lag keeps growing.
type brokerLag struct{ prometheus.Gatherer }

func (b brokerLag) Gather() ([]*dto.MetricFamily, error) {
	fams, err := b.Gatherer.Gather()
	return slices.DeleteFunc(fams, func(f *dto.MetricFamily) bool { return f.GetName() == pipeline.MetricConsumerLag }), err
}

// AdminURLFile, in the data dir, holds the admin API's URL while the
// appliance runs.
const AdminURLFile = "admin-url"

// ReadAdminURL returns the admin API URL of the appliance running on
// dataDir, for the CLI; an error if it does not run or serves no API.
func ReadAdminURL(dataDir string) (string, error) {
	data, err := os.ReadFile(filepath.Join(dataDir, AdminURLFile))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(data)), nil
}

// dialableURL is the server's URL with an unspecified listen host (all
// interfaces) replaced by loopback, which a local client can connect to.
func dialableURL(srv *web.Server) string {
	u := srv.URL()
	host, port, err := net.SplitHostPort(srv.Addr())
	if err != nil {
		return u
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return strings.Replace(u, srv.Addr(), net.JoinHostPort("127.0.0.1", port), 1)
	}
	return u
}

// WebURL is the base URL of the dashboard and admin API, "" until it has
// started or when http.listen is empty.
func (a *Appliance) WebURL() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.web == nil {
		return ""
	}
	return a.web.URL()
}

// webBackend implements web.Backend. cl produces replays and test requests
// and backs the admin client.
type webBackend struct {
	a       *Appliance
	cl      *kgo.Client
	adm     *kadm.Client
	started time.Time
}

var _ web.Backend = (*webBackend)(nil)

// modelServer is the model server's backend, or ErrUnavailable before it
// has started.
func (b *webBackend) modelServer() (modelBackend, error) {
	mb := b.a.modelBackend()
	if mb == nil {
		return nil, fmt.Errorf("%w: the model server has not started", web.ErrUnavailable)
	}
	return mb, nil
}

// DataWarnings says what data was lost; /readyz's body carries it.
func (b *webBackend) DataWarnings() []string { return b.a.DataWarnings() }

// componentReady is the supervisor's readiness of one component.
func (b *webBackend) componentReady(name string) error {
	for _, c := range b.a.comps {
		if c.name == name {
			return b.a.sup.ready([]*component{c})
		}
	}
	return fmt.Errorf("no component %q", name)
}

func (b *webBackend) Status(context.Context) (*web.Status, error) {
	a := b.a
	st := &web.Status{Version: buildinfo.Get().Version, StartedAt: b.started, Delivery: a.cfg.Pipeline.Delivery}

	st.Broker = web.Component{Mode: a.cfg.Broker.Mode, Address: a.BrokerAddr(), State: web.StateOK}
	if a.cfg.Broker.Mode == BrokerEmbedded {
		st.Broker.Detail = "durability " + a.cfg.Broker.Durability
	}
	if err := b.componentReady("broker"); err != nil {
		st.Broker.State, st.Broker.Detail = web.StateDown, err.Error()
	}

	if e := a.Broker(); e != nil {
		h := e.Health()
		if len(h.Corrupt) > 0 {
			st.Broker.State = web.StateDegraded
			st.Broker.Detail = fmt.Sprintf("DATA CORRUPTION found at start (%d damaged files); %s", len(h.Corrupt), st.Broker.Detail)
		}
		if h.DiskFull {
			st.Broker.State = web.StateDegraded
			st.Broker.Detail = fmt.Sprintf("DISK FULL: %s free, below min_free_bytes %s: produce refused; %s", mib(h.FreeBytes), mib(h.MinFreeBytes), st.Broker.Detail)
		}
	}
	st.Warnings = a.DataWarnings()

	st.ModelServer = b.modelServerCard()

	st.Pipeline = web.Component{Mode: a.cfg.Pipeline.Delivery, State: web.StateStarting}
	if p := a.Pipeline(); p != nil {
		ps := p.Status()
		var dlq uint64
		for _, n := range ps.DLQ {
			dlq += n
		}
		st.Pipeline.Detail = fmt.Sprintf("%d consumed, %d results, %d dead-lettered", ps.Consumed, ps.Results, dlq)
		st.Pipeline.State = pipelineState(ps)
		if ps.State != pipeline.StateRunning && (st.Pipeline.State == web.StateDegraded || st.Pipeline.State == web.StateDown) {
			// stalled, draining, stopped: the word alone does not say which.
			st.Pipeline.Detail = ps.State + "; " + st.Pipeline.Detail
		}
		if ps.Held != "" {
			st.Pipeline.Detail = "consumption held: " + ps.Held + "; " + st.Pipeline.Detail
		}
		st.Member = &web.Membership{Group: ps.Group, MemberID: ps.MemberID, InstanceID: ps.InstanceID,
			Generation: ps.Generation, NotReady: ps.NotReady}
		if strings.HasPrefix(ps.NotReady, "broker unreachable") {
			st.Broker.State, st.Broker.Detail = web.StateDown, ps.NotReady
		}
		if ps.NotReady != "" && ps.State == pipeline.StateRunning { // degraded by pipelineState
			st.Pipeline.Detail = ps.NotReady + "; " + st.Pipeline.Detail
		}
		if ps.LastError != "" {
			st.Pipeline.Detail += fmt.Sprintf("; last error %s ago: %s", time.Since(ps.LastErrorAt).Round(time.Second), ps.LastError)
		}
	}
	return st, nil
}

// pipelineState maps a pipeline's state to the dashboard's words (web.State*):
// the pipeline's card and the group members' states.
func pipelineState(ps pipeline.Status) string {
	switch ps.State {
	case pipeline.StateRunning:
		if ps.NotReady != "" {
			return web.StateDegraded
		}
		return web.StateOK
	case pipeline.StatePaused:
		return web.StatePaused
	case pipeline.StateCircuitOpen:
		return web.StateCircuitOpen
	case pipeline.StateStarting:
		return web.StateStarting
	case pipeline.StateStalled:
		// Alive but unable to produce its outputs: degraded, not "down"
		// (it resumes by itself).
		return web.StateDegraded
	}
	return web.StateDown // draining, stopped
}

// modelServerCard is the model server's card: what its backend says, then
// degraded if the supervisor finds it not ready.
func (b *webBackend) modelServerCard() web.Component {
	c := web.Component{State: web.StateStarting}
	if mb := b.a.modelBackend(); mb != nil {
		c = mb.card()
	}
	c.Mode = b.a.cfg.ModelServer.Mode
	if err := b.componentReady("model server"); err != nil && c.State == web.StateOK {
		c.State, c.Detail = web.StateDegraded, err.Error()
	}
	return c
}

// Ready is the appliance's readiness (every component, the web server included).
func (b *webBackend) Ready() error { return b.a.Ready() }

func (b *webBackend) pipeline() (*pipeline.Pipeline, error) {
	p := b.a.Pipeline()
	if p == nil {
		return nil, fmt.Errorf("%w: the pipeline has not started", web.ErrUnavailable)
	}
	return p, nil
}

func (b *webBackend) PausePipeline(context.Context) error {
	p, err := b.pipeline()
	if err != nil {
		return err
	}
	p.Pause()
	return nil
}

func (b *webBackend) ResumePipeline(context.Context) error {
	p, err := b.pipeline()
	if err != nil {
		return err
	}
	p.Resume()
	return nil
}

// Topics lists the three topics with their offsets and the consumer
// group's committed offsets and lag on the requests topic.
func (b *webBackend) Topics(ctx context.Context) ([]web.Topic, error) {
	t := b.a.cfg.Pipeline
	group := b.a.cfg.Pipeline.Group
	names := []string{t.RequestsTopic, t.ResultsTopic, t.DLQTopic}
	md, err := b.adm.Metadata(ctx, names...)
	if err != nil {
		return nil, fmt.Errorf("%w: broker metadata: %w", web.ErrUnavailable, err)
	}
	starts, err := b.adm.ListStartOffsets(ctx, names...)
	if err != nil {
		return nil, fmt.Errorf("%w: listing start offsets: %w", web.ErrUnavailable, err)
	}
	ends, err := b.adm.ListEndOffsets(ctx, names...)
	if err != nil {
		return nil, fmt.Errorf("%w: listing end offsets: %w", web.ErrUnavailable, err)
	}
	gl, err := broker.Group(ctx, b.adm, group, t.RequestsTopic)
	if err != nil {
		return nil, fmt.Errorf("%w: consumer lag: %w", web.ErrUnavailable, err)
	}
	lags := gl.Partitions
	elsewhere := b.reportedElsewhere(gl)
	lagOf := map[int32]broker.PartitionLag{}
	for _, l := range lags {
		if l.Topic == t.RequestsTopic {
			lagOf[l.Partition] = l
		}
	}
	roles := []string{web.RoleRequests, web.RoleResults, web.RoleDLQ}
	out := make([]web.Topic, 0, len(names))
	for i, name := range names {
		td, ok := md.Topics[name]
		if !ok {
			return nil, fmt.Errorf("%w: topic %s is missing from the broker's metadata", web.ErrUnavailable, name)
		}
		if td.Err != nil {
			return nil, fmt.Errorf("%w: topic %s: %w", web.ErrUnavailable, name, td.Err)
		}
		topic := web.Topic{Name: name, Role: roles[i], Partitions: []web.Partition{}}
		if topic.Role == web.RoleRequests {
			topic.Group = group
			topic.Shared = b.a.cfg.Broker.Mode == BrokerExternal
		}
		for _, pd := range td.Partitions.Sorted() {
			p := web.Partition{Partition: pd.Partition, Leader: pd.Leader, Committed: -1, Lag: -1}
			if s, ok := starts.Lookup(name, pd.Partition); ok && s.Err == nil {
				p.StartOffset = s.Offset
			}
			if e, ok := ends.Lookup(name, pd.Partition); ok && e.Err == nil {
				p.EndOffset = e.Offset
			}
			if l, ok := lagOf[pd.Partition]; ok && topic.Role == web.RoleRequests {
				p.Committed, p.Lag = l.Committed, l.Lag
				p.Owner, p.ReportedElsewhere = l.Owner, elsewhere(l)
			}
			topic.Partitions = append(topic.Partitions, p)
		}
		out = append(out, topic)
	}
	return out, nil
}

// reportedElsewhere says, for one partition of gl, whether another instance
// of the group exports its lag: its owner does; a partition nobody owns (a
// rebalance in progress, a member that left) is exported by the member with
// the lowest member id; an instance not (yet) in a group that has members
// exports none; with no member in the group every instance exports what it
// sees, which is right for the one instance of an edge box.
func (b *webBackend) reportedElsewhere(gl broker.GroupLag) func(broker.PartitionLag) bool {
	var me string
	if p := b.a.Pipeline(); p != nil {
		me, _ = p.Member()
	}
	inGroup := false
	for _, m := range gl.Members {
		inGroup = inGroup || m.MemberID == me
	}
	return func(l broker.PartitionLag) bool {
		switch {
		case len(gl.Members) == 0:
			return false
		case !inGroup:
			return true
		case l.OwnerMemberID != "":
			return l.OwnerMemberID != me
		default:
			return gl.Members[0].MemberID != me
		}
	}
}

// Models lists what the model server serves, whichever kind it is.
func (b *webBackend) Models(ctx context.Context) ([]web.Model, error) {
	mb, err := b.modelServer()
	if err != nil {
		return nil, err
	}
	models, err := mb.models(ctx)
	b.a.mu.Lock()
	ro := b.a.rollouts
	b.a.mu.Unlock()
	if ro != nil {
		// The embedded server marks the versions it holds itself; in the
		// modes that cannot hold, a version a pin or rollout needs is marked
		// here, with why it is not kept.
		holds, note := ro.Holds(), mb.notHeld()
		for i := range models {
			models[i].Serving = ro.Serving(models[i].Name)
			for j, v := range models[i].Versions {
				if why := holds[models[i].Name][v.Version]; why != "" && note != "" {
					models[i].Versions[j].Held = why + " (" + note + ")"
				}
			}
		}
	}
	return models, err
}

// UploadModel stores an uploaded version, in the modes that take one.
func (b *webBackend) UploadModel(ctx context.Context, name string, version int64, file string, _ int64) (int64, error) {
	mb, err := b.modelServer()
	if err != nil {
		return 0, err
	}
	return mb.upload(ctx, name, version, file)
}

func (b *webBackend) SetLabel(ctx context.Context, name, label string, version int64) error {
	mb, err := b.modelServer()
	if err != nil {
		return err
	}
	return mb.setLabel(ctx, name, label, version)
}

func (b *webBackend) ReloadModels(ctx context.Context) error {
	mb, err := b.modelServer()
	if err != nil {
		return err
	}
	return mb.reload(ctx)
}

// Replay produces the records to the requests topic as they first arrived.
func (b *webBackend) Replay(ctx context.Context, recs []*store.Record) error {
	if err := pipeline.Replay(ctx, b.cl, b.a.cfg.Pipeline.RequestsTopic, recs); err != nil {
		return fmt.Errorf("%w: %w", web.ErrUnavailable, err)
	}
	return nil
}

// SendTestRequest sends one request through the pipeline and waits for its
// answer (pipeline.SendTestRequest); errors become web's kinds.
func (b *webBackend) SendTestRequest(ctx context.Context, key, value []byte, headers []store.Header) ([]byte, error) {
	t := b.a.cfg.Pipeline
	out, err := pipeline.SendTestRequest(ctx, b.adm, b.cl, b.a.kafkaClient,
		pipeline.TestTopics{Requests: t.RequestsTopic, Results: t.ResultsTopic, DLQ: t.DLQTopic},
		&store.Record{Key: key, Value: value, Headers: headers})
	var dl *pipeline.DeadLettered
	switch {
	case err == nil:
		return out, nil
	case errors.As(err, &dl):
		return nil, dlqError(dl)
	case ctx.Err() != nil:
		return nil, b.noAnswer(err)
	case errors.Is(err, pipeline.ErrBrokerUnavailable):
		return nil, kindError{err.Error(), web.ErrUnavailable}
	}
	return nil, err
}

// noAnswer explains a test request that got no answer in time.
func (b *webBackend) noAnswer(err error) error {
	why := "the pipeline has not started"
	if p := b.a.Pipeline(); p != nil {
		st := p.Status()
		why = "pipeline " + st.State
		if st.State == pipeline.StatePaused {
			why = "the pipeline is paused: resume it"
		}
		if st.LastError != "" {
			why += "; last error: " + st.LastError
		}
	}
	return fmt.Errorf("no result or DLQ record for the test request yet (%s): %w", why, err)
}

// dlqError turns a dead-lettered test request into the error the API
// reports: the request's fault (400) or the appliance's (503, 500).
func dlqError(d *pipeline.DeadLettered) error {
	switch d.Class {
	case pipeline.ClassDecode, pipeline.ClassValidation, pipeline.ClassModel:
		return kindError{d.Error(), web.ErrInvalid}
	case pipeline.ClassUnavailable, pipeline.ClassTimeout, pipeline.ClassExhausted:
		// The model server could not answer this request in time or had no
		// room for it: the request itself may be fine, so 503, not 500.
		return kindError{d.Error(), web.ErrUnavailable}
	}
	// internal is the appliance's own failure, result_too_large its
	// settings' (the results topic's max.message.bytes): 500.
	return errors.New(d.Error())
}

// kindError reads as its text alone and unwraps to one of web's error kinds,
// which pick the status code ("invalid argument: " would only be noise).
type kindError struct {
	text string
	kind error
}

func (e kindError) Error() string { return e.text }
func (e kindError) Unwrap() error { return e.kind }

// Sidecar reports the supervised tensorflow_model_server, or the external
// fleet's endpoints.
func (b *webBackend) Sidecar(context.Context) (*web.SidecarStatus, bool) {
	if mb := b.a.modelBackend(); mb != nil {
		return mb.sidecarView()
	}
	return nil, false
}

// Settings are the running settings (secrets redacted); settings_live.go.
func (b *webBackend) Settings() any { return b.a.settingsView() }
