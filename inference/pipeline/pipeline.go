package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/plugin/kslog"

	"github.com/infergate/infergate/store"
)

// Pipeline states reported by Status.
const (
	StateStarting    = "starting"
	StateRunning     = "running"
	StatePaused      = "paused"
	StateCircuitOpen = "circuit-open"
	// StateStalled: outputs cannot be produced (a retriable produce error
	// persists, or transactions abort for produce errors); not ready.
	StateStalled  = "stalled"
	StateDraining = "draining"
	StateStopped  = "stopped"
)

const (
	phaseNew int32 = iota
	phaseRunning
	phaseDraining
	phaseStopped
)

// commitInterval is how often acknowledged work is committed in
// at-least-once mode; it is also the longest a poll blocks, so the loop
// notices shutdown and commits while no records arrive. A crash redelivers
// at most this much acknowledged work.
const commitInterval = 100 * time.Millisecond

// stopWait is how long, once shutdown began, a commit (at-least-once) or a
// transaction's end (exactly-once) may still wait. Both normally take
// milliseconds; what makes them wait is a rebalance — kgo holds commits
// while the group joins and syncs — and a rebalance that waits for a crashed
// member lasts until that member's session times out (20 s by default).
// The instance does not wait with it: at-least-once leaves the rest
// uncommitted (redelivered to the partitions' next owner), exactly-once
// aborts the transaction (its requests are consumed again, no result is
// seen twice).
const stopWait = 3 * time.Second

// heldUpAfter is how long acknowledged work may wait to be committed (or a
// transaction to commit) before the instance reports itself not ready: a
// commit takes milliseconds, a cooperative rebalance about a second; longer
// means the group is stuck in a rebalance (waiting for a crashed member) or
// the coordinator does not answer, and nothing this instance does is made
// final meanwhile.
const heldUpAfter = 5 * time.Second

// Status is a snapshot for the admin API and the dashboard.
type Status struct {
	State    string `json:"state"`
	Circuit  string `json:"circuit"`
	Delivery string `json:"delivery"`
	// Paused is the operator's pause (Pause/Resume), separate from the circuit.
	Paused bool `json:"paused"`
	// Held is why the appliance stopped consumption (Hold), "" when it did not.
	Held     string `json:"held,omitempty"`
	Consumed uint64 `json:"consumed"`
	Results  uint64 `json:"results"`
	// DLQ counts acknowledged DLQ records by error class.
	DLQ             map[string]uint64 `json:"dlq"`
	InFlightBatches int               `json:"in_flight_batches"`
	// Pending is requests consumed whose output is not yet acknowledged.
	Pending     int       `json:"pending"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// NotReady is why the pipeline cannot make progress ("" when it can):
	// no broker answers, not (yet) in the group, circuit open, stalled.
	NotReady string `json:"not_ready,omitempty"`
	// Group, MemberID, InstanceID and Generation are this instance's place
	// in the consumer group (MemberID "" before it joined).
	Group      string `json:"group"`
	MemberID   string `json:"member_id,omitempty"`
	InstanceID string `json:"instance_id,omitempty"`
	Generation int32  `json:"generation"`
}

// Pipeline consumes requests, predicts and produces results and DLQ records.
type Pipeline struct {
	cfg        Config
	tune       atomic.Pointer[Tuning] // cfg's tunable part, changed by Retune
	logger     *slog.Logger
	clientOpts []kgo.Opt
	pred       Predictor
	router     Router   // nil: every request the model server's latest (or what it names)
	observer   Observer // nil: nobody watches
	st         *store.Store
	m          *metrics
	meta       *metaCache
	tr         *tracker
	in         *inbox
	work       chan *batch
	circ       *circuit
	eos        bool
	maxPending int
	bg         sync.WaitGroup // probers

	started  atomic.Bool
	phase    atomic.Int32
	opPaused atomic.Bool
	held     atomic.Pointer[string] // Hold's reason
	closing  atomic.Bool
	inflight atomic.Int64
	consumed atomic.Uint64
	results  atomic.Uint64
	dlq      [len(Classes)]atomic.Uint64 // by index in Classes

	successes  atomic.Uint64 // successful model calls
	slowStreak atomic.Int64  // calls that timed out or exhausted resources since the last success
	canaries   canaries

	limits   map[string]int // max.message.bytes of the results and DLQ topics, read by Run
	degraded degradedMemory
	stalled  atomic.Bool // outputs cannot be produced: not ready
	// brokerDown is why no broker answers (watchBrokers), nil while one does.
	brokerDown atomic.Pointer[string]

	// The produce watchdog (watchProduce): outputs handed to the producer and
	// not yet answered, and when the broker last made progress with them.
	outstanding atomic.Int64
	progressAt  atomic.Int64 // unix nanoseconds
	stallAfter  time.Duration

	fatalOnce sync.Once
	fatalErr  atomic.Pointer[error]
	fatalCh   chan struct{}

	commitMu  sync.Mutex // one commit at a time; revocation excludes periodic commits
	commitSig chan struct{}
	// stopping ends when Run's context does: from then on commits and
	// transaction ends wait at most stopWait (boundedCtx).
	stopping context.Context
	stop     context.CancelFunc
	heldUp   atomic.Bool // a commit or transaction end gave up waiting during shutdown (noteHeldUp)
	// unfinalSince is when the oldest work still to be committed (or the
	// oldest transaction not yet committed) started waiting, unix
	// nanoseconds; 0 when nothing waits.
	unfinalSince atomic.Int64

	mu        sync.Mutex // guards cl, lastErr, lastErrAt
	cl        *kgo.Client
	lastErr   string
	lastErrAt time.Time
}

// New validates cfg and prepares a pipeline; Run starts it. clientOpts are
// the broker connection options (seed brokers, TLS, SASL, compression) from
// the broker package; the pipeline adds its consumer group and producer
// settings. st receives every DLQ record (nil keeps them in the DLQ topic
// only). reg, when not nil, gets the pipeline's metrics.
func New(cfg Config, logger *slog.Logger, clientOpts []kgo.Opt, pred Predictor, st *store.Store, reg prometheus.Registerer) (*Pipeline, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if pred == nil {
		return nil, errors.New("inference: a Predictor is required")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	if cfg.Delivery == ExactlyOnce {
		// Both series from the start, so a rate of aborts is defined before the first one.
		m.txns.WithLabelValues("committed")
		m.txns.WithLabelValues("aborted")
	}
	p := &Pipeline{
		cfg:        cfg,
		logger:     logger,
		clientOpts: clientOpts,
		pred:       pred,
		st:         st,
		m:          m,
		meta:       newMetaCache(pred),
		tr:         newTracker(),
		in:         &inbox{sig: make(chan struct{}, 1)},
		work:       make(chan *batch),
		eos:        cfg.Delivery == ExactlyOnce,
		fatalCh:    make(chan struct{}),
		commitSig:  make(chan struct{}, 1),
		// Room for every worker's batch, as many forming, and the outputs
		// waiting for acknowledgement, without letting a slow model make
		// the pipeline hold more than a few seconds of traffic.
		maxPending: min(max(4*cfg.MaxBatchSize*cfg.MaxInflightBatches, 1024), 1<<16),
	}
	t := cfg.Tuning()
	p.tune.Store(&t)
	p.circ = newCircuit(p, cfg.ProbeInterval)
	p.stallAfter = produceStallAfter
	p.stopping, p.stop = context.WithCancel(context.Background())
	return p, nil
}

func (p *Pipeline) clientOptions() []kgo.Opt {
	opts := []kgo.Opt{
		kgo.WithLogger(kslog.New(p.logger.With("component", "kafka"))),
		// Results wait for their batch of records at most this long; kgo's
		// 10 ms default would dominate the pipeline's latency.
		kgo.ProducerLinger(time.Millisecond),
		// A resumed partition (operator resume, circuit closed) is fetched
		// again within this time even when the previous fetch was empty.
		kgo.FetchMaxWait(500 * time.Millisecond),
	}
	opts = append(opts, p.clientOpts...)
	opts = append(opts,
		kgo.ConsumerGroup(p.cfg.Group),
		kgo.ConsumeTopics(p.cfg.RequestsTopic),
		kgo.SessionTimeout(p.cfg.SessionTimeout),
		kgo.HeartbeatInterval(p.cfg.HeartbeatInterval),
		kgo.RebalanceTimeout(p.cfg.RebalanceTimeout),
		kgo.ConsumeResetOffset(p.resetOffset()),
		kgo.DisableAutoCommit(),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.RecordPartitioner(sourcePartitioner{}),
		kgo.MaxBufferedRecords(max(10000, 2*p.maxPending)),
	)
	if p.cfg.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(p.cfg.InstanceID))
	}
	// Batches no larger than the topic takes: a batch over max.message.bytes
	// fails every record in it, an oversized record alone is refused by kgo
	// before it is sent and cut down by produceFailed.
	opts = append(opts, kgo.ProducerBatchMaxBytesFn(func(topic string) int32 {
		if n, ok := p.limits[topic]; ok {
			return int32(min(n, 64<<20)) // below kgo's BrokerMaxWriteBytes (100 MiB)
		}
		return defaultMaxMessageBytes
	}))
	if p.eos {
		opts = append(opts,
			// Stable fetch offsets (KIP-447) are always requested by kgo 1.22.
			kgo.TransactionalID(p.cfg.transactionalID()),
		)
	} else {
		opts = append(opts,
			kgo.BlockRebalanceOnPoll(),
			kgo.OnPartitionsRevoked(p.onRevoked),
			kgo.OnPartitionsLost(p.onLost),
		)
	}
	return opts
}

func (p *Pipeline) resetOffset() kgo.Offset {
	if p.cfg.AutoOffsetReset == OffsetLatest {
		return kgo.NewOffset().AtEnd()
	}
	return kgo.NewOffset().AtStart()
}

// Run consumes until ctx ends, then drains: it stops fetching, finishes the
// batches in flight, produces their outputs, commits, and closes the client.
// Work not finished within ShutdownTimeout is left uncommitted (it is
// redelivered); a commit or transaction end that a rebalance holds up is
// given up after stopWait. Run returns after every goroutine it started has
// exited, except a client close held up by a rebalance (closeClient); the
// error is nil after a clean drain.
func (p *Pipeline) Run(ctx context.Context) (err error) {
	if !p.started.CompareAndSwap(false, true) {
		return errors.New("inference: Run called twice")
	}
	defer p.phase.Store(phaseStopped)
	defer context.AfterFunc(ctx, p.stop)()
	defer p.stop()

	work, stopWork := context.WithCancel(context.Background())
	defer stopWork()
	p.circ.setCtx(work)

	lctx, lcancel := context.WithTimeout(ctx, 10*time.Second)
	p.limits = p.topicLimits(lctx)
	lcancel()

	var sess *kgo.GroupTransactSession
	var cl *kgo.Client
	if p.eos {
		sess, err = kgo.NewGroupTransactSession(p.clientOptions()...)
		if sess != nil {
			cl = sess.Client()
		}
	} else {
		cl, err = kgo.NewClient(p.clientOptions()...)
	}
	if err != nil {
		return fmt.Errorf("inference: kafka client: %w", err)
	}
	p.setClient(cl)

	var wg sync.WaitGroup
	spawn := func(f func()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f()
		}()
	}
	spawn(func() { p.dispatchLoop(work) })
	spawn(func() { p.emitLoop(work, cl) })
	spawn(func() { p.watchProduce(work) })
	spawn(func() { p.watchBrokers(work, cl) })
	if !p.eos {
		spawn(func() { p.commitLoop(work, cl) })
	}
	for range p.cfg.MaxInflightBatches {
		spawn(func() { p.workLoop(work) })
	}
	p.phase.Store(phaseRunning)
	p.logger.Info("pipeline running", "requests", p.cfg.RequestsTopic, "results", p.cfg.ResultsTopic,
		"dlq", p.cfg.DLQTopic, "group", p.cfg.Group, "delivery", p.cfg.Delivery,
		"max_batch", p.tuning().MaxBatchSize, "max_wait", p.tuning().MaxBatchWait, "max_in_flight", p.cfg.MaxInflightBatches,
		"results_max_message_bytes", p.limits[p.cfg.ResultsTopic], "dlq_max_message_bytes", p.limits[p.cfg.DLQTopic])

	var loopErr error
	if p.eos {
		loopErr = p.txnLoop(ctx, sess)
	} else {
		loopErr = p.pollLoop(ctx, cl)
	}

	p.phase.Store(phaseDraining)
	if !p.eos {
		p.drain(cl, loopErr)
	}
	p.closing.Store(true)
	stopWork()
	wg.Wait()
	p.bg.Wait()
	p.setClient(nil)
	if p.heldUp.Load() {
		p.leaveGroup(cl)
	}
	if p.eos {
		p.closeClient(sess.Close)
	} else {
		p.closeClient(cl.Close) // leaves the group; onRevoked commits whatever was acknowledged meanwhile
	}
	p.logger.Info("pipeline stopped", "consumed", p.consumed.Load(), "results", p.results.Load(), "err", loopErr)
	return loopErr
}

// closeClient closes the Kafka client, waiting at most stopWait. kgo's
// Close first waits for a JoinGroup in flight (it sends joins with the
// client's own context, so that a final commit can follow a rebalance), and
// a join lasts until every member rejoined: until a crashed member's session
// times out. The instance does not wait for that: the client finishes
// closing in the background and the process, exiting, drops the
// connections. A static member does not leave the group on close anyway; a
// dynamic one that did not get to leave is removed at its session timeout.
func (p *Pipeline) closeClient(closeFn func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		closeFn()
	}()
	wait := stopWait
	if p.heldUp.Load() {
		wait = 0 // the group is rebalancing, and this member left it (leaveGroup)
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		p.logger.Warn("closing the Kafka client waits for the group's coordinator (a rebalance in progress, or no broker answers); not waiting for it", "waited", wait)
	}
}

// leaveGroup takes this member out of the group when a rebalance held up
// its final commit or transaction end: the member would otherwise stay in
// the rebalance as joined, and the others would wait for its SyncGroup
// (a static member does not leave on close; kgo's close waits for the join
// it has in flight). The group rebalances anyway, so leaving costs nothing.
func (p *Pipeline) leaveGroup(cl *kgo.Client) {
	memberID, _ := cl.GroupMetadata()
	if memberID == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), stopWait)
	defer cancel()
	req := kmsg.NewPtrLeaveGroupRequest()
	req.Group = p.cfg.Group
	req.MemberID = memberID
	m := kmsg.NewLeaveGroupRequestMember()
	m.MemberID = memberID
	if p.cfg.InstanceID != "" {
		m.InstanceID = kmsg.StringPtr(p.cfg.InstanceID)
	}
	m.Reason = kmsg.StringPtr("shutting down while the group rebalances")
	req.Members = append(req.Members, m)
	resp, err := req.RequestWith(ctx, cl)
	if err == nil {
		err = kerr.ErrorForCode(resp.ErrorCode)
		for _, rm := range resp.Members {
			if e := kerr.ErrorForCode(rm.ErrorCode); e != nil && err == nil {
				err = e
			}
		}
	}
	if err != nil {
		p.logger.Warn("leaving the consumer group failed; the group removes this member when its session times out",
			"group", p.cfg.Group, "member_id", memberID, "err", err)
		return
	}
	p.logger.Info("left the consumer group: its final commit was held up (the group is rebalancing)", "group", p.cfg.Group,
		"member_id", memberID, "instance_id", p.cfg.InstanceID)
}

// drain finishes the at-least-once pipeline's work after fetching stopped.
func (p *Pipeline) drain(cl *kgo.Client, loopErr error) {
	if loopErr == nil {
		p.in.push(inItem{flush: true})
		ctx, cancel := context.WithTimeout(context.Background(), p.cfg.ShutdownTimeout)
		err := p.tr.waitUntil(ctx, 50*time.Millisecond, func() bool { return p.tr.pending == 0 || p.fatalErr.Load() != nil })
		cancel()
		if err != nil {
			p.logger.Warn("drain timed out; unfinished requests stay uncommitted and will be redelivered",
				"pending", p.tr.pendingCount(), "timeout", p.cfg.ShutdownTimeout)
		}
	}
	p.commit(cl, false)
}

// pollLoop is the at-least-once consumer: poll as many records as there is
// room for, hand them to the dispatcher, commit what has been acknowledged.
func (p *Pipeline) pollLoop(ctx context.Context, cl *kgo.Client) error {
	lastCommit := time.Now()
	for {
		if err := p.fatal(); err != nil {
			return err
		}
		room := p.maxPending - p.tr.pendingCount()
		if room <= 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-p.fatalCh:
				continue
			case <-p.tr.spaceSig:
			case <-time.After(commitInterval):
			}
			if time.Since(lastCommit) >= commitInterval {
				p.requestCommit()
				lastCommit = time.Now()
			}
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, commitInterval)
		fs := cl.PollRecords(pctx, room)
		cancel()
		if fs.IsClientClosed() {
			return errors.New("inference: kafka client closed")
		}
		p.fetchErrors(fs)
		if recs := fs.Records(); len(recs) > 0 {
			p.accept(fs, recs)
		}
		if time.Since(lastCommit) >= commitInterval {
			p.requestCommit()
			lastCommit = time.Now()
		}
		cl.AllowRebalance()
		if ctx.Err() != nil {
			return nil
		}
	}
}

// requestCommit asks commitLoop to commit what has been acknowledged.
func (p *Pipeline) requestCommit() {
	select {
	case p.commitSig <- struct{}{}:
	default: // a commit is pending or running; it takes what is acknowledged by then
	}
}

// commitLoop commits at-least-once offsets away from the poll loop: a commit
// waits while the group rebalances (kgo holds commits during join and sync),
// and a rebalance can wait up to the session timeout for a crashed member.
// Polling, predicting and producing for the partitions this member keeps go
// on meanwhile; only their commit waits (a crash then redelivers more).
func (p *Pipeline) commitLoop(ctx context.Context, cl *kgo.Client) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.commitSig:
		}
		p.commit(cl, true)
	}
}

// accept registers polled records and hands them to the dispatcher.
func (p *Pipeline) accept(fs kgo.Fetches, recs []*kgo.Record) {
	p.consumed.Add(uint64(len(recs)))
	fs.EachPartition(func(ftp kgo.FetchTopicPartition) {
		if n := len(ftp.Records); n > 0 {
			p.m.requests.WithLabelValues(ftp.Topic).Add(float64(n))
			last := ftp.Records[n-1].Offset
			p.m.lag.WithLabelValues(ftp.Topic, strconv.Itoa(int(ftp.Partition))).Set(float64(max(ftp.HighWatermark-last-1, 0)))
		}
	})
	p.in.push(inItem{reqs: p.tr.register(recs)})
}

func (p *Pipeline) fetchErrors(fs kgo.Fetches) {
	fs.EachError(func(topic string, partition int32, err error) {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return
		}
		if fenced := fencedError(err); fenced != nil {
			p.setFatal(fenced)
			return
		}
		p.logger.Warn("fetch error", "topic", topic, "partition", partition, "err", err)
		p.noteError(err)
	})
}

// txnLoop is the exactly-once consumer: one transaction per poll holds the
// outputs of every polled request and their offsets.
func (p *Pipeline) txnLoop(ctx context.Context, sess *kgo.GroupTransactSession) error {
	backoff := time.Duration(0) // after a transaction aborted for a produce error
	for {
		if backoff > 0 {
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		if err := p.fatal(); err != nil {
			return err
		}
		pctx, cancel := context.WithTimeout(ctx, commitInterval)
		fs := sess.PollRecords(pctx, p.maxPending)
		cancel()
		if fs.IsClientClosed() {
			return errors.New("inference: kafka client closed")
		}
		p.fetchErrors(fs)
		recs := fs.Records()
		if len(recs) == 0 {
			p.unfinalSince.Store(0) // nothing waits to be committed (what aborted went with its partitions)
			continue
		}
		if err := sess.Begin(); err != nil {
			return fmt.Errorf("inference: beginning a transaction: %w", err)
		}
		p.accept(fs, recs)
		p.in.push(inItem{flush: true}) // every polled record must be in this transaction: no waiting for more

		// During shutdown the outputs in flight are waited for at most
		// ShutdownTimeout, and not at all once no broker answers: they
		// could not be produced, and the transaction is aborted anyway.
		wctx, wcancel := afterDone(ctx, p.cfg.ShutdownTimeout)
		werr := p.tr.waitUntil(wctx, 50*time.Millisecond, func() bool {
			return p.tr.pending == 0 || p.fatalErr.Load() != nil || (ctx.Err() != nil && p.brokerDown.Load() != nil)
		})
		wcancel()
		if werr == nil && ctx.Err() != nil && p.tr.pendingCount() > 0 && p.fatalErr.Load() == nil {
			werr = errors.New("shutting down with no broker answering")
		}
		perr := p.tr.cycleError()
		commit := werr == nil && perr == nil && p.fatalErr.Load() == nil
		p.unfinalSince.CompareAndSwap(0, time.Now().UnixNano())
		ectx, ecancel := p.boundedCtx(p.cfg.ShutdownTimeout, stopWait)
		committed, err := sess.End(ectx, kgo.TransactionEndTry(commit))
		p.noteHeldUp(ectx)
		ecancel()
		if err != nil {
			// A slow rebalance (a member crashed and the group waits for
			// its session to time out) or a broker that does not answer
			// ends here: abort and consume the requests again, never exit.
			if fenced := fencedError(err); fenced != nil {
				return fenced
			}
			p.logger.Warn("ending a transaction failed; aborting it, its requests will be consumed again", "err", err)
			p.noteError(fmt.Errorf("ending a transaction: %w", err))
			committed = false
			if aerr := p.abortTxn(ctx, sess); aerr != nil {
				return aerr
			}
		}
		cycle, _ := p.tr.takeCycle()
		if committed {
			p.unfinalSince.Store(0)
			p.m.txns.WithLabelValues("committed").Inc()
			p.afterCommit(cycle)
			p.unstall()
			backoff = 0
		} else {
			p.m.txns.WithLabelValues("aborted").Inc()
			p.logger.Info("transaction aborted; its requests will be consumed again", "requests", len(recs),
				"produce_err", perr, "wait_err", werr)
			p.tr.revokeAll()
			if perr != nil {
				// Record errors cut their outputs down on the next try;
				// anything else waits for the broker, not ready meanwhile.
				if classifyProduceError(perr) != produceRecord {
					p.stall(perr)
				}
				t := p.tuning()
				backoff = min(max(2*backoff, t.RetryBackoff), t.RetryBackoffMax)
			}
		}
		if werr != nil {
			return nil // shutdown timed out with work outstanding; it was aborted
		}
	}
}

// abortTxn ends a transaction whose End failed with an abort, retrying
// until the broker answers. It returns nil once aborted or when ctx ends
// (shutdown: the broker aborts the open transaction when it times out, or
// when the restarted instance's producer fences this one), and an error only
// when this producer is fenced.
func (p *Pipeline) abortTxn(ctx context.Context, sess *kgo.GroupTransactSession) error {
	backoff := p.tuning().RetryBackoff
	for {
		actx, cancel := p.boundedCtx(p.cfg.ShutdownTimeout, stopWait)
		_, err := sess.End(actx, kgo.TryAbort)
		cancel()
		if err == nil {
			return nil
		}
		if fenced := fencedError(err); fenced != nil {
			return fenced
		}
		p.logger.Warn("aborting a transaction failed; retrying", "err", err, "backoff", backoff)
		p.noteError(fmt.Errorf("aborting a transaction: %w", err))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, p.tuning().RetryBackoffMax)
	}
}

// ErrFenced: another live instance uses this instance's transactional id
// or static member id, and the broker fenced this one. Retrying cannot help;
// the two instances must be told apart.
var ErrFenced = errors.New("fenced by another instance with the same identity")

// fencedError returns an error naming the settings to fix when err says
// that another producer or member with this identity took over, else nil.
func fencedError(err error) error {
	switch {
	case errors.Is(err, kerr.ProducerFenced):
		return fmt.Errorf("inference: %w: the transactional id is used by another live instance "+
			"(delivery.transactional_id, or pipeline.instance_id it derives from, must be unique per instance): %w", ErrFenced, err)
	case errors.Is(err, kerr.FencedInstanceID):
		return fmt.Errorf("inference: %w: pipeline.instance_id is used by another live member of the group: %w", ErrFenced, err)
	}
	return nil
}

// afterCommit counts a committed transaction's outputs. Its DLQ records
// were stored before they were produced (emitLoop).
func (p *Pipeline) afterCommit(cycle []*request) {
	now := time.Now()
	for _, r := range cycle {
		p.count(r, now)
	}
}

// putDLQ stores recs and reports whether they are in the store.
func (p *Pipeline) putDLQ(recs []*store.Record) bool {
	if p.st == nil {
		return false
	}
	if len(recs) == 0 {
		return true
	}
	// The DLQ topic holds every record too, so a failing store is reported
	// rather than allowed to stop the pipeline. Ids follow the source record,
	// so a redelivered request that fails again overwrites its record. A full
	// disk is waited out instead (the appliance holds consumption meanwhile):
	// the outputs are produced, and their offsets committed, once stored.
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := p.st.PutFromSource(ctx, recs...)
		cancel()
		if err == nil {
			return true
		}
		p.noteError(err)
		if !errors.Is(err, store.ErrDiskFull) || p.closing.Load() {
			p.logger.Error("storing DLQ records failed; they remain in the DLQ topic", "records", len(recs), "err", err)
			return false
		}
		time.Sleep(time.Second)
	}
}

// emitLoop produces finished requests' outputs in partition order.
func (p *Pipeline) emitLoop(ctx context.Context, cl *kgo.Client) {
	var buf []*request
	var dlqs []*store.Record
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.tr.emitSig:
		}
		buf = p.tr.takeReady(buf[:0])
		produce := buf[:0:0]
		var storeOnly []*request
		for _, r := range buf {
			if p.fitOutput(r) {
				produce = append(produce, r)
			} else {
				storeOnly = append(storeOnly, r)
			}
		}
		// Store DLQ records before they are produced: the acknowledgement
		// allows the commit (at-least-once) and the transaction cannot commit
		// before it (exactly-once), so a crash never leaves a record only in
		// the topic. An aborted transaction leaves its records in the store;
		// their redelivery overwrites them (Store.PutFromSource).
		dlqs = dlqs[:0]
		for _, r := range buf {
			if r.dlq != nil {
				dlqs = append(dlqs, r.dlq)
			}
		}
		stored := p.putDLQ(dlqs)
		clear(dlqs)
		for _, r := range produce {
			if r.dlq != nil {
				setDLQID(r, stored)
			}
		}
		for _, r := range storeOnly {
			src := r.rec
			if stored {
				p.logger.Error("a DLQ record does not fit the DLQ topic even cut down; it is in the store only",
					"source_topic", src.Topic, "source_partition", src.Partition, "source_offset", src.Offset, "err", r.produceErr)
			} else {
				p.logger.Error("a DLQ record fits neither the DLQ topic nor the store; only its source offset is left",
					"source_topic", src.Topic, "source_partition", src.Partition, "source_offset", src.Offset, "err", r.produceErr)
			}
			p.onAck(r, nil)
		}
		for _, r := range produce {
			if p.outstanding.Add(1) == 1 {
				p.progressAt.Store(time.Now().UnixNano())
			}
			cl.Produce(context.Background(), r.out, func(_ *kgo.Record, err error) {
				p.outstanding.Add(-1)
				if err == nil {
					p.progressAt.Store(time.Now().UnixNano())
				}
				p.onAck(r, err)
			})
		}
		clear(buf)
	}
}

func (p *Pipeline) onAck(r *request, err error) {
	if err != nil {
		if !p.eos && p.closing.Load() {
			return // stopping: left uncommitted, redelivered
		}
		p.produceFailed(r, err)
		return
	}
	if !p.eos {
		p.unstall()
	}
	if p.tr.acked(r, p.eos) && !p.eos {
		p.count(r, time.Now())
	}
}

func (p *Pipeline) count(r *request, now time.Time) {
	if r.dlq != nil {
		for i, c := range Classes {
			if c == r.class {
				p.dlq[i].Add(1)
			}
		}
		p.m.dlq.WithLabelValues(r.class, r.label).Inc()
		return
	}
	p.results.Add(1)
	p.m.results.WithLabelValues(r.label).Inc()
	if ts := r.rec.Timestamp; !ts.IsZero() {
		p.m.e2e.Observe(max(now.Sub(ts).Seconds(), 0))
	}
}

// commit commits what has been acknowledged. During shutdown it waits at
// most stopWait; a periodic commit (commitLoop) is given up as soon as
// shutdown begins, since the drain's final commit takes over its offsets.
func (p *Pipeline) commit(cl *kgo.Client, periodic bool) {
	p.commitMu.Lock()
	defer p.commitMu.Unlock()
	wait := stopWait
	if periodic {
		wait = 0
	}
	offsets := p.tr.dirtyOffsets()
	if len(offsets) == 0 {
		p.unfinalSince.Store(0) // nothing acknowledged waits (or what waited went with its partitions)
	}
	p.commitSync(cl, offsets, wait)
}

// commitSync commits offsets, waiting at most wait once shutdown began;
// called with commitMu held.
func (p *Pipeline) commitSync(cl *kgo.Client, offsets map[string]map[int32]kgo.EpochOffset, wait time.Duration) {
	if len(offsets) == 0 {
		return
	}
	p.unfinalSince.CompareAndSwap(0, time.Now().UnixNano())
	ctx, cancel := p.boundedCtx(10*time.Second, wait)
	defer cancel()
	if wait > 0 { // a periodic commit given up at once says nothing about a rebalance
		defer p.noteHeldUp(ctx)
	}
	cl.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err == nil {
			for _, t := range resp.Topics {
				for _, pt := range t.Partitions {
					if e := kerr.ErrorForCode(pt.ErrorCode); e != nil {
						err = fmt.Errorf("%s/%d: %w", t.Topic, pt.Partition, e)
					}
				}
			}
		}
		if err != nil {
			p.logger.Warn("committing offsets failed; will retry", "err", err)
			p.noteError(err)
			p.tr.redirty(offsets)
			return
		}
		p.unfinalSince.Store(0)
	})
}

// onRevoked gives in-flight work of the revoked partitions a chance to
// finish (not while the circuit is open: it could not), commits what was
// acknowledged and forgets the rest, which the partitions' next owner
// consumes again.
func (p *Pipeline) onRevoked(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
	if !p.closing.Load() {
		wctx, cancel := context.WithTimeout(ctx, p.cfg.ShutdownTimeout)
		_ = p.tr.waitUntil(wctx, 50*time.Millisecond, func() bool {
			return p.tr.idleLocked(revoked) || p.circ.state() == circuitOpen || p.fatalErr.Load() != nil
		})
		cancel()
	}
	p.commitMu.Lock()
	defer p.commitMu.Unlock()
	p.commitSync(cl, p.tr.revoke(revoked), stopWait)
	p.forgetLag(revoked)
}

// onLost forgets partitions taken away without a chance to commit.
func (p *Pipeline) onLost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	p.commitMu.Lock()
	defer p.commitMu.Unlock()
	p.tr.revoke(lost)
	p.forgetLag(lost)
}

func (p *Pipeline) forgetLag(parts map[string][]int32) {
	for topic, ps := range parts {
		for _, pt := range ps {
			p.m.lag.DeleteLabelValues(topic, strconv.Itoa(int(pt)))
		}
	}
}

func (p *Pipeline) setFatal(err error) {
	p.fatalOnce.Do(func() {
		p.logger.Error("pipeline stopping", "err", err)
		p.noteError(err)
		p.fatalErr.Store(&err)
		close(p.fatalCh)
	})
}

func (p *Pipeline) fatal() error {
	if e := p.fatalErr.Load(); e != nil {
		return *e
	}
	return nil
}

func (p *Pipeline) noteError(err error) {
	p.mu.Lock()
	p.lastErr, p.lastErrAt = err.Error(), time.Now()
	p.mu.Unlock()
}

func (p *Pipeline) setClient(cl *kgo.Client) {
	p.mu.Lock()
	p.cl = cl
	p.mu.Unlock()
	p.applyPause()
}

// Pause stops fetching requests without leaving the consumer group; work
// already consumed finishes. It lasts until Resume, across circuit changes.
func (p *Pipeline) Pause() {
	p.opPaused.Store(true)
	p.applyPause()
	p.logger.Info("pipeline paused by operator")
}

// Resume undoes Pause. Fetching stays paused while the circuit is open.
func (p *Pipeline) Resume() {
	p.opPaused.Store(false)
	p.applyPause()
	p.logger.Info("pipeline resumed by operator")
}

// Hold stops fetching requests, like Pause, for a reason of the appliance's own (the disk
// is full: consuming more would only produce outputs that cannot be written). Work already
// consumed finishes, or waits, uncommitted. It is independent of the operator's pause and
// lasts until Release.
func (p *Pipeline) Hold(reason string) {
	p.held.Store(&reason)
	p.applyPause()
	p.logger.Warn("pipeline stops consuming", "reason", reason)
}

// Release undoes Hold.
func (p *Pipeline) Release() {
	if p.held.Swap(nil) != nil {
		p.applyPause()
		p.logger.Info("pipeline consumes again")
	}
}

func (p *Pipeline) circuitChanged(state int) {
	p.m.circuit.Set(float64(state))
	p.applyPause()
}

func (p *Pipeline) applyPause() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cl == nil {
		return
	}
	if p.opPaused.Load() || p.held.Load() != nil || p.circ.state() == circuitOpen {
		p.cl.PauseFetchTopics(p.cfg.RequestsTopic)
	} else {
		p.cl.ResumeFetchTopics(p.cfg.RequestsTopic)
	}
}

// Status returns a snapshot of the pipeline's state and counters.
func (p *Pipeline) Status() Status {
	circ := p.circ.state()
	s := Status{
		Circuit:         circuitNames[circ],
		Delivery:        p.cfg.Delivery,
		Paused:          p.opPaused.Load(),
		Consumed:        p.consumed.Load(),
		Results:         p.results.Load(),
		DLQ:             make(map[string]uint64, len(Classes)),
		InFlightBatches: int(p.inflight.Load()),
		Pending:         p.tr.pendingCount(),
	}
	if h := p.held.Load(); h != nil {
		s.Held = *h
	}
	for i, c := range Classes {
		s.DLQ[c] = p.dlq[i].Load()
	}
	switch p.phase.Load() {
	case phaseNew:
		s.State = StateStarting
	case phaseDraining:
		s.State = StateDraining
	case phaseStopped:
		s.State = StateStopped
	default:
		switch {
		case circ == circuitOpen:
			s.State = StateCircuitOpen
		case p.stalled.Load():
			s.State = StateStalled
		case s.Paused || s.Held != "":
			s.State = StatePaused
		default:
			s.State = StateRunning
		}
	}
	p.mu.Lock()
	s.LastError, s.LastErrorAt = p.lastErr, p.lastErrAt
	p.mu.Unlock()
	s.Group, s.InstanceID = p.cfg.Group, p.cfg.InstanceID
	s.MemberID, s.Generation = p.Member()
	if p.phase.Load() == phaseRunning {
		s.NotReady = p.NotReadyReason()
	}
	return s
}

// Ready reports whether the pipeline is consuming: Run is running, not
// draining, some broker answers, the circuit is not open, outputs can be
// produced (not stalled), and it has joined the consumer group. An operator
// pause is still ready.
func (p *Pipeline) Ready() bool {
	return p.NotReadyReason() == ""
}

// boundedCtx returns a context that ends after d, and at most wait after
// shutdown began (or after the call, when shutdown began before it).
// Its cause is errStopWait when the shutdown bound ended it.
func (p *Pipeline) boundedCtx(d, wait time.Duration) (context.Context, context.CancelFunc) {
	base, cancelBase := context.WithCancelCause(context.Background())
	ctx, cancel := context.WithTimeout(base, d)
	stop := context.AfterFunc(p.stopping, func() {
		t := time.AfterFunc(wait, func() { cancelBase(errStopWait) })
		context.AfterFunc(ctx, func() { t.Stop() })
	})
	return ctx, func() {
		stop()
		cancel()
		cancelBase(nil)
	}
}

// errStopWait ends a commit or a transaction's end that was still waiting
// stopWait into shutdown.
var errStopWait = errors.New("shutting down: gave up waiting (a rebalance in progress holds commits)")

// noteHeldUp remembers that a commit or transaction end gave up waiting
// during shutdown: the group is rebalancing, and closing the client would
// wait for the rebalance too.
func (p *Pipeline) noteHeldUp(ctx context.Context) {
	if errors.Is(context.Cause(ctx), errStopWait) {
		p.heldUp.Store(true)
	}
}

// afterDone returns a context that ends d after parent ends.
func afterDone(parent context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	stop := context.AfterFunc(parent, func() {
		t := time.AfterFunc(d, cancel)
		context.AfterFunc(ctx, func() { t.Stop() })
	})
	return ctx, func() {
		stop()
		cancel()
	}
}

// Member is this instance's member id in the consumer group and the group's
// generation, "" and -1 before it first joined.
func (p *Pipeline) Member() (memberID string, generation int32) {
	p.mu.Lock()
	cl := p.cl
	p.mu.Unlock()
	if cl == nil {
		return "", -1
	}
	return cl.GroupMetadata()
}

// brokerCheckEvery is how often the pipeline asks the cluster whether any
// broker answers; after brokerDownAfter of failures it is not ready.
const (
	brokerCheckEvery = 2 * time.Second
	brokerDownAfter  = 5 * time.Second
)

// watchBrokers pings the cluster so that readiness says so while no broker
// answers: kgo retries fetches, produces and commits silently, and the
// pipeline would look ready while it can make no progress.
func (p *Pipeline) watchBrokers(ctx context.Context, cl *kgo.Client) {
	t := time.NewTicker(brokerCheckEvery)
	defer t.Stop()
	var failingSince time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, brokerCheckEvery)
		err := cl.Ping(pctx)
		cancel()
		switch {
		case err == nil:
			if p.brokerDown.Swap(nil) != nil {
				p.logger.Info("the Kafka cluster answers again")
			}
			failingSince = time.Time{}
		case ctx.Err() != nil:
			return
		case failingSince.IsZero():
			failingSince = time.Now()
		case time.Since(failingSince) >= brokerDownAfter && p.brokerDown.Load() == nil:
			reason := fmt.Sprintf("no broker of the Kafka cluster answers (for %s): %v", time.Since(failingSince).Round(time.Second), err)
			p.brokerDown.Store(&reason)
			p.noteError(errors.New(reason))
			p.logger.Warn("the Kafka cluster does not answer", "err", err)
		}
	}
}

// NotReadyReason says why Ready is false ("" when it is true), for /readyz
// and the status API.
func (p *Pipeline) NotReadyReason() string {
	switch {
	case p.phase.Load() != phaseRunning:
		return p.Status().State
	case p.brokerDown.Load() != nil:
		return "broker unreachable: " + *p.brokerDown.Load()
	case p.circ.state() == circuitOpen:
		return StateCircuitOpen + ": the model server does not answer"
	case p.stalled.Load():
		return StateStalled
	}
	if id, _ := p.Member(); id == "" {
		return "not yet a member of consumer group " + p.cfg.Group
	}
	if since := p.unfinalSince.Load(); since != 0 {
		if d := time.Since(time.Unix(0, since)); d >= heldUpAfter {
			what := "commits"
			if p.eos {
				what = "transactions"
			}
			why := fmt.Sprintf("%s held up for %s: consumer group %s is rebalancing (it waits for every member, a crashed one until pipeline.session_timeout) or its coordinator does not answer",
				what, d.Round(time.Second), p.cfg.Group)
			p.mu.Lock()
			if p.lastErr != "" && time.Since(p.lastErrAt) < d {
				why += " (last error: " + p.lastErr + ")"
			}
			p.mu.Unlock()
			return why
		}
	}
	return ""
}
