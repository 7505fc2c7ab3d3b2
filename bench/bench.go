package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/infergate/infergate/broker"
)

// Run performs one bench run and returns its report. The error is for runs
// that could not be made (setup failed); problems during a run (lost
// requests, produce errors) are in the report: see Report.OK.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	// A previous run in this process (--compare) leaves heap the runtime
	// has not returned yet; it would count as this appliance's memory.
	debug.FreeOSMemory()
	sys, err := startSystem(ctx, &cfg, logger)
	if err != nil {
		return nil, err
	}
	rep, runErr := runOn(ctx, cfg, sys, logger)
	if rep != nil && sys.shadow != nil {
		rep.Shadow = sys.shadow()
	}
	if err := sys.stop(); err != nil {
		if rep != nil {
			rep.Errors = append(rep.Errors, "stopping: "+err.Error())
		} else {
			runErr = errors.Join(runErr, err)
		}
	}
	return rep, runErr
}

func runOn(ctx context.Context, cfg Config, sys *system, logger *slog.Logger) (*Report, error) {
	run := seed()
	cc := broker.ClientConfig{Brokers: sys.brokers, Compression: broker.CompressionNone}
	// Every client gets options of its own: kgo's compression option is
	// rewritten in place by NewClient, so a shared slice races.
	opts := func(extra ...kgo.Opt) []kgo.Opt {
		o, err := cc.Opts()
		if err != nil {
			panic(err) // validated below, before the first use
		}
		return append(append(o, kgo.DialTimeout(cfg.Timeout)), extra...)
	}
	if _, err := cc.Opts(); err != nil {
		return nil, fmt.Errorf("bench: --brokers: %w", err)
	}
	admCl, err := kgo.NewClient(opts()...)
	if err != nil {
		return nil, fmt.Errorf("bench: kafka client: %w", err)
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)

	requests, results, dlq := sys.requests, sys.results, sys.dlq
	var bl *runner
	if cfg.Mode == ModeBaseline {
		// Topics of this run alone: the baseline's consumer group then reads
		// them from the start without meeting earlier runs' requests, and
		// the appliance's own pipeline never sees them.
		prefix := fmt.Sprintf("infergate_bench_%016x_", run)
		requests, results, dlq = prefix+"requests", prefix+"results", prefix+"dlq"
		tctx, cancel := context.WithTimeout(ctx, time.Minute)
		err := broker.EnsureTopics(tctx, adm, broker.DefaultTopics(requests, results, dlq, int32(cfg.Partitions))...)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("bench: creating the baseline's topics: %w", err)
		}
		defer func() {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			_, _ = adm.DeleteTopics(dctx, requests, results, dlq)
		}()
		if sys.grpcAddr == "" {
			return nil, errors.New("bench: the baseline needs a model server gRPC endpoint (--tfserving)")
		}
		b := &baseline{
			logger: logger, clientOpts: opts,
			requests: requests, results: results, dlq: dlq,
			group: prefix + "group", modelName: "demo", grpcAddr: sys.grpcAddr,
		}
		bl = start(ctx, b.run)
		defer bl.stop()
	}

	octx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	offsets, err := startOffsets(octx, adm, results, dlq)
	cancel()
	if err != nil {
		return nil, sys.unreachable(cfg.Timeout, fmt.Sprintf("list the end offsets of %s and %s", results, dlq), err)
	}

	prodCl, err := kgo.NewClient(opts(
		kgo.DefaultProduceTopic(requests),
		kgo.ProducerLinger(cfg.linger()),
		kgo.ProducerBatchMaxBytes(1<<20),
		kgo.MaxBufferedRecords(max(cfg.Window, 100000)),
	)...)
	if err != nil {
		return nil, fmt.Errorf("bench: producer: %w", err)
	}
	defer prodCl.Close()
	// Metadata before the first slot, so the first requests do not pay for it.
	mctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	_, err = adm.ListEndOffsets(mctx, requests)
	cancel()
	if err != nil {
		return nil, sys.unreachable(cfg.Timeout, "list the end offsets of "+requests, err)
	}
	if err := prodCl.Ping(ctx); err != nil {
		return nil, fmt.Errorf("bench: producer: %w", err)
	}

	consCl, err := kgo.NewClient(opts(
		kgo.ConsumePartitions(offsets),
		kgo.FetchMaxWait(100*time.Millisecond),
		kgo.FetchMaxBytes(32<<20),
	)...)
	if err != nil {
		return nil, fmt.Errorf("bench: consumer: %w", err)
	}
	defer consCl.Close()

	rep := &Report{
		Mode: cfg.Mode, ModelPath: cfg.ModelPath, ModelFile: cfg.Model, Rate: "max", TargetRPS: cfg.Rate,
		DurationS: cfg.Duration.Seconds(), WarmupS: cfg.Warmup.Seconds(),
		SelfContained: len(cfg.Brokers) == 0, Brokers: strings.Join(sys.brokers, ","),
		ReadyMS: float64(sys.ready.Microseconds()) / 1000,
		Linger:  cfg.linger().String(),
	}
	if ac := sys.cfg; ac != nil {
		rep.Partitions = ac.Topics.Partitions
		rep.Durability = ac.Broker.Durability
		rep.Compression = ac.Broker.Compression
		rep.MaxBatch, rep.InFlight = ac.Pipeline.MaxBatchSize, ac.Pipeline.MaxInflightBatches
		rep.MaxWait = ac.Pipeline.MaxBatchWait.String()
	}
	if cfg.Rate > 0 {
		rep.Rate = strconv.FormatFloat(cfg.Rate, 'f', -1, 64)
	}
	if cfg.Mode == ModeBaseline {
		rep.ModelPath = ModelPathGRPC // the baseline always calls Predict over gRPC
	}

	// Idle memory: the appliance is ready and has nothing to do yet. A
	// moment's pause lets start-up garbage be collected as it would be.
	var idle procSample
	if sys.proc != nil {
		if err := sleepCtx(ctx, time.Second); err != nil {
			return nil, err
		}
		if idle, err = sys.proc.sample(); err != nil {
			return nil, err
		}
	}

	pay := newPayloads(cfg.Payloads, run, cfg.BadEvery)
	if cfg.Model != "" {
		row, err := modelRow(cfg.Model)
		if err != nil {
			return nil, err
		}
		pay = newModelPayloads(cfg.Payloads, run, cfg.BadEvery, row)
	}
	gen := newGenerator(prodCl, requests, run, pay)
	begin := time.Now().Add(20 * time.Millisecond)
	measureFrom := begin.Add(cfg.Warmup)
	measureTo := measureFrom.Add(cfg.Duration)
	rep.Started = begin.UTC().Format(time.RFC3339)
	col := &collector{
		cl: consCl, run: run, resultTopic: results, dlqTopic: dlq,
		start: begin, measureFrom: measureFrom, measureTo: measureTo,
		sent:     gen.handed.Load,
		progress: make(chan struct{}, 1),
		total:    newHist(), interval: newHist(), encoded: newHist(),
	}
	colCtx, stopCol := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { col.loop(colCtx) })

	// Resource sampling: CPU at the window's edges, RSS and the machine's
	// CPU every 250 ms.
	smp := &sampler{src: sys.proc}
	smpCtx, stopSmp := context.WithCancel(ctx)
	wg.Go(func() { smp.loop(smpCtx, measureFrom, measureTo) })

	// Model calls and rows at the window's edges: the mean batch size.
	var calls [2]uint64
	var rows [2]float64
	if sys.metrics != nil {
		wg.Go(func() {
			for i, at := range []time.Time{measureFrom, measureTo} {
				if sleepUntil(smpCtx, at) != nil {
					return
				}
				calls[i], rows[i] = batchRows(sys.metrics)
			}
		})
	}

	prgCtx, stopPrg := context.WithCancel(ctx)
	if cfg.Progress != nil {
		wg.Go(func() { progress(prgCtx, cfg, gen, col, smp, begin, measureFrom) })
	}

	if cfg.Rate > 0 {
		gen.runFixed(ctx, newSchedule(begin, cfg.Rate, cfg.Warmup+cfg.Duration))
	} else {
		if err := sleepUntil(ctx, begin); err == nil {
			gen.runMax(ctx, measureTo, int64(cfg.Window), col.completed, col.progress)
		}
	}

	// Drain: every request acknowledged, then every output seen, or the
	// drain period is over.
	drainEnd := time.Now().Add(cfg.Drain)
	fctx, cancel := context.WithDeadline(ctx, drainEnd)
	if err := prodCl.Flush(fctx); err != nil {
		rep.Errors = append(rep.Errors, fmt.Sprintf("flushing requests: %v", err))
	}
	cancel()
	for col.completed() < gen.acked.Load() && time.Now().Before(drainEnd) && ctx.Err() == nil {
		if bl != nil && isDone(bl) {
			break
		}
		_ = sleepCtx(ctx, 10*time.Millisecond)
	}
	stopPrg()
	stopSmp()
	stopCol()
	wg.Wait()

	rep.Sent = gen.acked.Load()
	rep.Results, rep.DLQ, rep.Duplicates = col.results.Load(), col.dlq.Load(), col.dups.Load()
	rep.Lost = rep.Sent - rep.Results - rep.DLQ
	rep.ThroughputRPS = float64(col.windowN.Load()) / cfg.Duration.Seconds()
	col.mu.Lock()
	rep.Percentiles = summarize(col.total)
	enc := summarize(col.encoded)
	rep.EncodedP50MS, rep.EncodedP99MS = enc.P50, enc.P99
	rep.Curve = curve(col.total)
	rep.Series = col.series
	if col.err != nil {
		rep.Errors = append(rep.Errors, col.err.Error())
	}
	col.mu.Unlock()
	lag := summarize(gen.lag)
	rep.SendLagP99MS, rep.SendLagMaxMS = lag.P99, lag.Max

	if err := gen.produceErr(); err != nil {
		rep.Errors = append(rep.Errors, fmt.Sprintf("%d requests failed: %v", gen.failed.Load(), err))
	}
	if rep.Lost > 0 {
		rep.Errors = append(rep.Errors, fmt.Sprintf("%d requests lost: no result or DLQ record within --drain %s", rep.Lost, cfg.Drain))
	}
	if rep.Lost < 0 {
		rep.Errors = append(rep.Errors, fmt.Sprintf("%d more outputs than acknowledged requests", -rep.Lost))
	}
	if bl != nil && isDone(bl) && bl.err != nil {
		rep.Errors = append(rep.Errors, "baseline: "+bl.err.Error())
	}
	if ctx.Err() != nil {
		rep.Errors = append(rep.Errors, "interrupted: "+ctx.Err().Error())
	}
	if n := calls[1] - calls[0]; calls[1] > 0 && n > 0 {
		rep.ModelCalls = n
		rep.MeanBatch = (rows[1] - rows[0]) / float64(n)
	}
	rep.OtherCores = smp.otherCores(measureFrom, measureTo)
	for i := range rep.Series {
		end := begin.Add(time.Duration(rep.Series[i].T * float64(time.Second)))
		rep.Series[i].OtherCores = smp.otherCores(end.Add(-time.Second), end)
	}
	if sys.proc != nil {
		smp.fill(rep, idle)
		if n := col.windowN.Load(); n > 0 {
			rep.CPUMicrosPerRequest = rep.CPUSeconds * 1e6 / float64(n)
		}
	}
	return rep, nil
}

func isDone(r *runner) bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// progress prints a line per second on cfg.Progress.
func progress(ctx context.Context, cfg Config, gen *generator, col *collector, smp *sampler, begin, measureFrom time.Time) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var lastSent, lastDone int64
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			sent, done := gen.handed.Load(), col.completed()
			col.mu.Lock()
			p99 := usToMS(col.total.ValueAtPercentile(99))
			col.mu.Unlock()
			fmt.Fprintln(cfg.Progress, progressLine(now.Sub(begin).Round(time.Second), now.Before(measureFrom),
				sent, done, col.dlq.Load(), sent-lastSent, done-lastDone, p99, mb(smp.lastRSS())))
			lastSent, lastDone = sent, done
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func sleepUntil(ctx context.Context, at time.Time) error { return sleepCtx(ctx, time.Until(at)) }

// unreachable names the broker a wait before the run was for and, when it
// timed out, the --timeout it waited: a broker that is not there must not
// read as a bare "context deadline exceeded".
func (sys *system) unreachable(timeout time.Duration, what string, err error) error {
	at := strings.Join(sys.brokers, ",")
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("bench: gave up after %s (--timeout) waiting for the broker at %s to %s", timeout, at, what)
	}
	return fmt.Errorf("bench: broker at %s: could not %s: %w", at, what, err)
}
