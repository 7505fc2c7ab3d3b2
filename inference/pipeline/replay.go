package pipeline

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/infergate/infergate/store"
)

// sourcePartitioner places results and DLQ records: by the key's hash (as
// Kafka's default partitioner does) when there is a key, so keyed consumers
// find a key's results in one partition in order; else in the partition with
// the number of the request's partition (carried in Record.Partition), so
// the results of one request partition stay in order too.
type sourcePartitioner struct{}

func (sourcePartitioner) ForTopic(topic string) kgo.TopicPartitioner {
	return sourceTopicPartitioner{key: kgo.StickyKeyPartitioner(nil).ForTopic(topic)}
}

type sourceTopicPartitioner struct{ key kgo.TopicPartitioner }

func (sourceTopicPartitioner) RequiresConsistency(*kgo.Record) bool { return true }

func (tp sourceTopicPartitioner) Partition(r *kgo.Record, n int) int {
	if r.Key != nil {
		return tp.key.Partition(r, n)
	}
	return int(max(r.Partition, 0)) % n
}

// replayStripped are the headers the pipeline adds to a DLQ record; a replay
// removes them so the request looks as it did before it failed.
var replayStripped = map[string]bool{
	HeaderErrorClass: true, HeaderErrorMessage: true, HeaderSourceTopic: true, HeaderSourcePartition: true,
	HeaderSourceOffset: true, HeaderAttempts: true, HeaderFailedAt: true, HeaderReplayOf: true,
	HeaderTruncated: true, HeaderOriginalSize: true, HeaderDLQID: true, HeaderDLQModel: true,
}

// ReplayRecord is the request record a replay of rec produces to topic: the
// original key, value and headers, without the DLQ headers, plus replay.of
// naming the store record.
func ReplayRecord(topic string, rec *store.Record) *kgo.Record {
	hs := make([]kgo.RecordHeader, 0, len(rec.Headers)+1)
	for _, h := range rec.Headers {
		if !replayStripped[h.Key] {
			hs = append(hs, kgo.RecordHeader{Key: h.Key, Value: h.Value})
		}
	}
	hs = append(hs, kgo.RecordHeader{Key: HeaderReplayOf, Value: []byte(rec.ID)})
	return &kgo.Record{Topic: topic, Key: rec.Key, Value: rec.Value, Headers: hs}
}

// Replay produces recs to topic (normally the requests topic) and waits
// until the broker acknowledged them all. The caller marks them replayed in
// the store afterwards. The error names every record that was not produced.
func Replay(ctx context.Context, cl *kgo.Client, topic string, recs []*store.Record) error {
	out := make([]*kgo.Record, len(recs))
	ids := make(map[*kgo.Record]string, len(recs))
	for i, r := range recs {
		out[i] = ReplayRecord(topic, r)
		ids[out[i]] = r.ID
	}
	var errs []error
	for _, res := range cl.ProduceSync(ctx, out...) {
		if res.Err != nil {
			errs = append(errs, fmt.Errorf("replaying %s: %w", ids[res.Record], res.Err))
		}
	}
	return errors.Join(errs...)
}
