package appliance

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/infergate/infergate/inference/demo"
)

// demoSensors is how many simulated sensors share the demo traffic; each is
// a record key, so their readings spread over partitions and keep their
// order.
const demoSensors = 8

// consumeCommand is the command that shows this appliance's results: the
// client commands find it through the data dir, so one started on another
// data dir than the default is named.
func (a *Appliance) consumeCommand() string {
	if filepath.Clean(a.cfg.DataDir) == filepath.Clean(defaultDataDir()) {
		return "infergate consume"
	}
	dir := a.cfg.DataDir
	if strings.ContainsAny(dir, " \t'\"$\\") {
		dir = "'" + strings.ReplaceAll(dir, "'", `'\''`) + "'"
	}
	return "infergate consume --data-dir " + dir
}

// demoComponent feeds synthetic sensor readings to the requests topic at
// demo.rate and logs a one-line summary of what comes back every
// demo.summary_interval, so `infergate run --demo` visibly works.
func (a *Appliance) demoComponent() *component {
	var (
		producer, watcher *kgo.Client
		stats             demoStats
	)
	return &component{
		name: "demo",
		start: func(context.Context) error {
			var err error
			if producer, err = a.kafkaClient(kgo.DefaultProduceTopic(a.cfg.Pipeline.RequestsTopic)); err != nil {
				return fmt.Errorf("demo: %w", err)
			}
			watcher, err = a.kafkaClient(
				kgo.ConsumeTopics(a.cfg.Pipeline.ResultsTopic, a.cfg.Pipeline.DLQTopic),
				kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()),
				kgo.FetchIsolationLevel(kgo.ReadCommitted()),
			)
			if err != nil {
				producer.Close()
				return fmt.Errorf("demo: %w", err)
			}
			a.logger.Info("demo traffic on: synthetic sensor readings go to the requests topic",
				"topic", a.cfg.Pipeline.RequestsTopic, "rate_per_s", a.cfg.Demo.Rate, "see_results", a.consumeCommand())
			return nil
		},
		run: func(ctx context.Context) error {
			var wg sync.WaitGroup
			wg.Add(2)
			go func() { defer wg.Done(); a.demoWatch(ctx, watcher, &stats) }()
			go func() { defer wg.Done(); a.demoSummaries(ctx, &stats) }()
			a.demoProduce(ctx, producer, &stats)
			wg.Wait()
			return nil
		},
		stop: func() error {
			if producer != nil {
				// Records still buffered are dropped: demo traffic is
				// synthetic and the broker may already be gone.
				producer.Close()
			}
			if watcher != nil {
				watcher.Close()
			}
			return nil
		},
	}
}

type demoStats struct {
	sent, failed, results, dlq, anomalies atomic.Int64
	lastScore                             atomic.Value // float64
}

// demoProduce sends at the configured rate, catching up after a stall
// rather than bursting without bound (at most one second's worth at once).
// demo.rate and demo.anomaly_ratio changed from the dashboard apply from
// the next tick.
func (a *Appliance) demoProduce(ctx context.Context, cl *kgo.Client, st *demoStats) {
	gen := demo.NewGenerator(time.Now().UnixNano())
	cur := *a.live.demo.Load()
	gen.SetAnomalyRatio(cur.AnomalyRatio)
	rate := cur.Rate
	tick := time.NewTicker(demoStep(rate))
	defer tick.Stop()
	run := strconv.FormatInt(time.Now().Unix(), 36)
	start := time.Now()
	var n, seq int64 // sent at this rate; sent in all (request ids)
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			if d := *a.live.demo.Load(); d != cur {
				if d.AnomalyRatio != cur.AnomalyRatio {
					gen.SetAnomalyRatio(d.AnomalyRatio)
				}
				if d.Rate != cur.Rate {
					rate, start, n = d.Rate, now, 0
					tick.Reset(demoStep(rate))
				}
				cur = d
			}
			due := int64(rate * now.Sub(start).Seconds())
			if due-n > int64(rate)+1 {
				n = due - int64(rate) - 1 // drop what a long stall owes
			}
			for ; n < due; n, seq = n+1, seq+1 {
				features, _ := gen.Reading()
				value := demo.AppendRequest(nil, "demo-"+run+"-"+strconv.FormatInt(seq, 10), features)
				key := []byte("sensor-" + strconv.FormatInt(seq%demoSensors, 10))
				cl.Produce(ctx, &kgo.Record{Key: key, Value: value}, func(_ *kgo.Record, err error) {
					if err != nil {
						st.failed.Add(1)
						return
					}
					st.sent.Add(1)
				})
			}
		}
	}
}

// demoStep is the ticker period of a rate: one request a tick, within 10ms
// and 1s.
func demoStep(rate float64) time.Duration {
	step := time.Duration(float64(time.Second) / rate)
	return min(max(step, 10*time.Millisecond), time.Second)
}

// demoWatch counts results and dead letters as they arrive.
func (a *Appliance) demoWatch(ctx context.Context, cl *kgo.Client, st *demoStats) {
	for ctx.Err() == nil {
		fetches := cl.PollRecords(ctx, 1000)
		fetches.EachRecord(func(r *kgo.Record) {
			if r.Topic == a.cfg.Pipeline.DLQTopic {
				st.dlq.Add(1)
				return
			}
			st.results.Add(1)
			if score, ok := demo.Score(r.Value); ok {
				st.lastScore.Store(score)
				if score > demo.AnomalyThreshold {
					st.anomalies.Add(1)
				}
			}
		})
	}
}

func (a *Appliance) demoSummaries(ctx context.Context, st *demoStats) {
	every := a.cfg.Demo.SummaryInterval
	tick := time.NewTicker(every)
	defer tick.Stop()
	var lastResults int64
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		results := st.results.Load()
		args := []any{
			"sent", st.sent.Load(),
			"results", results,
			"results_per_s", fmt.Sprintf("%.1f", float64(results-lastResults)/every.Seconds()),
			"dlq", st.dlq.Load(),
			"anomalies", st.anomalies.Load(),
		}
		if s, ok := st.lastScore.Load().(float64); ok {
			args = append(args, "last_score", fmt.Sprintf("%.3f", s))
		}
		if f := st.failed.Load(); f > 0 {
			args = append(args, "send_failures", f)
		}
		lastResults = results
		a.logger.Info("demo", args...)
	}
}
