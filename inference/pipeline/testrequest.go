package pipeline

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/infergate/infergate/store"
)

// HeaderTestRequest carries the correlation id of a test request; the
// pipeline copies request headers to the result or DLQ record, which is how
// the answer is found.
const HeaderTestRequest = "infergate.test-request"

// ErrBrokerUnavailable wraps what SendTestRequest could not do for want of
// the broker (listing offsets, producing).
var ErrBrokerUnavailable = errors.New("unavailable")

// DeadLettered is a test request answered by a DLQ record: the pipeline's
// error class and message.
type DeadLettered struct{ Class, Message string }

func (e *DeadLettered) Error() string {
	return fmt.Sprintf("dead-lettered (class %s): %s", e.Class, e.Message)
}

// TestTopics are the topics a test request goes to and is answered on.
type TestTopics struct{ Requests, Results, DLQ string }

// SendTestRequest produces rec to the requests topic with a correlation
// header and waits until ctx ends for the result (returned) or DLQ record
// (a *DeadLettered error) that carries it back. The end offsets of the
// results and DLQ topics are taken before producing, so the answer cannot
// be missed however fast it comes. watch makes a client with the caller's
// broker settings that consumes with the options given.
func SendTestRequest(ctx context.Context, adm *kadm.Client, producer *kgo.Client, watch func(...kgo.Opt) (*kgo.Client, error), t TestTopics, rec *store.Record) ([]byte, error) {
	var idb [12]byte
	_, _ = rand.Read(idb[:])
	id := hex.EncodeToString(idb[:])

	ends, err := adm.ListEndOffsets(ctx, t.Results, t.DLQ)
	if err != nil {
		return nil, fmt.Errorf("%w: listing end offsets: %w", ErrBrokerUnavailable, err)
	}
	from := map[string]map[int32]kgo.Offset{}
	var errs []error
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			errs = append(errs, fmt.Errorf("%s/%d: %w", o.Topic, o.Partition, o.Err))
			return
		}
		if from[o.Topic] == nil {
			from[o.Topic] = map[int32]kgo.Offset{}
		}
		from[o.Topic][o.Partition] = kgo.NewOffset().At(o.Offset)
	})
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%w: listing end offsets: %w", ErrBrokerUnavailable, err)
	}
	watcher, err := watch(
		kgo.ConsumePartitions(from),
		// Exactly-once results count once their transaction commits.
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxWait(100*time.Millisecond),
	)
	if err != nil {
		return nil, err
	}
	defer watcher.Close()

	// A request replayed from the DLQ carries the DLQ headers; the request
	// goes out as it first arrived.
	out := ReplayRecord(t.Requests, rec)
	out.Headers = slices.DeleteFunc(out.Headers, func(h kgo.RecordHeader) bool {
		return h.Key == HeaderReplayOf || h.Key == HeaderTestRequest
	})
	out.Headers = append(out.Headers, kgo.RecordHeader{Key: HeaderTestRequest, Value: []byte(id)})
	if err := producer.ProduceSync(ctx, out).FirstErr(); err != nil {
		return nil, fmt.Errorf("%w: producing the test request: %w", ErrBrokerUnavailable, err)
	}

	for {
		fs := watcher.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var found *kgo.Record
		fs.EachRecord(func(r *kgo.Record) {
			if found != nil {
				return
			}
			for _, h := range r.Headers {
				if h.Key == HeaderTestRequest && string(h.Value) == id {
					found = r
					return
				}
			}
		})
		if found == nil {
			continue
		}
		if found.Topic == t.Results {
			return found.Value, nil
		}
		return nil, deadLettered(found)
	}
}

func deadLettered(r *kgo.Record) *DeadLettered {
	var d DeadLettered
	for _, h := range r.Headers {
		switch h.Key {
		case HeaderErrorClass:
			d.Class = string(h.Value)
		case HeaderErrorMessage:
			d.Message = string(h.Value)
		}
	}
	return &d
}
