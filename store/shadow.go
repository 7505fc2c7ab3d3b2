package store

import (
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Shadow comparisons (the rollout package's per-request records: both
// predictions and both latencies) live under
//
//	c/<rollout id>\x00<ulid>
//
// with a TTL, so retention costs no sweep: Badger drops expired entries in
// its compactions.
const shadowPrefix = "c/"

func shadowKeyPrefix(rollout string) []byte { return []byte(shadowPrefix + rollout + "\x00") }

// PutShadow stores comparison records of a rollout, each kept for ttl (0: until
// DeleteShadow).
func (s *Store) PutShadow(rollout string, vals [][]byte, ttl time.Duration) error {
	if rollout == "" {
		return fmt.Errorf("store: put shadow: empty rollout id: %w", ErrInvalid)
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.life.RUnlock()
	if err := s.checkSpace(false); err != nil {
		return fmt.Errorf("store: put shadow: %w", err)
	}
	now := s.cfg.Now().UTC()
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	for _, v := range vals {
		e := badger.NewEntry(append(shadowKeyPrefix(rollout), s.ids.next(now)...), v)
		if ttl > 0 {
			e = e.WithTTL(ttl)
		}
		if err := wb.SetEntry(e); err != nil {
			return fmt.Errorf("store: put shadow: %w", s.classify(err))
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("store: put shadow: %w", s.classify(err))
	}
	return nil
}

// errStopScan ends ScanShadow early without an error.
var errStopScan = errors.New("stop")

// ScanShadow calls fn with the records of a rollout, oldest first, at most
// limit of them (0: all). fn must not keep val.
func (s *Store) ScanShadow(rollout string, limit int, fn func(val []byte) error) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.life.RUnlock()
	n := 0
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = shadowKeyPrefix(rollout)
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if limit > 0 && n >= limit {
				return errStopScan
			}
			n++
			if err := it.Item().Value(fn); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStopScan) {
		return fmt.Errorf("store: scan shadow %s: %w", rollout, err)
	}
	return nil
}

// DeleteShadow removes every record of a rollout.
func (s *Store) DeleteShadow(rollout string) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.life.RUnlock()
	if err := s.db.DropPrefix(shadowKeyPrefix(rollout)); err != nil {
		return fmt.Errorf("store: delete shadow %s: %w", rollout, s.classify(err))
	}
	return nil
}
