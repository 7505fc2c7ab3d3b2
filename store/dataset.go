package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Datasets are named sets of request records saved for a rollout's offline
// check (a window of the requests topic, or a selection of the DLQ), scored
// later against any model version. They live under
//
//	q/i/<name>                 the Dataset (JSON), written last
//	q/r/<name>\x00<seq, 8 bytes big-endian>   one Record each (the DLQ's encoding)
//
// and expire with the store's retention (Config.Retention; Badger's TTL, so
// there is no sweep): a dataset is kept as long as a dead letter would be.
const (
	datasetInfoPrefix   = "q/i/"
	datasetRecordPrefix = "q/r/"
)

// MaxDatasetRecords and MaxDatasetBytes bound one dataset (with
// Config.MaxRecords, when it is lower): a capture stops there and says so.
const (
	MaxDatasetRecords = 100_000
	MaxDatasetBytes   = 64 << 20
)

// ErrExists: a dataset of that name exists already.
var ErrExists = errors.New("already exists")

// Dataset describes a saved dataset.
type Dataset struct {
	Name string `json:"name"`
	// Source is "requests" (a window of the requests topic) or "dlq".
	Source string `json:"source"`
	// Selection says what was asked for ("last 500", "since … until …",
	// "class model"), Model the model filter ("" none).
	Selection string    `json:"selection"`
	Model     string    `json:"model,omitempty"`
	Records   int       `json:"records"`
	Bytes     int64     `json:"bytes"`
	Truncated bool      `json:"truncated,omitempty"` // stopped at the size limit
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at,omitzero"` // zero: kept until deleted
}

func datasetInfoKey(name string) []byte { return []byte(datasetInfoPrefix + name) }
func datasetRecordsPrefix(name string) []byte {
	return []byte(datasetRecordPrefix + name + "\x00")
}

// DatasetLimit is how many records one dataset may hold here.
func (s *Store) DatasetLimit() int {
	if s.cfg.MaxRecords > 0 && s.cfg.MaxRecords < MaxDatasetRecords {
		return s.cfg.MaxRecords
	}
	return MaxDatasetRecords
}

// SaveDataset stores recs as dataset d.Name (Records, Bytes, CreatedAt and
// ExpiresAt are filled in; d is updated). An existing dataset of that name is
// ErrExists. Records beyond DatasetLimit or MaxDatasetBytes are left out and
// d.Truncated set. The records are written before the description, so a
// dataset is listed only once complete; what a crash leaves behind expires.
func (s *Store) SaveDataset(d *Dataset, recs []*Record) error {
	if d.Name == "" {
		return fmt.Errorf("store: save dataset: empty name: %w", ErrInvalid)
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.life.RUnlock()
	if err := s.checkSpace(false); err != nil {
		return fmt.Errorf("store: save dataset %s: %w", d.Name, err)
	}
	err := s.db.View(func(txn *badger.Txn) error {
		_, err := txn.Get(datasetInfoKey(d.Name))
		return err
	})
	switch {
	case err == nil:
		return fmt.Errorf("store: dataset %s: %w", d.Name, ErrExists)
	case !errors.Is(err, badger.ErrKeyNotFound):
		return fmt.Errorf("store: save dataset %s: %w", d.Name, s.classify(err))
	}
	// Left over from a capture that did not finish.
	if err := s.db.DropPrefix(datasetRecordsPrefix(d.Name)); err != nil {
		return fmt.Errorf("store: save dataset %s: %w", d.Name, s.classify(err))
	}
	now := s.cfg.Now().UTC()
	d.CreatedAt, d.ExpiresAt, d.Records, d.Bytes = now, time.Time{}, 0, 0
	var expires uint64
	if s.cfg.Retention > 0 {
		d.ExpiresAt = now.Add(s.cfg.Retention)
		// Badger expires entries by the wall clock, whatever Config.Now says.
		expires = uint64(time.Now().Add(s.cfg.Retention).Unix())
	}
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	limit := s.DatasetLimit()
	for _, r := range recs {
		if d.Records >= limit || d.Bytes+int64(len(r.Value)+len(r.Key)) > MaxDatasetBytes {
			d.Truncated = true
			break
		}
		key := binary.BigEndian.AppendUint64(datasetRecordsPrefix(d.Name), uint64(d.Records))
		e := badger.NewEntry(key, encodeRecord(r))
		e.ExpiresAt = expires
		if err := wb.SetEntry(e); err != nil {
			return fmt.Errorf("store: save dataset %s: %w", d.Name, s.classify(err))
		}
		d.Records++
		d.Bytes += int64(len(r.Value) + len(r.Key))
	}
	info, err := json.Marshal(d)
	if err != nil {
		return err
	}
	e := badger.NewEntry(datasetInfoKey(d.Name), info)
	e.ExpiresAt = expires
	if err := wb.SetEntry(e); err != nil {
		return fmt.Errorf("store: save dataset %s: %w", d.Name, s.classify(err))
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("store: save dataset %s: %w", d.Name, s.classify(err))
	}
	return nil
}

// Datasets lists the saved datasets by name.
func (s *Store) Datasets() ([]Dataset, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.life.RUnlock()
	out := []Dataset{}
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte(datasetInfoPrefix)
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var d Dataset
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &d) }); err != nil {
				continue // written by another build: not listed
			}
			out = append(out, d)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: list datasets: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// GetDataset returns the description of a dataset, or an error wrapping
// ErrNotFound.
func (s *Store) GetDataset(name string) (*Dataset, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.life.RUnlock()
	var d Dataset
	err := s.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(datasetInfoKey(name))
		if err != nil {
			return err
		}
		return it.Value(func(v []byte) error { return json.Unmarshal(v, &d) })
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, fmt.Errorf("store: dataset %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: dataset %s: %w", name, err)
	}
	return &d, nil
}

// ScanDataset calls fn with the records of a dataset in the order they were
// saved. The records are fn's to keep.
func (s *Store) ScanDataset(name string, fn func(r *Record) error) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.life.RUnlock()
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = datasetRecordsPrefix(name)
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			var r *Record
			err := item.Value(func(v []byte) error {
				var err error
				r, err = decodeRecord(fmt.Sprintf("%s/%d", name, binary.BigEndian.Uint64(item.Key()[len(opts.Prefix):])), v)
				return err
			})
			if err != nil {
				return err
			}
			if err := fn(r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: scan dataset %s: %w", name, err)
	}
	return nil
}

// DeleteDataset removes a dataset; a missing one is ErrNotFound.
func (s *Store) DeleteDataset(name string) error {
	if _, err := s.GetDataset(name); err != nil {
		return err
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.life.RUnlock()
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Delete(datasetInfoKey(name)) }); err != nil {
		return fmt.Errorf("store: delete dataset %s: %w", name, s.classify(err))
	}
	if err := s.db.DropPrefix(datasetRecordsPrefix(name)); err != nil {
		return fmt.Errorf("store: delete dataset %s: %w", name, s.classify(err))
	}
	return nil
}
