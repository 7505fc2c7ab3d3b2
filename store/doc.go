// Package store keeps infergate's local state in Badger: every dead-lettered request (for
// listing, inspection and replay from the dashboard and `infergate dlq`), small settings,
// and the audit log of admin actions.
//
// Records are keyed by a ULID derived from their failure time, so the primary key order is
// time order; secondary index keys for class and model let List, Count and DeleteMatching
// walk only the matching keys, and every filter (class, model, time range, IDs) is answered
// from keys alone. Deletes, retention and the MaxRecords cap remove a record and its index
// entries in one transaction.
//
// Lifecycle, as for other components: Open validates and opens; Run(ctx) applies retention,
// trims the audit log and runs value-log GC every GCInterval until ctx ends; Close (idempotent)
// waits for operations in flight. The appliance stops the store last.
//
// Put of 1 KiB records on a 2-core VM shared with other builds (realistic incompressible JSON;
// docs/store.md has the method and the spread):
//
//	one record per Put, no fsync       ~16–20k records/s
//	100 records per Put, no fsync      ~21–22k records/s
//	one record per Put, SyncWrites     ~500–800 records/s (one fsync per Put)
//	100 records per Put, SyncWrites    ~13–26k records/s
//
// Idle memory after reopening: +14 MiB RSS with 100k records, +75 MiB with 1M records (of
// which ~50 MiB is file-backed, reclaimable mmap of tables). Badger tuning and its reasons are
// in badger.go; measurements in docs/store.md.
package store
