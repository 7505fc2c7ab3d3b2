package store

import (
	"errors"
	"fmt"
	"time"
)

// Defaults applied by DefaultConfig. The appliance starts from DefaultConfig and overlays
// YAML, environment and flags, because for Retention and MaxRecords a zero value has a
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
	Dir string `yaml:"dir"`
	// Retention drops dead-lettered records older than this (by failure time).
	// 0 keeps them forever.
	Retention time.Duration `yaml:"retention"`
	// MaxRecords caps how many records are kept; beyond it the oldest are dropped on Put.
	// 0 means no cap.
	MaxRecords int `yaml:"max_records"`
	// GCInterval is how often Run applies retention and runs value-log GC. 0 means DefaultGCInterval.
	GCInterval time.Duration `yaml:"gc_interval"`
	// InMemory keeps everything in RAM (tests, throwaway demos); Dir must then be empty.
	InMemory bool `yaml:"-"`
	// SyncWrites fsyncs every commit. Off by default: without it a commit survives a process
	// crash (it is in the OS page cache) and is lost only on power loss or kernel crash, and
	// every DLQ record also lives in the Kafka DLQ topic.
	SyncWrites bool `yaml:"sync_writes"`
	// MinFreeBytes is the free space the data dir's file system must keep: below it writes
	// are refused with ErrDiskFull (deletes run down to half of it), because Badger crashes
	// the process with SIGBUS when the disk fills under its mmapped files. 0 turns the
	// check off.
	MinFreeBytes int64 `yaml:"min_free_bytes"`
	// Now is the clock; nil means time.Now. Tests inject a fake one to exercise retention.
	Now func() time.Time `yaml:"-"`
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

// Validate reports every invalid setting, each named as it appears in the config file.
func (c *Config) Validate() error {
	var errs []error
	switch {
	case c.InMemory && c.Dir != "":
		errs = append(errs, errors.New("store.dir: must be empty when the store is in memory"))
	case !c.InMemory && c.Dir == "":
		errs = append(errs, errors.New("store.dir: must be set"))
	}
	if c.Retention < 0 {
		errs = append(errs, fmt.Errorf("store.retention: must be >= 0 (0 keeps records forever), got %s", c.Retention))
	}
	if c.MaxRecords < 0 {
		errs = append(errs, fmt.Errorf("store.max_records: must be >= 0 (0 means no cap), got %d", c.MaxRecords))
	}
	if c.MinFreeBytes < 0 {
		errs = append(errs, fmt.Errorf("store.min_free_bytes: must be >= 0 (0 turns the check off), got %d", c.MinFreeBytes))
	}
	if c.GCInterval < 0 {
		errs = append(errs, fmt.Errorf("store.gc_interval: must be >= 0, got %s", c.GCInterval))
	} else if c.GCInterval > 0 && c.GCInterval < time.Millisecond {
		errs = append(errs, fmt.Errorf("store.gc_interval: must be at least 1ms, got %s", c.GCInterval))
	}
	return errors.Join(errs...)
}

func (c *Config) withDefaults() Config {
	out := *c
	if out.GCInterval == 0 {
		out.GCInterval = DefaultGCInterval
	}
	if out.Now == nil {
		out.Now = time.Now
	}
	return out
}
