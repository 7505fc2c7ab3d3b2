package bench

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/infergate/infergate/broker"
	"github.com/infergate/infergate/inference/demo"
)

// kafkaLoad produces requests straight to the appliance's requests topic at
// a fixed rate, beside the devices (`bench --ingress … --kafka-load N`): the
// bulk traffic of Kafka producers that shares the pipeline, the results
// topic and the answering group's fetches with the devices' requests. Its
// results carry no ingress reply header, so nobody is answered for them.
type kafkaLoad struct {
	cl       *kgo.Client
	produced atomic.Int64
	failed   atomic.Int64
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// startKafkaLoad produces rate requests/s from begin until stopped, what
// is due every 10 ms.
func startKafkaLoad(ctx context.Context, sys *system, rate float64, begin time.Time) (*kafkaLoad, error) {
	opts, err := broker.ClientConfig{Brokers: sys.brokers, Compression: broker.CompressionNone}.Opts()
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(append(opts, kgo.DefaultProduceTopic(sys.requests), kgo.ProducerLinger(time.Millisecond),
		kgo.MaxBufferedRecords(max(int(rate), 10000)))...)
	if err != nil {
		return nil, fmt.Errorf("bench: --kafka-load producer: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	l := &kafkaLoad{cl: cl, cancel: cancel}
	l.wg.Go(func() {
		if sleepUntil(ctx, begin) != nil {
			return
		}
		const tick = 10 * time.Millisecond
		t := time.NewTicker(tick)
		defer t.Stop()
		var seq int64
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			// On schedule even when ticks are late or dropped.
			for due := int64(rate * time.Since(begin).Seconds()); seq < due; {
				seq++
				v := demo.AppendRequest(nil, "bulk-"+strconv.FormatInt(seq, 10), fixedReading)
				// Not ctx: what is buffered at stop is flushed, not failed.
				cl.Produce(context.Background(), &kgo.Record{Value: v}, func(_ *kgo.Record, err error) {
					if err != nil {
						l.failed.Add(1)
						return
					}
					l.produced.Add(1)
				})
			}
		}
	})
	return l, nil
}

// stop stops producing and waits for what was produced.
func (l *kafkaLoad) stop() {
	l.cancel()
	l.wg.Wait()
	fctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = l.cl.Flush(fctx)
	l.cl.Close()
}
