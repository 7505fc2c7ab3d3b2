package store

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Filter selects records. Conditions combine with AND; zero fields do not filter.
// Times are to the millisecond of the record's ID (its failure time): Since inclusive, Until exclusive.
type Filter struct {
	Class string
	Model string
	Since time.Time
	Until time.Time
	IDs   []string
	// Limit is List's page size: default 100, at most 1000. Count and DeleteMatching ignore it.
	Limit int
	// Cursor continues a List after the page that returned it. Count and DeleteMatching ignore it.
	Cursor string
}

const (
	defaultLimit = 100
	maxLimit     = 1000
)

// query is a Filter resolved to one key range to walk newest first and the checks left for
// each ID found there.
type query struct {
	f      Filter
	ids    []string // walk these instead of a key range when the filter names IDs
	prefix []byte   // record, class-index or model-index prefix
	lo, hi string   // ID bounds, lo inclusive and hi exclusive; "" = unbounded
	// what the walk does not guarantee and must be checked per ID
	checkClass, checkModel, checkExists bool
}

func (s *Store) plan(f Filter, useCursor bool) (query, error) {
	q := query{f: f}
	if strings.IndexByte(f.Class, 0) >= 0 || strings.IndexByte(f.Model, 0) >= 0 {
		return q, fmt.Errorf("class and model must not contain NUL: %w", ErrInvalid)
	}
	if !f.Since.IsZero() {
		q.lo = boundID(f.Since)
	}
	if !f.Until.IsZero() {
		q.hi = boundID(f.Until)
	}
	if useCursor && f.Cursor != "" {
		c, ok := canonicalID(f.Cursor)
		if !ok {
			return q, fmt.Errorf("cursor %q: %w", f.Cursor, ErrInvalid)
		}
		if q.hi == "" || c < q.hi {
			q.hi = c
		}
	}
	switch {
	case len(f.IDs) > 0:
		for _, id := range f.IDs {
			// An ID that is not a ULID cannot match anything; it is not an error, so a
			// stale link in the dashboard yields an empty result rather than a failure.
			if cid, ok := canonicalID(id); ok {
				q.ids = append(q.ids, cid)
			}
		}
		slices.Sort(q.ids)
		q.ids = slices.Compact(q.ids)
		slices.Reverse(q.ids)
		q.checkClass, q.checkModel = f.Class != "", f.Model != ""
		q.checkExists = f.Class == "" && f.Model == ""
	case f.Class != "":
		q.prefix = classPrefix(f.Class)
		q.checkModel = f.Model != ""
	case f.Model != "":
		q.prefix = modelPrefix(f.Model)
	default:
		q.prefix = []byte(recordPrefix)
	}
	return q, nil
}

func (q *query) inRange(id string) bool {
	return (q.lo == "" || id >= q.lo) && (q.hi == "" || id < q.hi)
}

// walk calls fn with each matching ID, newest first, until fn returns false.
// It reads only keys: every condition is answered by the ID itself or an index key.
func (q *query) walk(txn *badger.Txn, fn func(id string) bool) error {
	match := func(id string) (bool, error) {
		for _, c := range []struct {
			on  bool
			key []byte
		}{
			{q.checkClass, classKey(q.f.Class, id)},
			{q.checkModel, modelKey(q.f.Model, id)},
			{q.checkExists, recordKey(id)},
		} {
			if !c.on {
				continue
			}
			if _, err := txn.Get(c.key); err == badger.ErrKeyNotFound {
				return false, nil
			} else if err != nil {
				return false, err
			}
		}
		return true, nil
	}
	if q.prefix == nil {
		for _, id := range q.ids {
			if !q.inRange(id) {
				continue
			}
			ok, err := match(id)
			if err != nil {
				return err
			}
			if ok && !fn(id) {
				return nil
			}
		}
		return nil
	}
	opts := badger.DefaultIteratorOptions
	opts.PrefetchValues = false
	opts.Reverse = true
	opts.Prefix = q.prefix
	it := txn.NewIterator(opts)
	defer it.Close()
	// In reverse, Seek lands on the largest key <= its argument; 0xff sorts after any ID.
	seek := append(slices.Clip(q.prefix), 0xff)
	if q.hi != "" {
		seek = append(slices.Clip(q.prefix), q.hi...)
	}
	for it.Seek(seek); it.Valid(); it.Next() {
		id := string(it.Item().Key()[len(q.prefix):])
		if len(id) != idLen || (q.hi != "" && id >= q.hi) {
			continue
		}
		if q.lo != "" && id < q.lo {
			return nil
		}
		ok, err := match(id)
		if err != nil {
			return err
		}
		if ok && !fn(id) {
			return nil
		}
	}
	return nil
}

// List returns one page of matching records, newest first, and the cursor for the next page
// ("" when this is the last).
func (s *Store) List(f Filter) ([]*Record, string, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = defaultLimit
	}
	limit = min(limit, maxLimit)
	q, err := s.plan(f, true)
	if err != nil {
		return nil, "", fmt.Errorf("store: list: %w", err)
	}
	if err := s.enter(); err != nil {
		return nil, "", err
	}
	defer s.life.RUnlock()
	var recs []*Record
	var next string
	err = s.db.View(func(txn *badger.Txn) error {
		var ids []string
		// One ID past the page tells whether there is a next page, so the last page says so
		// instead of the client fetching an empty one.
		if err := q.walk(txn, func(id string) bool {
			ids = append(ids, id)
			return len(ids) <= limit
		}); err != nil {
			return err
		}
		if len(ids) > limit {
			ids = ids[:limit]
			next = ids[limit-1]
		}
		recs = make([]*Record, 0, len(ids))
		for _, id := range ids {
			r, err := getRecord(txn, id)
			if err != nil {
				if errors.Is(err, ErrNotFound) && s.lostErr(id) != nil {
					continue // lost with a damaged table: Health reports it
				}
				return s.classify(err)
			}
			recs = append(recs, r)
		}
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("store: list: %w", err)
	}
	return recs, next, nil
}

// Count returns how many records match f (Limit and Cursor are ignored).
func (s *Store) Count(f Filter) (int, error) {
	if f.IDs == nil && f.Since.IsZero() && f.Until.IsZero() && f.Model == "" {
		// Answered from the in-memory counts: the dashboard's headline numbers cost nothing.
		s.cntMu.Lock()
		defer s.cntMu.Unlock()
		if f.Class == "" {
			return int(s.total), nil
		}
		return int(s.byClass[f.Class]), nil
	}
	q, err := s.plan(f, false)
	if err != nil {
		return 0, fmt.Errorf("store: count: %w", err)
	}
	if err := s.enter(); err != nil {
		return 0, err
	}
	defer s.life.RUnlock()
	n := 0
	err = s.db.View(func(txn *badger.Txn) error {
		return q.walk(txn, func(string) bool { n++; return true })
	})
	if err != nil {
		return 0, fmt.Errorf("store: count: %w", err)
	}
	return n, nil
}

// DeleteMatching deletes every record matching f (Limit and Cursor are ignored; an empty
// filter deletes all records) and returns how many it deleted.
func (s *Store) DeleteMatching(f Filter) (int, error) {
	q, err := s.plan(f, false)
	if err != nil {
		return 0, fmt.Errorf("store: delete matching: %w", err)
	}
	total := 0
	for {
		ids, err := s.matchingIDs(&q, deleteChunk)
		if err != nil {
			return total, fmt.Errorf("store: delete matching: %w", err)
		}
		if len(ids) == 0 {
			return total, nil
		}
		var gone []string
		n, err := s.deleteRecords(ids, s.sharing(), func(id string) { gone = append(gone, id) })
		s.notify(Change{Op: ChangeDelete, IDs: gone})
		total += n
		if err != nil {
			return total, fmt.Errorf("store: delete matching: %w", err)
		}
		// Continue below the last ID seen rather than from the top again, so an index entry
		// whose record is gone cannot make this loop forever.
		q.hi = ids[len(ids)-1]
	}
}

func (s *Store) matchingIDs(q *query, n int) ([]string, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.life.RUnlock()
	var ids []string
	err := s.db.View(func(txn *badger.Txn) error {
		return q.walk(txn, func(id string) bool {
			ids = append(ids, id)
			return len(ids) < n
		})
	})
	return ids, err
}
