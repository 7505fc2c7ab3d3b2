package store

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// Badger tuning for edge boxes with little RAM. Badger's defaults target servers (64 MiB
// memtables ×5, a 256 MiB block cache, 1 GiB value-log files, 4 compactors); a DLQ store
// sees a trickle of writes and rare reads, so we trade peak write throughput for memory.
// Measured with store/internal/rssprobe (numbers in docs/store.md):
//
//   - memTableSize 8 MiB, 2 memtables: the memtable arena is Go heap, and table builders
//     (flush, compaction) grow buffers in proportion to it; 8 rather than 16 MiB cut peak
//     anonymous RSS under a write flood from ~300 to ~200 MiB. The cost: Badger caps a
//     transaction at 15% of a memtable (1.2 MiB, ~900 1 KiB records), so Put splits bigger batches.
//   - blockCacheSize 8 MiB, indexCacheSize 4 MiB: reads are operator browsing, not a hot path;
//     bounding the index cache keeps table indexes and bloom filters from growing with the data.
//   - Snappy compression stays on: realistic JSON requests (random sensor readings) shrink
//     2.7× on disk (100k records: 42 MiB vs 114 MiB), and edge disks are small too. Compressed
//     blocks are what the block cache is for, so it is small but not zero.
//   - numCompactors 2: Badger's minimum that still compacts correctly.
//   - valueLogFileSize 64 MiB: value-log GC rewrites whole files, so smaller files are reclaimed
//     sooner and a GC pass touches less disk.
//   - valueThreshold 4 KiB: typical requests (a few hundred bytes to a few KiB of JSON) stay in
//     the LSM, where deleting them is reclaimed by compaction alone; large payloads (images,
//     big tensors) go to the value log so they do not inflate compaction.
//   - checksums verified on every block read (OnBlockRead): a damaged table then fails
//     loudly (ErrCorrupt, health.go) instead of decoding garbage or silently ending an
//     iteration; Open also verifies every table once. Cost: a CRC32C over each block read
//     from disk, small next to Snappy decoding it.
//   - metrics off: Badger's expvar metrics cost atomics on every read; Stats walks the directory.
const (
	memTableSize     = 8 << 20
	numMemtables     = 2
	blockCacheSize   = 8 << 20
	indexCacheSize   = 4 << 20
	numCompactors    = 2
	valueLogFileSize = 64 << 20
	valueThreshold   = 4 << 10
	blockSize        = 4 << 10 // Badger's default, needed to read a table on its own (verifyTable)
)

func badgerOptions(cfg Config, logger *slog.Logger) badger.Options {
	dir := cfg.Dir
	if cfg.InMemory {
		dir = ""
	}
	return badger.DefaultOptions(dir).
		WithInMemory(cfg.InMemory).
		WithSyncWrites(cfg.SyncWrites).
		WithMemTableSize(memTableSize).
		WithNumMemtables(numMemtables).
		WithBlockCacheSize(blockCacheSize).
		WithIndexCacheSize(indexCacheSize).
		WithCompression(options.Snappy).
		WithNumCompactors(numCompactors).
		WithNumGoroutines(2).
		WithValueLogFileSize(valueLogFileSize).
		WithValueThreshold(valueThreshold).
		WithBlockSize(blockSize).
		WithChecksumVerificationMode(options.OnBlockRead).
		WithMetricsEnabled(false).
		WithLogger(badgerLogger{logger.With("component", "badger")}).
		WithLoggingLevel(badger.WARNING)
}

// badgerLogger routes Badger's printf-style logging to slog. Badger is set to WARNING, so
// its chatty per-compaction info lines never reach here.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any)   { b.l.Error(msg(f, a)) }
func (b badgerLogger) Warningf(f string, a ...any) { b.l.Warn(msg(f, a)) }
func (b badgerLogger) Infof(f string, a ...any)    { b.l.Info(msg(f, a)) }
func (b badgerLogger) Debugf(f string, a ...any)   { b.l.Debug(msg(f, a)) }

func msg(f string, a []any) string { return strings.TrimSpace(fmt.Sprintf(f, a...)) }
