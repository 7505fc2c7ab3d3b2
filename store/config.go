package store

import (
	"errors"
	"time"

	"github.com/infergate/infergate/internal/field"
)

// Defaults applied by DefaultConfig. The appliance composes this Config and overlays
// YAML, environment and flags on DefaultConfig, because for Retention and MaxRecords a zero value has a
// meaning of its own ("keep forever", "no cap") and cannot stand for "use the default".
const (
	DefaultRetention  = 7 * 24 * time.Hour
	DefaultMaxRecords = 1_000_000
	DefaultGCInterval = 5 * time.Minute
	// DefaultMinFreeBytes is the free-space floor below which writes are refused (see health.go).
	DefaultMinFreeBytes = 64 << 20
)

// Config configures the store.
type Config struct {
	// Dir is the Badger directory (<data dir>/store). Created if missing.
	Dir string
	// Retention drops dead-lettered records older than this (by failure time).
	// 0 keeps them forever.
	Retention time.Duration
	// MaxRecords caps how many records are kept; beyond it the oldest are dropped on Put.
	// 0 means no cap.
	MaxRecords int
	// GCInterval is how often Run applies retention and runs value-log GC.
	GCInterval time.Duration
	// InMemory keeps everything in RAM (tests, throwaway demos); Dir must then be empty.
	InMemory bool
	// SyncWrites fsyncs every commit. Off by default: without it a commit survives a process
	// crash (it is in the OS page cache) and is lost only on power loss or kernel crash, and
	// every DLQ record also lives in the Kafka DLQ topic.
	SyncWrites bool
	// MinFreeBytes is the free space the data dir's file system must keep: below it writes
	// are refused with ErrDiskFull (deletes run down to half of it), because Badger crashes
	// the process with SIGBUS when the disk fills under its mmapped files. 0 turns the
	// check off.
	MinFreeBytes int64
	// Now is the clock; nil means time.Now. Tests inject a fake one to exercise retention.
	Now func() time.Time
}

// DefaultConfig returns the defaults for a store in dir.
func DefaultConfig(dir string) Config {
	return Config{
		Dir:          dir,
		Retention:    DefaultRetention,
		MaxRecords:   DefaultMaxRecords,
		GCInterval:   DefaultGCInterval,
		MinFreeBytes: DefaultMinFreeBytes,
	}
}

// Validate reports every invalid tunable as a *field.Error. It changes
// nothing: defaults come from DefaultConfig. Where the store lives (Dir,
// InMemory) is checked by Open.
func (c *Config) Validate() error {
	var v field.Errors
	if c.Retention < 0 {
		v.Add(&c.Retention, "Retention", "%s: must not be negative (0 keeps records forever)", c.Retention)
	}
	if c.MaxRecords < 0 {
		v.Add(&c.MaxRecords, "MaxRecords", "%d: must be >= 0 (0: no cap)", c.MaxRecords)
	}
	if c.MinFreeBytes < 0 {
		v.Add(&c.MinFreeBytes, "MinFreeBytes", "%d: must be >= 0 (0 turns the free-space check off)", c.MinFreeBytes)
	}
	if c.GCInterval < time.Millisecond {
		v.Add(&c.GCInterval, "GCInterval", "%s: must be at least 1ms", c.GCInterval)
	}
	return v.Err()
}

// checkPlace checks where the store lives.
func (c *Config) checkPlace() error {
	switch {
	case c.InMemory && c.Dir != "":
		return errors.New("store: Dir must be empty when the store is in memory")
	case !c.InMemory && c.Dir == "":
		return errors.New("store: Dir must be set")
	}
	return nil
}
