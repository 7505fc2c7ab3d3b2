package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Sentinel errors callers branch on.
var (
	// ErrNotFound: no record (or setting) with that id (or key).
	ErrNotFound = errors.New("not found")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("store closed")
	// ErrLocked: another process holds the data directory.
	ErrLocked = errors.New("data dir locked by another process")
	// ErrInvalid: a record, filter or cursor that the store cannot accept (HTTP 400 material).
	ErrInvalid = errors.New("invalid argument")
)

// Header is one Kafka record header.
type Header struct {
	Key   string
	Value []byte
}

// Record is one dead-lettered request: the original Kafka record unchanged, plus why and
// where it failed.
type Record struct {
	// ID is a ULID assigned by Put from FailedAt when empty, so IDs sort by failure time.
	// A caller-supplied ID must be a ULID; its time is what filters and retention use.
	// PutFromSource gives a record of the same source record (topic, partition, offset, key
	// and value) as a stored one the stored one's ID, and overwrites it.
	ID      string
	Key     []byte
	Value   []byte
	Headers []Header

	Class   string // an error class: one of inference/pipeline.Classes
	Message string
	Model   string // "" if unknown

	SourceTopic     string
	SourcePartition int32
	SourceOffset    int64
	Attempts        int
	FailedAt        time.Time // set to now by Put when zero

	Replays      int
	LastReplayAt time.Time
}

// Stats is a snapshot for the dashboard and /metrics.
type Stats struct {
	Records   int64
	LSMBytes  int64 // on-disk size of tables and memtable logs (allocated blocks)
	VLogBytes int64 // on-disk size of value-log files (allocated blocks)
	ByClass   map[string]int64
}

// Store holds dead-lettered records, settings and the audit log in Badger.
// All methods are safe for concurrent use.
type Store struct {
	cfg Config
	log *slog.Logger
	db  *badger.DB
	ids *idGen

	// life is held for reading by every operation and for writing by Close, so Close waits
	// for operations in flight and nothing touches Badger after it is closed.
	life     sync.RWMutex
	closed   bool
	done     chan struct{}
	doneOnce sync.Once

	// Record counts are kept in memory (counted from the class index at Open) and adjusted
	// after each commit. Persisting a counter would make every Put conflict with every other.
	cntMu   sync.Mutex
	total   int64
	byClass map[string]int64

	h        health        // free space and corruption (health.go)
	verified chan struct{} // closed when the table check started by Open is done

	trimMu  sync.Mutex   // one trimmer at a time, so concurrent Puts do not race to delete the same records
	dropped atomic.Int64 // records dropped over MaxRecords since Run last logged

	onChange atomic.Pointer[func(Change)] // shared.go

	// retention and maxRecords are cfg.Retention and cfg.MaxRecords, changed
	// by SetLimits while the store runs; kick asks Run for a pass at once.
	retention  atomic.Int64 // nanoseconds
	maxRecords atomic.Int64
	kick       chan struct{}
}

// Open validates cfg and opens (creating if needed) the store.
func Open(cfg Config, logger *slog.Logger) (*Store, error) {
	if err := cfg.checkPlace(); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if !cfg.InMemory {
		if err := checkDir(cfg.Dir); err != nil {
			return nil, err
		}
	}
	db, err := badger.Open(badgerOptions(cfg, logger))
	if err != nil {
		if heldByAnotherProcess(err) {
			return nil, fmt.Errorf("store: data dir %s is in use by another infergate? %w (%v)", cfg.Dir, ErrLocked, err)
		}
		return nil, fmt.Errorf("store: open badger in %s: %w", cfg.Dir, err)
	}
	s := &Store{
		cfg:      cfg,
		log:      logger,
		db:       db,
		ids:      newIDGen(),
		done:     make(chan struct{}),
		verified: make(chan struct{}),
		byClass:  map[string]int64{},
		kick:     make(chan struct{}, 1),
	}
	s.retention.Store(int64(cfg.Retention))
	s.maxRecords.Store(int64(cfg.MaxRecords))
	if err := s.countRecords(); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: count records: %w", err)
	}
	s.measureFree()
	go s.verify()
	logger.Info("store opened", "dir", cfg.Dir, "records", s.total, "in_memory", cfg.InMemory)
	return s, nil
}

// checkDir creates dir and proves it writable, so a read-only mount or wrong owner fails with
// a message about the directory rather than one about a Badger file deep inside it.
func checkDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("store: data dir %s is not usable: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, ".write-test-*")
	if err != nil {
		return fmt.Errorf("store: data dir %s is not writable: %w", dir, err)
	}
	name := f.Name()
	f.Close()
	os.Remove(name)
	return nil
}

func (s *Store) countRecords() error {
	return s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.Prefix = []byte("i/c/")
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()[len(opts.Prefix):]
			if i := len(k) - idLen - 1; i >= 0 && k[i] == 0 {
				s.byClass[string(k[:i])]++
				s.total++
			}
		}
		return nil
	})
}

// Close closes the database after operations in flight finish. Safe to call more than once.
func (s *Store) Close() error {
	// Stop the table check Open started before taking the lock: it reads under the
	// store's read lock, and stops at s.done.
	s.doneOnce.Do(func() { close(s.done) })
	<-s.verified
	s.life.Lock()
	defer s.life.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// enter starts an operation; the caller must call s.life.RUnlock when it returns nil.
func (s *Store) enter() error {
	s.life.RLock()
	if s.closed {
		s.life.RUnlock()
		return ErrClosed
	}
	return nil
}

// delta is the change in record counts made by one transaction, applied only once it commits.
type delta struct {
	total   int64
	byClass map[string]int64
}

func (d *delta) add(class string, n int64) {
	if d.byClass == nil {
		d.byClass = map[string]int64{}
	}
	d.total += n
	d.byClass[class] += n
}

func (s *Store) apply(d delta) {
	s.cntMu.Lock()
	defer s.cntMu.Unlock()
	s.total += d.total
	for c, n := range d.byClass {
		if s.byClass[c] += n; s.byClass[c] <= 0 {
			delete(s.byClass, c)
		}
	}
}

func (s *Store) count() int64 {
	s.cntMu.Lock()
	defer s.cntMu.Unlock()
	return s.total
}

const maxConflictRetries = 20

// update runs fn in a read-write transaction, retrying when a concurrent transaction changed
// a key fn read (Badger's conflict detection is what keeps the in-memory counts exact when,
// say, retention and an operator delete the same record), and applies fn's delta once committed.
func (s *Store) update(fn func(txn *badger.Txn, d *delta) error) error {
	return s.write(false, fn)
}

// write is update with the free-space check; freeing marks a transaction that only deletes.
func (s *Store) write(freeing bool, fn func(txn *badger.Txn, d *delta) error) error {
	if err := s.checkSpace(freeing); err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		var d delta
		txn := s.db.NewTransaction(true)
		err := fn(txn, &d)
		if err == nil {
			err = txn.Commit()
		}
		txn.Discard()
		if errors.Is(err, badger.ErrConflict) && attempt < maxConflictRetries {
			continue
		}
		if err != nil {
			return s.classify(err)
		}
		s.apply(d)
		return nil
	}
}

// Put stores recs, assigning IDs (written back into the records) and FailedAt where empty.
// The records are written in one transaction unless they exceed Badger's transaction limit
// (about 2 MiB), in which case they are split. Put is idempotent for the same records:
// a retry after an error reuses the IDs assigned by the first attempt and overwrites.
// When the store holds more than MaxRecords afterwards, the oldest are dropped.
func (s *Store) Put(ctx context.Context, recs ...*Record) error {
	return s.putAll(ctx, putPlain, recs)
}

// PutFromSource is Put for records dead-lettered from Kafka records: a record whose source
// (SourceTopic, SourcePartition, SourceOffset) and key and value match a record stored by an
// earlier PutFromSource takes that record's ID and overwrites it, so a request that is
// redelivered (at-least-once after a crash, exactly-once after an aborted transaction) and
// fails again is stored once, not once per delivery. See reuseSourceID. Likewise a replay of
// a stored record (header ReplayOfHeader naming it) that fails again updates that record
// instead of adding one per replay; see reuseReplayID.
func (s *Store) PutFromSource(ctx context.Context, recs ...*Record) error {
	return s.putAll(ctx, putFromSource, recs)
}

// putMode is how put finds the record a new one replaces.
type putMode int

const (
	putPlain      putMode = iota // by ID only
	putFromSource                // by source record or replayed record too (PutFromSource)
	putShared                    // by the ID its producer gave it (PutShared, shared.go)
)

func (s *Store) putAll(ctx context.Context, mode putMode, recs []*Record) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := s.cfg.Now()
	for i, r := range recs {
		if err := s.prepare(r, now); err != nil {
			return fmt.Errorf("store: put record %d: %w", i, err)
		}
	}
	if len(recs) == 0 {
		return nil
	}
	if err := s.enter(); err != nil {
		return err
	}
	err := s.put(recs, mode)
	s.life.RUnlock()
	if err != nil {
		return fmt.Errorf("store: put: %w", err)
	}
	// The records are committed; a Close racing the trim must not make the caller think otherwise.
	if err := s.trim(); err != nil && !errors.Is(err, ErrClosed) {
		return err
	}
	return nil
}

func (s *Store) prepare(r *Record, now time.Time) error {
	if r == nil {
		return fmt.Errorf("nil record: %w", ErrInvalid)
	}
	if strings.IndexByte(r.Class, 0) >= 0 || strings.IndexByte(r.Model, 0) >= 0 {
		return fmt.Errorf("class and model must not contain NUL: %w", ErrInvalid)
	}
	if r.FailedAt.IsZero() {
		r.FailedAt = now
	}
	if r.ID == "" {
		r.ID = s.ids.next(r.FailedAt)
		return nil
	}
	id, ok := canonicalID(r.ID)
	if !ok {
		return fmt.Errorf("id %q is not a ULID: %w", r.ID, ErrInvalid)
	}
	r.ID = id
	return nil
}

func (s *Store) put(recs []*Record, mode putMode) error {
	bySource := mode != putPlain
	err := s.update(func(txn *badger.Txn, d *delta) error {
		for _, r := range recs {
			if mode == putShared {
				keep, err := sharedPrepare(txn, r, d)
				if err != nil {
					return err
				}
				if !keep {
					continue
				}
			}
			if mode == putFromSource {
				if err := reuseSourceID(txn, r); err != nil {
					return err
				}
				if err := reuseReplayID(txn, r); err != nil {
					return err
				}
			}
			// The ID may exist already (a retried Put, a redelivered failure, or a caller's own ID):
			// replace its index entries.
			old, err := getRecord(txn, r.ID)
			switch {
			case err == nil:
				if mode == putFromSource {
					// The stored record's replay count is the truth, not the one r carries: r may
					// hold what an earlier attempt of this transaction (retried after a conflict
					// with MarkReplayed) or the caller's own retry read before the mark.
					r.Replays, r.LastReplayAt = old.Replays, old.LastReplayAt
				}
				if mode == putShared {
					// The replays made through any instance count.
					r.Replays = max(r.Replays, old.Replays)
					if old.LastReplayAt.After(r.LastReplayAt) {
						r.LastReplayAt = old.LastReplayAt
					}
				}
				if err := deleteIndexes(txn, old); err != nil {
					return err
				}
				d.add(old.Class, -1)
			case !errors.Is(err, ErrNotFound):
				return err
			}
			if err := txn.Set(recordKey(r.ID), encodeRecord(r)); err != nil {
				return err
			}
			if err := txn.Set(classKey(r.Class, r.ID), nil); err != nil {
				return err
			}
			if r.Model != "" {
				if err := txn.Set(modelKey(r.Model, r.ID), nil); err != nil {
					return err
				}
			}
			if bySource && r.SourceTopic != "" {
				if err := txn.Set(sourceKey(r.SourceTopic, r.SourcePartition, r.SourceOffset), []byte(r.ID)); err != nil {
					return err
				}
			}
			d.add(r.Class, 1)
		}
		return nil
	})
	if errors.Is(err, badger.ErrTxnTooBig) && len(recs) > 1 {
		half := len(recs) / 2
		if err := s.put(recs[:half], mode); err != nil {
			return err
		}
		return s.put(recs[half:], mode)
	}
	return err
}

func getRecord(txn *badger.Txn, id string) (*Record, error) {
	item, err := txn.Get(recordKey(id))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, fmt.Errorf("record %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	var r *Record
	err = item.Value(func(v []byte) error {
		r, err = decodeRecord(id, v)
		return err
	})
	return r, err
}

// reuseSourceID gives r the ID of the record already stored for the same source record (topic,
// partition, offset) with the same key and value: an at-least-once redelivery of a request that
// fails again overwrites its record instead of adding a second one. The first failure's time
// (the ID's, and FailedAt) and the replay count are kept; everything else is the new failure's.
// The same offset with other content (a topic deleted and re-created) gets a record of its own.
func reuseSourceID(txn *badger.Txn, r *Record) error {
	if r.SourceTopic == "" {
		return nil
	}
	item, err := txn.Get(sourceKey(r.SourceTopic, r.SourcePartition, r.SourceOffset))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	id, err := item.ValueCopy(nil)
	if err != nil {
		return err
	}
	if string(id) == r.ID {
		return nil
	}
	old, err := getRecord(txn, string(id))
	if errors.Is(err, ErrNotFound) {
		return nil // deleted meanwhile; its index entry is overwritten below
	}
	if err != nil {
		return err
	}
	if !bytes.Equal(old.Key, r.Key) || !bytes.Equal(old.Value, r.Value) {
		return nil
	}
	r.ID, r.FailedAt = old.ID, old.FailedAt // put keeps the stored record's replay count
	return nil
}

// ReplayOfHeader is the header a replayed request carries, naming the record it replays
// (pipeline.HeaderReplayOf).
const ReplayOfHeader = "replay.of"

// reuseReplayID gives r, the failure of a replayed request, the ID of the record it
// replays when that record still exists with the same key and value: replaying an unfixed
// request updates its record (the new error, source and attempts; the first failure's time
// and the replay count kept) rather than adding a new record per replay. The record's
// headers keep ReplayOfHeader, which a further replay strips.
func reuseReplayID(txn *badger.Txn, r *Record) error {
	var of string
	for _, h := range r.Headers {
		if h.Key == ReplayOfHeader {
			of = string(h.Value)
		}
	}
	id, ok := canonicalID(of)
	if !ok || id == r.ID {
		return nil
	}
	old, err := getRecord(txn, id)
	if errors.Is(err, ErrNotFound) {
		return nil // deleted since the replay: the failure is a record of its own
	}
	if err != nil {
		return err
	}
	if !bytes.Equal(old.Key, r.Key) || !bytes.Equal(old.Value, r.Value) {
		return nil
	}
	r.ID, r.FailedAt = old.ID, old.FailedAt // put keeps the stored record's replay count
	return nil
}

func deleteIndexes(txn *badger.Txn, r *Record) error {
	if err := txn.Delete(classKey(r.Class, r.ID)); err != nil {
		return err
	}
	if r.Model != "" {
		if err := txn.Delete(modelKey(r.Model, r.ID)); err != nil {
			return err
		}
	}
	if r.SourceTopic == "" {
		return nil
	}
	// The source entry may name a newer record of the same offset (other content): leave it.
	sk := sourceKey(r.SourceTopic, r.SourcePartition, r.SourceOffset)
	item, err := txn.Get(sk)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	id, err := item.ValueCopy(nil)
	if err != nil {
		return err
	}
	if string(id) != r.ID {
		return nil
	}
	return txn.Delete(sk)
}

// Get returns the record with id, or an error wrapping ErrNotFound.
func (s *Store) Get(id string) (*Record, error) {
	cid, ok := canonicalID(id)
	if !ok {
		return nil, fmt.Errorf("store: record %q: %w", id, ErrNotFound)
	}
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.life.RUnlock()
	var r *Record
	err := s.db.View(func(txn *badger.Txn) (err error) {
		r, err = getRecord(txn, cid)
		return err
	})
	if errors.Is(err, ErrNotFound) {
		if lerr := s.lostErr(cid); lerr != nil {
			err = lerr
		}
	}
	if err != nil {
		return nil, fmt.Errorf("store: get: %w", s.classify(err))
	}
	return r, nil
}

// Delete removes the records with ids (unknown ids are skipped) and returns how many it removed.
func (s *Store) Delete(ids ...string) (int, error) {
	clean := make([]string, 0, len(ids))
	for _, id := range ids {
		if cid, ok := canonicalID(id); ok {
			clean = append(clean, cid)
		}
	}
	var gone []string
	n, err := s.deleteRecords(clean, s.sharing(), func(id string) { gone = append(gone, id) })
	s.notify(Change{Op: ChangeDelete, IDs: gone})
	if err != nil {
		return n, fmt.Errorf("store: delete: %w", err)
	}
	return n, nil
}

// deleteChunk bounds one delete transaction well below Badger's limit.
const deleteChunk = 500

func (s *Store) deleteIDs(ids []string) (int, error) {
	n, err := s.deleteRecords(ids, false, nil)
	return n, err
}

// deleteRecords deletes the records with ids; with tombstones it also remembers each id
// (deleted here or not) for tombstoneTTL, so a copy of the record that arrives later from
// the group's DLQ topic is not stored again (PutShared). Every id it deleted is passed to
// deleted, when not nil.
func (s *Store) deleteRecords(ids []string, tombstones bool, deleted func(id string)) (int, error) {
	total := 0
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), deleteChunk)]
		ids = ids[len(chunk):]
		if err := s.enter(); err != nil {
			return total, err
		}
		var gone []string
		err := s.write(true, func(txn *badger.Txn, d *delta) error {
			gone = gone[:0]
			for _, id := range chunk {
				if tombstones {
					if err := txn.SetEntry(badger.NewEntry(tombstoneKey(id), nil).WithTTL(tombstoneTTL)); err != nil {
						return err
					}
				}
				r, err := getRecord(txn, id)
				if errors.Is(err, ErrNotFound) {
					continue
				}
				if err != nil {
					return err
				}
				if err := deleteIndexes(txn, r); err != nil {
					return err
				}
				if err := txn.Delete(recordKey(id)); err != nil {
					return err
				}
				d.add(r.Class, -1)
				gone = append(gone, id)
			}
			return nil
		})
		s.life.RUnlock()
		if err != nil {
			return total, err
		}
		total += len(gone)
		if deleted != nil {
			for _, id := range gone {
				deleted(id)
			}
		}
	}
	return total, nil
}

// MarkReplayed increments Replays and sets LastReplayAt on each record. Records that no
// longer exist (deleted or expired meanwhile) are skipped and reported with an error wrapping
// ErrNotFound after the others are marked.
func (s *Store) MarkReplayed(ids ...string) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.life.RUnlock()
	now := s.cfg.Now()
	var missing, marked []string
	var replays []int
	err := s.update(func(txn *badger.Txn, _ *delta) error {
		missing, marked, replays = missing[:0], marked[:0], replays[:0]
		for _, id := range ids {
			cid, ok := canonicalID(id)
			if !ok {
				missing = append(missing, id)
				continue
			}
			r, err := getRecord(txn, cid)
			if errors.Is(err, ErrNotFound) {
				missing = append(missing, id)
				continue
			}
			if err != nil {
				return err
			}
			r.Replays++
			r.LastReplayAt = now
			if err := txn.Set(recordKey(cid), encodeRecord(r)); err != nil {
				return err
			}
			marked, replays = append(marked, cid), append(replays, r.Replays)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: mark replayed: %w", err)
	}
	s.notify(Change{Op: ChangeReplayed, IDs: marked, Replays: replays, At: now})
	if len(missing) > 0 {
		return fmt.Errorf("store: mark replayed: %d of %d records not found (first %s): %w", len(missing), len(ids), missing[0], ErrNotFound)
	}
	return nil
}

// Stats returns counts and disk usage. Counts are exact; sizes are read from the directory.
func (s *Store) Stats() Stats {
	s.cntMu.Lock()
	st := Stats{Records: s.total, ByClass: make(map[string]int64, len(s.byClass))}
	for c, n := range s.byClass {
		st.ByClass[c] = n
	}
	s.cntMu.Unlock()
	if !s.cfg.InMemory {
		st.LSMBytes, st.VLogBytes = dirUsage(s.cfg.Dir)
	}
	return st
}

// trim drops the oldest records beyond MaxRecords.
func (s *Store) trim() error {
	if s.maxRecords.Load() <= 0 || s.count() <= s.maxRecords.Load() {
		return nil
	}
	s.trimMu.Lock()
	defer s.trimMu.Unlock()
	for {
		limit := s.maxRecords.Load()
		excess := s.count() - limit
		if limit <= 0 || excess <= 0 {
			return nil
		}
		ids, err := s.oldest(int(min(excess, deleteChunk)), "")
		if err != nil || len(ids) == 0 {
			return err
		}
		n, err := s.deleteIDs(ids)
		s.dropped.Add(int64(n))
		if err != nil {
			return fmt.Errorf("store: drop records over store.max_records: %w", err)
		}
	}
}

// oldest returns up to n of the oldest record IDs, only those below before when it is set.
func (s *Store) oldest(n int, before string) ([]string, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.life.RUnlock()
	var ids []string
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.Prefix = []byte(recordPrefix)
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid() && len(ids) < n; it.Next() {
			id := string(it.Item().Key()[len(recordPrefix):])
			if before != "" && id >= before {
				break
			}
			ids = append(ids, id)
		}
		return nil
	})
	return ids, err
}

// expire deletes records whose failure time is older than Retention.
func (s *Store) expire() (int, error) {
	retention := time.Duration(s.retention.Load())
	if retention <= 0 {
		return 0, nil
	}
	cutoff := boundID(s.cfg.Now().Add(-retention))
	total := 0
	for {
		ids, err := s.oldest(deleteChunk, cutoff)
		if err != nil || len(ids) == 0 {
			return total, err
		}
		n, err := s.deleteIDs(ids)
		total += n
		if err != nil {
			return total, err
		}
	}
}

// Run applies retention, trims the audit log and runs value-log GC every GCInterval until ctx
// is done or the store is closed. It returns nil then; failures of a pass are logged, not fatal,
// because the next pass retries and a DLQ store that has stopped shrinking must not stop the appliance.
func (s *Store) Run(ctx context.Context) error {
	t := time.NewTicker(s.cfg.GCInterval)
	defer t.Stop()
	for {
		s.maintain()
		select {
		case <-ctx.Done():
			return nil
		case <-s.done:
			return nil
		case <-t.C:
		case <-s.kick:
		}
	}
}

// SetLimits changes Retention and MaxRecords of the open store, checked as
// Config.Validate checks them; Run applies both at once (a pass that expires
// and trims) rather than at its next GCInterval, and Put trims by the new cap.
func (s *Store) SetLimits(retention time.Duration, maxRecords int) error {
	c := s.cfg
	c.Retention, c.MaxRecords = retention, maxRecords
	if err := c.Validate(); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	s.retention.Store(int64(retention))
	s.maxRecords.Store(int64(maxRecords))
	select {
	case s.kick <- struct{}{}:
	default: // a pass is already due
	}
	return nil
}

func (s *Store) maintain() {
	if n, err := s.expire(); err != nil && !errors.Is(err, ErrClosed) {
		s.log.Warn("store: retention pass failed", "err", err)
	} else if n > 0 {
		s.log.Info("store: expired dead-lettered records", "records", n, "retention", time.Duration(s.retention.Load()))
	}
	// Put trims as it goes; this catches a cap lowered by SetLimits.
	if err := s.trim(); err != nil && !errors.Is(err, ErrClosed) {
		s.log.Warn("store: trimming to store.dlq_max_records failed", "err", err)
	}
	if n := s.dropped.Swap(0); n > 0 {
		s.log.Warn("store: dropped oldest dead-lettered records over the cap", "records", n, "max_records", s.maxRecords.Load())
	}
	if err := s.trimAudit(); err != nil && !errors.Is(err, ErrClosed) {
		s.log.Warn("store: audit log trim failed", "err", err)
	}
	if err := s.gcValueLog(); err != nil && !errors.Is(err, ErrClosed) {
		s.log.Warn("store: value-log GC failed", "err", err)
	}
}

// gcValueLog rewrites value-log files until none is at least half garbage.
func (s *Store) gcValueLog() error {
	if s.cfg.InMemory {
		return nil
	}
	if err := s.checkSpace(false); err != nil {
		return nil // GC writes the live values it moves; it waits for space like any write
	}
	for i := 0; ; i++ {
		if err := s.enter(); err != nil {
			return err
		}
		err := s.db.RunValueLogGC(0.5)
		s.life.RUnlock()
		switch {
		case errors.Is(err, badger.ErrNoRewrite), errors.Is(err, badger.ErrRejected):
			if i > 0 {
				s.log.Debug("store: value-log GC rewrote files", "files", i)
			}
			return nil
		case err != nil:
			return err
		}
	}
}

// heldByAnotherProcess says whether badger.Open failed on its directory lock.
// Badger flattens the lock error into text (errors.Is(err, EWOULDBLOCK)
// cannot work), and the text differs by platform: "Cannot acquire
// directory lock on …" after flock on Unix, "Cannot create lock file …"
// after CreateFile on Windows. Both end in the sentence matched here, the
// one Badger's own tests check.
func heldByAnotherProcess(err error) bool {
	return strings.Contains(err.Error(), "Another process is using this Badger database")
}
