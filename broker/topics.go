package broker

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TopicSpec is a topic infergate needs, with its retention.
type TopicSpec struct {
	Name       string
	Partitions int32
	// ReplicationFactor 0 uses the cluster's default.
	ReplicationFactor int16
	// RetentionMs is retention.ms: records older than this are deleted.
	// 0 leaves the topic's setting alone, -1 keeps records forever.
	RetentionMs int64
	// RetentionBytes is retention.bytes, per partition: the oldest records
	// are deleted once a partition holds more. 0 leaves the setting alone,
	// -1 means no limit.
	RetentionBytes int64
	// Configs are further topic configs, applied as given.
	Configs map[string]*string
}

// Retention defaults of DefaultTopics: a time limit and a size limit per
// topic, so that a stopped pipeline or a runaway producer fills a known amount
// of disk instead of the whole disk. The sizes are budgets for the whole topic,
// split evenly over its partitions (Kafka's retention.bytes is per partition),
// so changing the partition count does not multiply the disk used.
//
// The sizes are small on purpose: after a crash the embedded broker replays
// every retained segment and holds it in memory while it does (measured: ~1 GiB
// peak RSS for 1 GiB retained; after a clean close only ~0.2 GiB, see
// docs/broker.md). 896 MiB in all keeps a crash restart within about 1 GiB of
// RAM.
const (
	DefaultRequestsRetention  = 24 * time.Hour
	DefaultRequestsTopicBytes = 512 << 20
	DefaultResultsRetention   = 24 * time.Hour
	DefaultResultsTopicBytes  = 256 << 20
	DefaultDLQRetention       = 7 * 24 * time.Hour
	DefaultDLQTopicBytes      = 128 << 20
	// DefaultSegmentRoll (segment.ms) rolls segments hourly, so that time retention (which
	// deletes whole segments, never the active one on a Kafka cluster)
	// is accurate to the hour even on a quiet topic.
	DefaultSegmentRoll = time.Hour
)

// DefaultTopics returns the appliance's three topics with the retention
// defaults above. The DLQ keeps records longer (an operator inspects and
// replays them) but gets the smallest budget: a flood of bad requests must not
// crowd out the requests topic, and every DLQ record is kept in the store too.
func DefaultTopics(requests, results, dlq string, partitions int32) []TopicSpec {
	mk := func(name string, retention time.Duration, topicBytes int64) TopicSpec {
		perPart, segment := PartitionBytes(topicBytes, partitions)
		seg := strconv.FormatInt(segment, 10)
		segMs := strconv.FormatInt(DefaultSegmentRoll.Milliseconds(), 10)
		return TopicSpec{
			Name: name, Partitions: partitions,
			RetentionMs: retention.Milliseconds(), RetentionBytes: perPart,
			Configs: map[string]*string{"segment.bytes": &seg, "segment.ms": &segMs},
		}
	}
	return []TopicSpec{
		mk(requests, DefaultRequestsRetention, DefaultRequestsTopicBytes),
		mk(results, DefaultResultsRetention, DefaultResultsTopicBytes),
		mk(dlq, DefaultDLQRetention, DefaultDLQTopicBytes),
	}
}

// PartitionBytes splits a topic's byte budget over its partitions (at least
// 1 MiB each) and picks a segment size of an eighth of a partition's share (1 to 64 MiB): retention
// deletes whole segments, so a partition holds up to one segment more than its
// share, and smaller segments keep that overshoot small.
func PartitionBytes(topicBytes int64, partitions int32) (perPartition, segment int64) {
	perPartition = max(topicBytes/int64(max(partitions, 1)), 1<<20)
	segment = min(max(perPartition/8, 1<<20), 64<<20)
	return perPartition, segment
}

// configs returns every topic config the spec sets.
func (s TopicSpec) configs() map[string]*string {
	out := make(map[string]*string, len(s.Configs)+2)
	for k, v := range s.Configs {
		out[k] = v
	}
	if s.RetentionMs != 0 {
		v := strconv.FormatInt(s.RetentionMs, 10)
		out["retention.ms"] = &v
	}
	if s.RetentionBytes != 0 {
		v := strconv.FormatInt(s.RetentionBytes, 10)
		out["retention.bytes"] = &v
	}
	return out
}

func (s TopicSpec) validate() error {
	switch {
	case s.Name == "":
		return errors.New("topic name is empty")
	case s.Partitions < 1:
		return fmt.Errorf("topic %q: partitions must be at least 1, got %d", s.Name, s.Partitions)
	case s.RetentionMs < -1:
		return fmt.Errorf("topic %q: retention.ms must be -1, 0 or positive, got %d", s.Name, s.RetentionMs)
	case s.RetentionBytes < -1:
		return fmt.Errorf("topic %q: retention.bytes must be -1, 0 or positive, got %d", s.Name, s.RetentionBytes)
	}
	return nil
}

// EnsureTopics creates the topics that are missing and brings the configs of
// existing ones (retention and Configs) to the spec. It is meant to run at
// every start: the embedded broker applies its seed options only to a new
// data dir, and an operator may have changed retention settings since.
//
// A topic that exists with fewer partitions than its spec is reported with an
// error wrapping ErrFewerPartitions (after every other topic was handled), not
// repaired: adding partitions remaps keys and breaks per-key ordering. More
// partitions than the spec are accepted.
func EnsureTopics(ctx context.Context, adm *kadm.Client, specs ...TopicSpec) error {
	if len(specs) == 0 {
		return nil
	}
	names := make([]string, 0, len(specs))
	for _, s := range specs {
		if err := s.validate(); err != nil {
			return err
		}
		names = append(names, s.Name)
	}

	// kadm answers metadata from a 5 s cache, which still says "unknown
	// topic" right after a create; asking for authorized operations is the
	// one way through kadm to get a fresh answer (and refresh the cache for
	// the client's next calls).
	fresh := kadm.WithAuthorizedOps(ctx)
	details, err := adm.ListTopics(fresh, names...)
	if err != nil {
		return fmt.Errorf("listing topics: %w", err)
	}

	var errs []error
	var existing []TopicSpec
	for _, s := range specs {
		d, ok := details[s.Name]
		if ok && d.Err == nil {
			existing = append(existing, s)
			continue
		}
		if ok && !errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
			errs = append(errs, fmt.Errorf("topic %q: %w", s.Name, d.Err))
			continue
		}
		rf := s.ReplicationFactor
		if rf == 0 {
			rf = -1
		}
		resp, err := adm.CreateTopic(ctx, s.Partitions, rf, s.configs(), s.Name)
		if err == nil {
			err = resp.Err
		}
		switch {
		case err == nil:
		case errors.Is(err, kerr.TopicAlreadyExists):
			// Another instance created it between our list and create.
			existing = append(existing, s)
		default:
			errs = append(errs, fmt.Errorf("creating topic %q (%d partitions): %w", s.Name, s.Partitions, withMessage(err, resp.ErrMessage)))
		}
	}
	// List everything again, fresh: a topic someone else created just now is
	// not in details, and the client's cache must learn the created topics
	// before its next produce or commit.
	details, err = adm.ListTopics(fresh, names...)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("listing topics: %w", err))...)
	}
	if len(existing) == 0 {
		return errors.Join(errs...)
	}
	existingNames := make([]string, 0, len(existing))
	for _, s := range existing {
		existingNames = append(existingNames, s.Name)
	}
	described, err := adm.DescribeTopicConfigs(ctx, existingNames...)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("describing topic configs: %w", err))...)
	}
	var mismatches []error
	for _, s := range existing {
		if err := alterIfDifferent(ctx, adm, s, described); err != nil {
			errs = append(errs, err)
		}
		if have := int32(len(details[s.Name].Partitions)); have < s.Partitions {
			mismatches = append(mismatches, fmt.Errorf("topic %q has %d partitions, configured %d: "+
				"increase them yourself if remapping keys is acceptable (e.g. kadm/kafka-topics --alter), or lower the setting: %w",
				s.Name, have, s.Partitions, ErrFewerPartitions))
		}
	}
	return errors.Join(append(errs, mismatches...)...)
}

// alterIfDifferent sets the configs of s whose current value differs. Only
// changes are sent so that a restart does not rewrite configs needlessly on
// an external cluster.
func alterIfDifferent(ctx context.Context, adm *kadm.Client, s TopicSpec, described kadm.ResourceConfigs) error {
	rc, err := described.On(s.Name, nil)
	if err == nil {
		err = rc.Err
	}
	if err != nil {
		return fmt.Errorf("describing configs of topic %q: %w", s.Name, withMessage(err, rc.ErrMessage))
	}
	current := make(map[string]kadm.Config, len(rc.Configs))
	for _, c := range rc.Configs {
		current[c.Key] = c
	}
	var alters []kadm.AlterConfig
	for k, v := range s.configs() {
		cur, ok := current[k]
		if ok && ptrEq(cur.Value, v) {
			continue
		}
		op := kadm.SetConfig
		if v == nil {
			if !ok || cur.Source == kmsg.ConfigSourceDefaultConfig {
				continue
			}
			op = kadm.DeleteConfig
		}
		alters = append(alters, kadm.AlterConfig{Op: op, Name: k, Value: v})
	}
	if len(alters) == 0 {
		return nil
	}
	sort.Slice(alters, func(i, j int) bool { return alters[i].Name < alters[j].Name })
	resps, err := adm.AlterTopicConfigs(ctx, alters, s.Name)
	if err != nil {
		return fmt.Errorf("altering configs of topic %q: %w", s.Name, err)
	}
	for _, r := range resps {
		if r.Err != nil {
			return fmt.Errorf("altering configs of topic %q: %w", s.Name, withMessage(r.Err, r.ErrMessage))
		}
	}
	return nil
}

func ptrEq(a, b *string) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func withMessage(err error, msg string) error {
	if msg == "" || err == nil {
		return err
	}
	return fmt.Errorf("%w: %s", err, msg)
}
