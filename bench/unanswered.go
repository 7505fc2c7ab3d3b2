package bench

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/infergate/infergate/broker"
	"github.com/infergate/infergate/ingress"
)

// Unanswered is where the acknowledged requests that no answer reached at
// their device are, looked up in Kafka after the drain (IngressReport.Lost
// counts them at the devices): an answer produced but not delivered (the
// device's connection was closed by nats-server, and a clean session's
// pending answers go with it), a request in Kafka still without its
// result, or a request not in Kafka at all — still in the inbox, or lost.
type Unanswered struct {
	// Acknowledged requests not answered at their device.
	Checked int64 `json:"checked"`
	// Of those, on a device whose connection nats-server closed before
	// the bench's end.
	OnClosedDevice int64 `json:"on_closed_device"`
	// With a result (or a DLQ record) in Kafka: answered, not delivered.
	WithResult int64 `json:"with_result"`
	// In the requests topic, no result (yet).
	RequestOnly int64 `json:"request_only"`
	// Not in the requests topic: still in the inbox, or lost.
	NotInKafka int64 `json:"not_in_kafka"`
	// The lookup itself failed (nothing above is then complete).
	Err string `json:"error,omitempty"`
}

// unansweredKey is a request of a device by its request_id (the device's
// sequence number).
type unansweredKey struct {
	device string
	seq    int64
}

// classify looks up each of want (acknowledged, unanswered) in the
// requests, results and DLQ topics, read from their start to their end
// offsets at the call.
func classify(ctx context.Context, sys *system, want map[unansweredKey]bool) (*Unanswered, error) {
	u := &Unanswered{Checked: int64(len(want))}
	for _, closed := range want {
		if closed {
			u.OnClosedDevice++
		}
	}
	if len(want) == 0 {
		return u, nil
	}
	inRequests, withOutcome, err := scanTopics(ctx, sys, want)
	if err != nil {
		return u, err
	}
	for k := range want {
		switch {
		case withOutcome[k]:
			u.WithResult++
		case inRequests[k]:
			u.RequestOnly++
		default:
			u.NotInKafka++
		}
	}
	return u, nil
}

// scanTopics reads the requests topic and the results and DLQ topics up to
// their current end offsets and returns which of want are in each.
func scanTopics(ctx context.Context, sys *system, want map[unansweredKey]bool) (inRequests, withOutcome map[unansweredKey]bool, err error) {
	opts, err := broker.ClientConfig{Brokers: sys.brokers, Compression: broker.CompressionNone}.Opts()
	if err != nil {
		return nil, nil, err
	}
	topics := []string{sys.requests, sys.results}
	if sys.dlq != "" {
		topics = append(topics, sys.dlq)
	}
	cl, err := kgo.NewClient(append(opts, kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		return nil, nil, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topics...)
	if err != nil {
		return nil, nil, fmt.Errorf("end offsets: %w", err)
	}
	left := map[string]map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			if left[o.Topic] == nil {
				left[o.Topic] = map[int32]int64{}
			}
			left[o.Topic][o.Partition] = o.Offset
		}
	})
	inRequests, withOutcome = map[unansweredKey]bool{}, map[unansweredKey]bool{}
	for len(left) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil, nil, fmt.Errorf("reading %v: %w", topics, ctx.Err())
		}
		fs.EachRecord(func(r *kgo.Record) {
			if k, ok := requestOf(r); ok {
				if _, wanted := want[k]; wanted {
					if r.Topic == sys.requests {
						inRequests[k] = true
					} else {
						withOutcome[k] = true
					}
				}
			}
			if end, ok := left[r.Topic][r.Partition]; ok && r.Offset+1 >= end {
				delete(left[r.Topic], r.Partition)
				if len(left[r.Topic]) == 0 {
					delete(left, r.Topic)
				}
			}
		})
	}
	return inRequests, withOutcome, nil
}

// requestOf is the device and request_id of a request, result or DLQ
// record of a bench device.
func requestOf(r *kgo.Record) (unansweredKey, bool) {
	device := string(r.Key)
	for _, h := range r.Headers {
		if h.Key == ingress.HeaderDevice {
			device = string(h.Value)
		}
	}
	id, ok := jsonField(r.Value, `"request_id":"`, '"')
	if !ok || device == "" {
		return unansweredKey{}, false
	}
	seq, err := strconv.ParseInt(string(id), 10, 64)
	if err != nil {
		return unansweredKey{}, false
	}
	return unansweredKey{device: device, seq: seq}, true
}
