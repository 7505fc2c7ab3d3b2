package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// PutSetting stores a small value under key (settings changed from the dashboard, for example).
func (s *Store) PutSetting(key string, val []byte) error {
	if key == "" {
		return fmt.Errorf("store: put setting: empty key: %w", ErrInvalid)
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.life.RUnlock()
	if err := s.checkSpace(false); err != nil {
		return fmt.Errorf("store: put setting %s: %w", key, err)
	}
	if err := s.db.Update(func(txn *badger.Txn) error {
		return txn.Set([]byte(settingPref+key), val)
	}); err != nil {
		return fmt.Errorf("store: put setting %s: %w", key, s.classify(err))
	}
	return nil
}

// GetSetting returns the value stored under key, or an error wrapping ErrNotFound.
func (s *Store) GetSetting(key string) ([]byte, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.life.RUnlock()
	var val []byte
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(settingPref + key))
		if err != nil {
			return err
		}
		val, err = item.ValueCopy(nil)
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, fmt.Errorf("store: setting %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: get setting %s: %w", key, err)
	}
	return val, nil
}

// DeleteSetting removes key; deleting a missing key is not an error.
func (s *Store) DeleteSetting(key string) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.life.RUnlock()
	if err := s.db.Update(func(txn *badger.Txn) error {
		return txn.Delete([]byte(settingPref + key))
	}); err != nil {
		return fmt.Errorf("store: delete setting %s: %w", key, s.classify(err))
	}
	return nil
}

// SettingsWithPrefix returns every setting whose key starts with prefix, keyed without the
// prefix, in key order.
func (s *Store) SettingsWithPrefix(prefix string) (map[string][]byte, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.life.RUnlock()
	out := make(map[string][]byte)
	full := []byte(settingPref + prefix)
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = full
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			out[string(it.Item().Key()[len(full):])] = v
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: settings %s*: %w", prefix, err)
	}
	return out, nil
}

// AuditEntry is one line of the audit log.
type AuditEntry struct {
	ID     string    `json:"id"`
	At     time.Time `json:"at"`
	Action string    `json:"action"`
	Detail string    `json:"detail,omitempty"`
	// Actor is who did it: a user name, "admin-token" for the bootstrap token, or empty
	// for entries written before users existed and for the appliance itself.
	Actor string `json:"actor,omitempty"`
}

// maxAuditEntries bounds the audit log; Run drops older entries. Admin actions are rare, so
// this is months of history in a few MiB.
var maxAuditEntries = 10_000

// Audit appends an entry (an admin action such as "dlq.replay") to the audit log, with no
// actor (the appliance itself).
func (s *Store) Audit(action, detail string) error { return s.AuditAs("", action, detail) }

// AuditAs appends an entry done by actor to the audit log.
func (s *Store) AuditAs(actor, action, detail string) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.life.RUnlock()
	at := s.cfg.Now().UTC()
	e := AuditEntry{ID: s.ids.next(at), At: at, Action: action, Detail: detail, Actor: actor}
	val, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("store: audit: %w", err)
	}
	if err := s.checkSpace(false); err != nil {
		return fmt.Errorf("store: audit: %w", err)
	}
	if err := s.db.Update(func(txn *badger.Txn) error {
		return txn.Set([]byte(auditPrefix+e.ID), val)
	}); err != nil {
		return fmt.Errorf("store: audit: %w", s.classify(err))
	}
	return nil
}

// AuditLog returns up to limit entries (default 100), newest first.
func (s *Store) AuditLog(limit int) ([]AuditEntry, error) {
	if limit <= 0 {
		limit = defaultLimit
	}
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.life.RUnlock()
	var out []AuditEntry
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Reverse = true
		opts.Prefix = []byte(auditPrefix)
		opts.PrefetchSize = min(limit, 100)
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Seek([]byte(auditPrefix + "\xff")); it.Valid() && len(out) < limit; it.Next() {
			var e AuditEntry
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &e) }); err != nil {
				return fmt.Errorf("entry %s: %w", it.Item().Key(), err)
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: audit log: %w", err)
	}
	return out, nil
}

// trimAudit deletes all but the newest maxAuditEntries entries.
func (s *Store) trimAudit() error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.life.RUnlock()
	var old [][]byte
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.Reverse = true
		opts.Prefix = []byte(auditPrefix)
		it := txn.NewIterator(opts)
		defer it.Close()
		n := 0
		for it.Seek([]byte(auditPrefix + "\xff")); it.Valid(); it.Next() {
			if n++; n > maxAuditEntries {
				old = append(old, it.Item().KeyCopy(nil))
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for len(old) > 0 {
		chunk := old[:min(len(old), deleteChunk)]
		old = old[len(chunk):]
		if err := s.db.Update(func(txn *badger.Txn) error {
			for _, k := range chunk {
				if err := txn.Delete(k); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return err
		}
	}
	return nil
}
