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
	// OwnerMemberID is the member the group assigned the partition to, ""
	// when no member holds it (an empty group, a rebalance in progress).
	OwnerMemberID string
	// Owner names that member: its static instance id, else its member id.
	Owner string
}

// Member is one member of a consumer group as the coordinator describes it.
type Member struct {
	MemberID   string `json:"member_id"`
	InstanceID string `json:"instance_id,omitempty"`
	ClientID   string `json:"client_id"`
	Host       string `json:"host"`
}

// Name is the instance id of a static member, else the member id.
func (m Member) Name() string {
	if m.InstanceID != "" {
		return m.InstanceID
	}
	return m.MemberID
}

// GroupLag is a consumer group's state, members and lag per partition.
type GroupLag struct {
	Group string
	// State is the coordinator's (Stable, PreparingRebalance,
	// CompletingRebalance, Empty, Dead), "" when the group is unknown.
	State      string
	Members    []Member // sorted by member id
	Partitions []PartitionLag
}

// Lag returns the group's lag per partition, sorted by topic and partition.
// It covers the partitions the group has committed to or its members are
// assigned, plus every partition of topics, so that the lag of a topic whose
// group has not started yet (or has not committed) is still reported.
func Lag(ctx context.Context, adm *kadm.Client, group string, topics ...string) ([]PartitionLag, error) {
	gl, err := Group(ctx, adm, group, topics...)
	return gl.Partitions, err
}

// Group describes group (state and members) and returns its lag as Lag
// does, each partition with the member that owns it.
func Group(ctx context.Context, adm *kadm.Client, group string, topics ...string) (GroupLag, error) {
	gl := GroupLag{Group: group}
	lags, err := adm.Lag(ctx, group)
	if err != nil {
		return gl, fmt.Errorf("group %q lag: %w", group, err)
	}
	seen := make(map[string]map[int32]bool)
	var out []PartitionLag
	// A group that never started (or was deleted) has no commits: not an
	// error, its lag is that of the topics asked for.
	if l, ok := lags[group]; ok && !errors.Is(l.Error(), kerr.GroupIDNotFound) {
		if err := l.Error(); err != nil {
			return gl, fmt.Errorf("group %q lag: %w", group, err)
		}
		gl.State = l.State
		for _, m := range l.Members {
			gl.Members = append(gl.Members, member(&m))
		}
		sort.Slice(gl.Members, func(i, j int) bool { return gl.Members[i].MemberID < gl.Members[j].MemberID })
		for _, ml := range l.Lag.Sorted() {
			if ml.Err != nil {
				return gl, fmt.Errorf("group %q lag on %s/%d: %w", group, ml.Topic, ml.Partition, ml.Err)
			}
			pl := PartitionLag{
				Topic: ml.Topic, Partition: ml.Partition,
				Committed: ml.Commit.At, Start: ml.Start.Offset, End: ml.End.Offset, Lag: ml.Lag,
			}
			if ml.Member != nil {
				m := member(ml.Member)
				pl.OwnerMemberID, pl.Owner = m.MemberID, m.Name()
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
			return gl, fmt.Errorf("listing start offsets: %w", err)
		}
		ends, err := adm.ListEndOffsets(ctx, topics...)
		if err != nil {
			return gl, fmt.Errorf("listing end offsets: %w", err)
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
			return gl, err
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Topic != out[j].Topic {
			return out[i].Topic < out[j].Topic
		}
		return out[i].Partition < out[j].Partition
	})
	gl.Partitions = out
	return gl, nil
}

func member(m *kadm.DescribedGroupMember) Member {
	out := Member{MemberID: m.MemberID, ClientID: m.ClientID, Host: m.ClientHost}
	if m.InstanceID != nil {
		out.InstanceID = *m.InstanceID
	}
	return out
}
