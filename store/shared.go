package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Sharing one DLQ across the instances of a consumer group. Each instance's store follows
// the group's DLQ topic (PutShared: every dead letter under the ID the instance that
// produced it gave it, carried in the record), and an operator's delete or replay on one
// instance is announced to the others (OnChange) and applied there (ApplyChange). The DLQ
// topic stays the shared truth; the stores are its indexes, equal up to the followers' lag.

// Change is a change an operator made to dead letters in this store, which the other
// instances of the group apply to theirs.
type Change struct {
	Op  string   // ChangeDelete or ChangeReplayed
	IDs []string // the records changed
	// Replays holds, for ChangeReplayed, each record's replay count after this replay;
	// At is when it was replayed.
	Replays []int     `json:",omitempty"`
	At      time.Time `json:",omitzero"`
}

// Change operations.
const (
	ChangeDelete   = "delete"
	ChangeReplayed = "replayed"
)

// tombstoneTTL is how long a deleted id is remembered, so a copy of the record read later
// from the DLQ topic (a follower behind, or a new instance reading the topic from its start)
// is not stored again. Longer than Kafka's default retention (7 days) of the DLQ topic.
const tombstoneTTL = 14 * 24 * time.Hour

func tombstoneKey(id string) []byte { return []byte("d/" + id) }

// OnChange makes the store call fn after each Delete, DeleteMatching and MarkReplayed that
// changed records, with the changed IDs; retention and the MaxRecords cap are local and are
// not reported. Deletes also leave tombstones from then on (see PutShared). fn runs on the
// caller's goroutine after the change is committed; nil stops the calls.
func (s *Store) OnChange(fn func(Change)) {
	if fn == nil {
		s.onChange.Store(nil)
		return
	}
	s.onChange.Store(&fn)
}

func (s *Store) sharing() bool { return s.onChange.Load() != nil }

func (s *Store) notify(c Change) {
	if len(c.IDs) == 0 {
		return
	}
	if fn := s.onChange.Load(); fn != nil {
		(*fn)(c)
	}
}

// PutShared stores dead letters read from the group's DLQ topic under the IDs they carry
// (every record must have one). A record deleted here or by another instance (a tombstone)
// is skipped. A record of the same source record stored under another ID (this instance
// stored it before a crash kept it from the topic, and another instance dead-lettered the
// redelivery) is replaced, so every instance ends with the topic's ID. Replay counts are
// kept, the higher of the stored and the given one.
func (s *Store) PutShared(ctx context.Context, recs ...*Record) error {
	for i, r := range recs {
		if r != nil && r.ID == "" {
			return fmt.Errorf("store: put shared record %d: no id: %w", i, ErrInvalid)
		}
	}
	return s.putAll(ctx, putShared, recs)
}

// sharedPrepare reports whether r is to be stored (no tombstone) and removes a record of
// the same source under another ID.
func sharedPrepare(txn *badger.Txn, r *Record, d *delta) (bool, error) {
	switch _, err := txn.Get(tombstoneKey(r.ID)); {
	case err == nil:
		return false, nil
	case !errors.Is(err, badger.ErrKeyNotFound):
		return false, err
	}
	if r.SourceTopic == "" {
		return true, nil
	}
	item, err := txn.Get(sourceKey(r.SourceTopic, r.SourcePartition, r.SourceOffset))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	id, err := item.ValueCopy(nil)
	if err != nil || string(id) == r.ID {
		return err == nil, err
	}
	old, err := getRecord(txn, string(id))
	if errors.Is(err, ErrNotFound) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	if string(old.Key) != string(r.Key) || string(old.Value) != string(r.Value) {
		return true, nil // other content at that offset: a record of its own
	}
	r.Replays = max(r.Replays, old.Replays)
	if old.LastReplayAt.After(r.LastReplayAt) {
		r.LastReplayAt = old.LastReplayAt
	}
	if err := deleteIndexes(txn, old); err != nil {
		return false, err
	}
	if err := txn.Delete(recordKey(old.ID)); err != nil {
		return false, err
	}
	d.add(old.Class, -1)
	return true, nil
}

// ApplyChange applies a change announced by another instance: deletes the records (leaving
// tombstones, as a local delete does) or raises their replay counts to the announced ones.
// Records it does not have are skipped; it does not call the OnChange function.
func (s *Store) ApplyChange(c Change) error {
	ids := make([]string, 0, len(c.IDs))
	for _, id := range c.IDs {
		if cid, ok := canonicalID(id); ok {
			ids = append(ids, cid)
		}
	}
	switch c.Op {
	case ChangeDelete:
		if _, err := s.deleteRecords(ids, true, nil); err != nil {
			return fmt.Errorf("store: apply shared delete: %w", err)
		}
		return nil
	case ChangeReplayed:
		if len(c.Replays) != len(c.IDs) {
			return fmt.Errorf("store: apply shared replay: %d ids, %d counts: %w", len(c.IDs), len(c.Replays), ErrInvalid)
		}
	default:
		return fmt.Errorf("store: apply shared change %q: %w", c.Op, ErrInvalid)
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.life.RUnlock()
	err := s.update(func(txn *badger.Txn, _ *delta) error {
		for i, id := range c.IDs {
			cid, ok := canonicalID(id)
			if !ok {
				continue
			}
			r, err := getRecord(txn, cid)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			if r.Replays >= c.Replays[i] && !c.At.After(r.LastReplayAt) {
				continue
			}
			r.Replays = max(r.Replays, c.Replays[i])
			if c.At.After(r.LastReplayAt) {
				r.LastReplayAt = c.At
			}
			if err := txn.Set(recordKey(cid), encodeRecord(r)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: apply shared replay: %w", err)
	}
	return nil
}
