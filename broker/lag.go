package broker

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// PartitionLag is how far a consumer group is behind on one partition.
type PartitionLag struct {
	Topic     string
	Partition int32
	// Committed is the group's committed offset, -1 if it has none.
	Committed int64
	// Start is the log start offset (earlier records were deleted by
	// retention).
	Start int64
	// End is the high watermark: the offset the next record gets.
	End int64
	// Lag is End minus Committed, or End minus Start without a commit.
	Lag int64
}

// Lag returns the group's lag per partition, sorted by topic and partition.
// It covers the partitions the group has committed to or its members are
// assigned, plus every partition of topics, so that the lag of a topic whose
// group has not started yet (or has not committed) is still reported.
func Lag(ctx context.Context, adm *kadm.Client, group string, topics ...string) ([]PartitionLag, error) {
	lags, err := adm.Lag(ctx, group)
	if err != nil {
		return nil, fmt.Errorf("group %q lag: %w", group, err)
	}
	seen := make(map[string]map[int32]bool)
	var out []PartitionLag
	// A group that never started (or was deleted) has no commits: not an
	// error, its lag is that of the topics asked for.
	if l, ok := lags[group]; ok && !errors.Is(l.Error(), kerr.GroupIDNotFound) {
		if err := l.Error(); err != nil {
			return nil, fmt.Errorf("group %q lag: %w", group, err)
		}
		for _, ml := range l.Lag.Sorted() {
			if ml.Err != nil {
				return nil, fmt.Errorf("group %q lag on %s/%d: %w", group, ml.Topic, ml.Partition, ml.Err)
			}
			pl := PartitionLag{
				Topic: ml.Topic, Partition: ml.Partition,
				Committed: ml.Commit.At, Start: ml.Start.Offset, End: ml.End.Offset, Lag: ml.Lag,
			}
			out = append(out, pl)
			if seen[pl.Topic] == nil {
				seen[pl.Topic] = make(map[int32]bool)
			}
			seen[pl.Topic][pl.Partition] = true
		}
	}

	if len(topics) > 0 {
		starts, err := adm.ListStartOffsets(ctx, topics...)
		if err != nil {
			return nil, fmt.Errorf("listing start offsets: %w", err)
		}
		ends, err := adm.ListEndOffsets(ctx, topics...)
		if err != nil {
			return nil, fmt.Errorf("listing end offsets: %w", err)
		}
		var errs []error
		ends.Each(func(e kadm.ListedOffset) {
			if seen[e.Topic][e.Partition] {
				return
			}
			if e.Err != nil {
				errs = append(errs, fmt.Errorf("end offset of %s/%d: %w", e.Topic, e.Partition, e.Err))
				return
			}
			s, ok := starts.Lookup(e.Topic, e.Partition)
			if !ok || s.Err != nil {
				errs = append(errs, fmt.Errorf("start offset of %s/%d: missing", e.Topic, e.Partition))
				return
			}
			out = append(out, PartitionLag{
				Topic: e.Topic, Partition: e.Partition,
				Committed: -1, Start: s.Offset, End: e.Offset, Lag: e.Offset - s.Offset,
			})
		})
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Topic != out[j].Topic {
			return out[i].Topic < out[j].Topic
		}
		return out[i].Partition < out[j].Partition
	})
	return out, nil
}
