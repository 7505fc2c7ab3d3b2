// Package group shares between the instances of one consumer group, attached to one Kafka
// cluster, what each must see of the others (docs/scaling.md):
//
//   - the dead letters: each instance's store follows the DLQ topic, the shared truth, and
//     stores every dead letter under the ID the instance that produced it gave it (the
//     dlq.id header); an operator's delete or replay on one instance is announced on the
//     control topic and applied by the others;
//   - each member's state (running, paused, circuit open …): announced on the control topic
//     when it changes and every Config.Heartbeat, so every dashboard shows who is paused.
//
// The follower is a direct consumer of every partition of both topics (not a member of the
// pipeline's group, so it takes no partitions from it), reading committed records from
// where it stopped (positions kept in the store) or, the first time, from the start.
package group

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/infergate/infergate/inference/pipeline"
	"github.com/infergate/infergate/store"
)

// Config says what to follow and how often to announce this instance's state.
type Config struct {
	Group        string // the pipeline's consumer group; control records of other groups are ignored
	DLQTopic     string
	ControlTopic string
	// Heartbeat is how often the state is announced when it has not changed, so a member
	// that stopped announcing (crashed) shows its last heartbeat's age.
	Heartbeat time.Duration
	// Poll is how often the local state is read; a change is announced at once.
	Poll time.Duration
}

// DefaultConfig returns the defaults of the timing fields.
func DefaultConfig() Config {
	return Config{Heartbeat: 10 * time.Second, Poll: 500 * time.Millisecond}
}

// Validate reports the first missing or invalid field.
func (c Config) Validate() error {
	switch {
	case c.Group == "":
		return errors.New("group: Group is required")
	case c.DLQTopic == "" || c.ControlTopic == "":
		return errors.New("group: DLQTopic and ControlTopic are required")
	case c.DLQTopic == c.ControlTopic:
		return fmt.Errorf("group: the control topic must not be the DLQ topic %s", c.DLQTopic)
	case c.Heartbeat <= 0 || c.Poll <= 0:
		return errors.New("group: Heartbeat and Poll must be positive")
	}
	return nil
}

// MemberState is what an instance announces of itself.
type MemberState struct {
	Group string `json:"group"`
	// Origin names the announcing process (random per run): it tells an instance's own
	// records from the others'.
	Origin     string `json:"origin"`
	MemberID   string `json:"member_id,omitempty"` // "" until it joined the group
	InstanceID string `json:"instance_id,omitempty"`
	Host       string `json:"host,omitempty"`
	// State is the pipeline's (pipeline.State*); Paused is an operator's pause.
	State  string    `json:"state"`
	Paused bool      `json:"paused"`
	At     time.Time `json:"at"`
}

func (m MemberState) same(o MemberState) bool {
	return m.MemberID == o.MemberID && m.InstanceID == o.InstanceID && m.State == o.State && m.Paused == o.Paused && m.Host == o.Host
}

// message is one record of the control topic: a member's state or an operator's change.
type message struct {
	Group  string        `json:"group"`
	Origin string        `json:"origin"`
	Member *MemberState  `json:"member,omitempty"`
	Change *store.Change `json:"change,omitempty"`
}

// FollowStatus is how far the store has followed the DLQ topic.
type FollowStatus struct {
	Topic string `json:"topic"`
	// Behind counts the records of the DLQ topic the follower has not read yet (committed
	// transactions' markers count too, so it may stay at one per partition in exactly-once
	// mode); -1 until known.
	Behind int64 `json:"behind"`
	// Stored counts the dead letters read and stored since start; Skipped those without an
	// id (their store write failed, or an older version produced them) or unreadable.
	Stored  int64 `json:"stored"`
	Skipped int64 `json:"skipped"`
	// Applied counts the other instances' deletes and replays applied since start.
	Applied int64 `json:"applied"`
}

// Sharer follows the DLQ and control topics into the store and announces this instance's
// state and its operators' DLQ changes.
type Sharer struct {
	cfg    Config
	logger *slog.Logger
	opts   []kgo.Opt
	st     *store.Store
	local  func() MemberState
	origin string

	cl atomic.Pointer[kgo.Client] // while Run runs

	mu      sync.Mutex
	members map[string]MemberState // by origin
	pos     map[string]map[int32]int64
	ends    map[string]map[int32]int64
	status  FollowStatus

	early map[string]replayMark // by record id; Run's goroutine only (noteEarly)
}

// positionsSetting is the store setting holding the follower's next offsets.
const positionsSetting = "group.follower.positions"

// New prepares a Sharer; Run starts it. clientOpts connect to the cluster (seed brokers,
// TLS, SASL); local reports this instance's state (Group, Origin and At are filled in).
func New(cfg Config, logger *slog.Logger, clientOpts []kgo.Opt, st *store.Store, local func() MemberState) (*Sharer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if st == nil || local == nil {
		return nil, errors.New("group: a store and a local state function are required")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &Sharer{
		cfg: cfg, logger: logger, opts: clientOpts, st: st, local: local,
		origin:  hex.EncodeToString(b[:]),
		members: map[string]MemberState{},
		early:   map[string]replayMark{},
		status:  FollowStatus{Topic: cfg.DLQTopic, Behind: -1},
	}, nil
}

// Members returns the latest state each instance announced (this one's included), by origin
// order. Instances that stopped long ago stay until the process restarts; callers match
// them with the group's current members.
func (s *Sharer) Members() []MemberState {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := slices.Collect(maps.Values(s.members))
	slices.SortFunc(out, func(a, b MemberState) int {
		if a.Origin < b.Origin {
			return -1
		}
		return 1
	})
	return out
}

// Origin names this process in its announcements.
func (s *Sharer) Origin() string { return s.origin }

// Following reports how far the store has followed the DLQ topic.
func (s *Sharer) Following() FollowStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

// Run follows the topics until ctx ends and returns after its goroutines have exited. The
// store announces its changes (OnChange) only while Run runs.
func (s *Sharer) Run(ctx context.Context) error {
	s.mu.Lock()
	s.pos = s.loadPositions()
	s.mu.Unlock()

	pc, err := kgo.NewClient(s.opts...)
	if err != nil {
		return fmt.Errorf("group: %w", err)
	}
	defer pc.Close()
	adm := kadm.NewClient(pc)
	ends := s.waitEnds(ctx, adm)
	if ends == nil {
		return nil // ctx ended
	}
	from := map[string]map[int32]kgo.Offset{}
	s.mu.Lock()
	s.ends = ends
	for topic, parts := range ends {
		from[topic] = map[int32]kgo.Offset{}
		for p := range parts {
			from[topic][p] = s.offsetFor(topic, p)
		}
	}
	s.mu.Unlock()
	cc, err := kgo.NewClient(append(slices.Clone(s.opts),
		kgo.ConsumePartitions(from),
		// An aborted exactly-once transaction's dead letters were redelivered and are
		// produced again (under the same id); only committed ones count.
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxWait(500*time.Millisecond),
		kgo.ProducerLinger(5*time.Millisecond),
	)...)
	if err != nil {
		return fmt.Errorf("group: %w", err)
	}
	defer cc.Close()
	s.cl.Store(cc)
	defer s.cl.Store(nil)
	s.st.OnChange(s.announceChange)
	defer s.st.OnChange(nil)

	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.heartbeats(ctx, cc) }()
	go func() { defer wg.Done(); s.watchEnds(ctx, adm, cc) }()
	defer wg.Wait()
	s.logger.Info("following the group's DLQ topic", "dlq", s.cfg.DLQTopic, "control", s.cfg.ControlTopic, "origin", s.origin)
	for {
		fs := cc.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		fs.EachError(func(t string, p int32, err error) {
			s.logger.Warn("following the group's topics", "topic", t, "partition", p, "err", err)
		})
		s.apply(ctx, fs)
	}
}

// offsetFor is where to start reading a partition: after the last record read, else at
// the start. Called with s.mu held.
func (s *Sharer) offsetFor(topic string, p int32) kgo.Offset {
	if n, ok := s.pos[topic][p]; ok {
		return kgo.NewOffset().At(n)
	}
	return kgo.NewOffset().AtStart()
}

// apply stores a poll's dead letters, then applies its control records: a change that
// arrives with the record it names finds it stored.
func (s *Sharer) apply(ctx context.Context, fs kgo.Fetches) {
	var recs []*store.Record
	var msgs []message
	var skipped int64
	next := map[string]map[int32]int64{}
	fs.EachRecord(func(r *kgo.Record) {
		if next[r.Topic] == nil {
			next[r.Topic] = map[int32]int64{}
		}
		next[r.Topic][r.Partition] = r.Offset + 1
		switch r.Topic {
		case s.cfg.DLQTopic:
			rec, truncated, err := pipeline.StoreRecord(r)
			if err != nil {
				skipped++
				s.logger.Debug("a DLQ record is not shared", "partition", r.Partition, "offset", r.Offset, "err", err)
				return
			}
			if truncated {
				// Cut down to fit the topic: the instance that stored it keeps it whole.
				if _, err := s.st.Get(rec.ID); err == nil {
					return
				}
			}
			recs = append(recs, rec)
		case s.cfg.ControlTopic:
			var m message
			if err := json.Unmarshal(r.Value, &m); err != nil || m.Group != s.cfg.Group || m.Origin == s.origin {
				return
			}
			msgs = append(msgs, m)
		}
	})
	if len(next) == 0 {
		return
	}
	for len(recs) > 0 {
		err := s.st.PutShared(ctx, recs...)
		if err == nil {
			break
		}
		// A full disk or a closing store: try again rather than lose the records (the
		// positions are not moved past them).
		s.logger.Warn("storing the group's dead letters failed; retrying", "records", len(recs), "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
	var applied int64
	for _, r := range recs {
		if mark, ok := s.early[r.ID]; ok {
			delete(s.early, r.ID)
			c := store.Change{Op: store.ChangeReplayed, IDs: []string{r.ID}, Replays: []int{mark.replays}, At: mark.at}
			if err := s.st.ApplyChange(c); err != nil {
				s.logger.Warn("applying another instance's DLQ replay failed", "id", r.ID, "err", err)
			}
		}
	}
	for _, m := range msgs {
		switch {
		case m.Change != nil:
			s.noteEarly(*m.Change)
			if err := s.st.ApplyChange(*m.Change); err != nil {
				s.logger.Warn("applying another instance's DLQ change failed", "op", m.Change.Op, "records", len(m.Change.IDs), "err", err)
				continue
			}
			applied++
		case m.Member != nil:
			ms := *m.Member
			ms.Origin = m.Origin
			s.mu.Lock()
			if old, ok := s.members[ms.Origin]; !ok || !old.At.After(ms.At) {
				s.members[ms.Origin] = ms
			}
			s.mu.Unlock()
		}
	}
	s.mu.Lock()
	for t, ps := range next {
		if s.pos[t] == nil {
			s.pos[t] = map[int32]int64{}
		}
		maps.Copy(s.pos[t], ps)
	}
	s.status.Stored += int64(len(recs))
	s.status.Skipped += skipped
	s.status.Applied += applied
	s.status.Behind = s.behind()
	raw, _ := json.Marshal(s.pos)
	s.mu.Unlock()
	if err := s.st.PutSetting(positionsSetting, raw); err != nil {
		// Read again after a restart; PutShared and ApplyChange are idempotent.
		s.logger.Debug("saving the DLQ follower's positions failed", "err", err)
	}
}

// replayMark is a replay announced for a record the follower has not read yet.
type replayMark struct {
	replays int
	at      time.Time
}

// maxEarly bounds the replays remembered for records not read yet (a follower far behind).
const maxEarly = 10000

// noteEarly remembers the replays of c whose records are not stored here yet: the DLQ and
// control topics are read independently, so the announcement of a replay can come before
// the record it names (a new instance reading both from their start). apply applies them
// when the record arrives.
func (s *Sharer) noteEarly(c store.Change) {
	if c.Op != store.ChangeReplayed || len(c.Replays) != len(c.IDs) {
		return
	}
	for i, id := range c.IDs {
		if _, err := s.st.Get(id); !errors.Is(err, store.ErrNotFound) {
			continue
		}
		if mark, ok := s.early[id]; ok || len(s.early) < maxEarly {
			if c.Replays[i] > mark.replays {
				s.early[id] = replayMark{c.Replays[i], c.At}
			}
		}
	}
}

// behind is the DLQ records not read yet. Called with s.mu held.
func (s *Sharer) behind() int64 {
	if s.ends == nil {
		return -1
	}
	var n int64
	for p, end := range s.ends[s.cfg.DLQTopic] {
		at, ok := s.pos[s.cfg.DLQTopic][p]
		if !ok {
			at = 0
		}
		n += max(end-at, 0)
	}
	return n
}

func (s *Sharer) loadPositions() map[string]map[int32]int64 {
	pos := map[string]map[int32]int64{}
	raw, err := s.st.GetSetting(positionsSetting)
	if err != nil {
		return pos
	}
	if err := json.Unmarshal(raw, &pos); err != nil {
		s.logger.Warn("the DLQ follower's saved positions are unreadable; reading the topics from the start", "err", err)
		return map[string]map[int32]int64{}
	}
	return pos
}

// waitEnds lists the end offsets of both topics (their partitions), retrying while the
// cluster does not answer; nil once ctx ends.
func (s *Sharer) waitEnds(ctx context.Context, adm *kadm.Client) map[string]map[int32]int64 {
	for {
		ends, err := s.listEnds(ctx, adm)
		if err == nil {
			return ends
		}
		s.logger.Warn("listing the DLQ and control topics; retrying", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(2 * time.Second):
		}
	}
}

func (s *Sharer) listEnds(ctx context.Context, adm *kadm.Client) (map[string]map[int32]int64, error) {
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// Committed end offsets (the last stable offset), as the follower reads.
	listed, err := adm.ListCommittedOffsets(lctx, s.cfg.DLQTopic, s.cfg.ControlTopic)
	if err != nil {
		return nil, err
	}
	ends := map[string]map[int32]int64{s.cfg.DLQTopic: {}, s.cfg.ControlTopic: {}}
	var errs []error
	listed.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			errs = append(errs, fmt.Errorf("%s/%d: %w", o.Topic, o.Partition, o.Err))
			return
		}
		ends[o.Topic][o.Partition] = o.Offset
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for t, ps := range ends {
		if len(ps) == 0 {
			return nil, fmt.Errorf("topic %s has no partitions (does it exist?)", t)
		}
	}
	return ends, nil
}

// watchEnds refreshes the end offsets for Following and starts following partitions added
// to either topic.
func (s *Sharer) watchEnds(ctx context.Context, adm *kadm.Client, cc *kgo.Client) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ends, err := s.listEnds(ctx, adm)
		if err != nil {
			continue
		}
		added := map[string]map[int32]kgo.Offset{}
		s.mu.Lock()
		for topic, ps := range ends {
			for p := range ps {
				if _, ok := s.ends[topic][p]; !ok {
					if added[topic] == nil {
						added[topic] = map[int32]kgo.Offset{}
					}
					added[topic][p] = s.offsetFor(topic, p)
				}
			}
		}
		s.ends = ends
		s.status.Behind = s.behind()
		s.mu.Unlock()
		if len(added) > 0 {
			cc.AddConsumePartitions(added)
		}
	}
}

// heartbeats announces this instance's state when it changes and every Heartbeat.
func (s *Sharer) heartbeats(ctx context.Context, cl *kgo.Client) {
	t := time.NewTicker(s.cfg.Poll)
	defer t.Stop()
	var last MemberState
	for {
		m := s.local()
		m.Group, m.Origin = s.cfg.Group, s.origin
		if now := time.Now(); !m.same(last) || now.Sub(last.At) >= s.cfg.Heartbeat {
			m.At = now
			s.mu.Lock()
			s.members[s.origin] = m
			s.mu.Unlock()
			s.produce(cl, message{Group: s.cfg.Group, Origin: s.origin, Member: &m})
			last = m
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// announceChange is the store's OnChange: the other instances apply the change.
func (s *Sharer) announceChange(c store.Change) {
	cl := s.cl.Load()
	if cl == nil {
		return
	}
	s.produce(cl, message{Group: s.cfg.Group, Origin: s.origin, Change: &c})
}

// produce sends m without waiting: the client retries until the broker has it, so a
// change made while the cluster is away is announced once it returns.
func (s *Sharer) produce(cl *kgo.Client, m message) {
	raw, err := json.Marshal(m)
	if err != nil {
		s.logger.Error("encoding a control record", "err", err)
		return
	}
	cl.Produce(context.Background(), &kgo.Record{Topic: s.cfg.ControlTopic, Key: []byte(s.origin), Value: raw},
		func(_ *kgo.Record, err error) {
			if err != nil && !errors.Is(err, kgo.ErrClientClosed) {
				s.logger.Warn("announcing to the group failed", "topic", s.cfg.ControlTopic, "change", m.Change != nil, "err", err)
			}
		})
}
