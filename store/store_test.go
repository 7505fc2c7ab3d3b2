package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/infergate/infergate/internal/field"
	"github.com/infergate/infergate/internal/testutil"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// openTest opens a store in a fresh temp dir; mutate adjusts the config first.
func openTest(t *testing.T, mutate func(*Config)) *Store {
	t.Helper()
	cfg := DefaultConfig(t.TempDir())
	if mutate != nil {
		mutate(&cfg)
	}
	s, err := Open(cfg, testutil.Logger(t))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		checkConsistent(t, s)
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func rec(class, model string, at time.Time) *Record {
	return &Record{
		Key:             []byte("k"),
		Value:           []byte(`{"request_id":"r","features":[1,2,3]}`),
		Headers:         []Header{{Key: "model", Value: []byte(model)}},
		Class:           class,
		Message:         class + " failed",
		Model:           model,
		SourceTopic:     "inference_requests",
		SourcePartition: 3,
		SourceOffset:    42,
		Attempts:        1,
		FailedAt:        at,
	}
}

func mustPut(t *testing.T, s *Store, recs ...*Record) {
	t.Helper()
	if err := s.Put(context.Background(), recs...); err != nil {
		t.Fatalf("Put: %v", err)
	}
}

func ids(recs []*Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.ID
	}
	return out
}

// checkConsistent walks every key and verifies records and index entries agree with each
// other and with the in-memory counts.
func checkConsistent(t *testing.T, s *Store) {
	t.Helper()
	if s.closed {
		return
	}
	records := map[string]*Record{}
	classIdx := map[string]string{}
	modelIdx := map[string]string{}
	sourceIdx := map[string]string{} // source key -> id
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := string(it.Item().Key())
			switch {
			case strings.HasPrefix(k, recordPrefix):
				id := k[len(recordPrefix):]
				r, err := getRecord(txn, id)
				if err != nil {
					return err
				}
				records[id] = r
			case strings.HasPrefix(k, "i/c/"), strings.HasPrefix(k, "i/m/"):
				name, id, ok := strings.Cut(k[4:], "\x00")
				if !ok {
					return fmt.Errorf("index key %q without NUL", k)
				}
				if k[2] == 'c' {
					classIdx[id] = name
				} else {
					modelIdx[id] = name
				}
			case strings.HasPrefix(k, "i/s/"):
				v, err := it.Item().ValueCopy(nil)
				if err != nil {
					return err
				}
				sourceIdx[k] = string(v)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk: %v", err)
	}
	byClass := map[string]int64{}
	for id, r := range records {
		byClass[r.Class]++
		if c, ok := classIdx[id]; !ok || c != r.Class {
			t.Errorf("record %s class %q: class index %q (present %v)", id, r.Class, c, ok)
		}
		if m, ok := modelIdx[id]; (r.Model != "") != ok || m != r.Model {
			t.Errorf("record %s model %q: model index %q (present %v)", id, r.Model, m, ok)
		}
	}
	for id := range classIdx {
		if records[id] == nil {
			t.Errorf("class index entry for missing record %s", id)
		}
	}
	for id := range modelIdx {
		if records[id] == nil {
			t.Errorf("model index entry for missing record %s", id)
		}
	}
	for k, id := range sourceIdx {
		r := records[id]
		if r == nil {
			t.Errorf("source index entry %q for missing record %s", k, id)
		} else if string(sourceKey(r.SourceTopic, r.SourcePartition, r.SourceOffset)) != k {
			t.Errorf("source index entry %q names record %s of another source", k, id)
		}
	}
	st := s.Stats()
	if st.Records != int64(len(records)) {
		t.Errorf("Stats.Records = %d, store holds %d", st.Records, len(records))
	}
	if fmt.Sprint(st.ByClass) != fmt.Sprint(byClass) {
		t.Errorf("Stats.ByClass = %v, store holds %v", st.ByClass, byClass)
	}
}

func TestPutGetRoundTrip(t *testing.T) {
	clock := newClock()
	s := openTest(t, func(c *Config) { c.Now = clock.Now })
	in := rec("decode", "demo", time.Time{})
	in.Key = nil // a null Kafka key must stay null, not become empty
	in.Headers = append(in.Headers, Header{Key: "empty", Value: []byte{}}, Header{Key: "null"})
	mustPut(t, s, in)
	if in.ID == "" || !in.FailedAt.Equal(clock.Now()) {
		t.Fatalf("Put did not assign ID/FailedAt: %q %v", in.ID, in.FailedAt)
	}
	if got := idTime(in.ID); !got.Equal(clock.Now()) {
		t.Errorf("ID time %v, want failure time %v", got, clock.Now())
	}
	got, err := s.Get(strings.ToLower(in.ID))
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if got.Key != nil || got.Headers[1].Value == nil || got.Headers[2].Value != nil {
		t.Errorf("nil/empty distinction lost: key %v, headers %#v", got.Key, got.Headers)
	}
	if got.ID != in.ID || string(got.Value) != string(in.Value) || got.Class != "decode" || got.Model != "demo" ||
		got.Message != in.Message || got.SourceTopic != in.SourceTopic || got.SourcePartition != 3 ||
		got.SourceOffset != 42 || got.Attempts != 1 || !got.FailedAt.Equal(in.FailedAt) {
		t.Errorf("Get = %+v, want %+v", got, in)
	}
	if _, err := s.Get("01ARZ3NDEKTSV4RRFFQ69G5FAV"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(unknown) err = %v, want ErrNotFound", err)
	}
	if _, err := s.Get("not-an-id"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(garbage) err = %v, want ErrNotFound", err)
	}
}

func TestListNewestFirstWithPaging(t *testing.T) {
	clock := newClock()
	s := openTest(t, func(c *Config) { c.Now = clock.Now })
	var want []string
	for i := range 25 {
		r := rec("model", "demo", time.Time{})
		mustPut(t, s, r)
		want = append([]string{r.ID}, want...)
		if i%3 == 0 { // several records in the same millisecond must keep Put order too
			clock.Add(time.Second)
		}
	}
	var got []string
	cursor := ""
	pages := 0
	for {
		page, next, err := s.List(Filter{Limit: 10, Cursor: cursor})
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		pages++
		got = append(got, ids(page)...)
		if next == "" {
			break
		}
		cursor = next
	}
	if pages != 3 || strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("paged List in %d pages = %v, want newest first %v", pages, got, want)
	}
	// Exactly one full page: no cursor, so no empty page follows.
	if _, next, _ := s.List(Filter{Limit: 25}); next != "" {
		t.Errorf("List of all 25 with limit 25 returned cursor %q", next)
	}
	if _, _, err := s.List(Filter{Cursor: "bogus"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad cursor err = %v, want ErrInvalid", err)
	}
}

func TestFilters(t *testing.T) {
	clock := newClock()
	s := openTest(t, func(c *Config) { c.Now = clock.Now })
	start := clock.Now()
	classes := []string{"decode", "validation", "model", "unavailable", "internal"}
	models := []string{"demo", "demo/v2", "other", ""}
	var all []*Record
	for i := range 40 {
		r := rec(classes[i%len(classes)], models[i%len(models)], start.Add(time.Duration(i)*time.Minute))
		all = append([]*Record{r}, all...) // newest first
	}
	mustPut(t, s, all...)

	expect := func(keep func(r *Record) bool) []string {
		var out []string
		for _, r := range all {
			if keep(r) {
				out = append(out, r.ID)
			}
		}
		return out
	}
	some := []string{all[3].ID, all[7].ID, strings.ToLower(all[8].ID), all[3].ID, "junk"}
	inSome := func(r *Record) bool { return r == all[3] || r == all[7] || r == all[8] }
	since, until := start.Add(10*time.Minute), start.Add(20*time.Minute)
	inTime := func(r *Record) bool { return !r.FailedAt.Before(since) && r.FailedAt.Before(until) }
	for _, tc := range []struct {
		name string
		f    Filter
		keep func(*Record) bool
	}{
		{"all", Filter{}, func(*Record) bool { return true }},
		{"class", Filter{Class: "model"}, func(r *Record) bool { return r.Class == "model" }},
		{"model", Filter{Model: "demo"}, func(r *Record) bool { return r.Model == "demo" }},
		{"model with slash", Filter{Model: "demo/v2"}, func(r *Record) bool { return r.Model == "demo/v2" }},
		{"class and model", Filter{Class: "decode", Model: "demo"}, func(r *Record) bool { return r.Class == "decode" && r.Model == "demo" }},
		{"time", Filter{Since: since, Until: until}, inTime},
		{"since", Filter{Since: since}, func(r *Record) bool { return !r.FailedAt.Before(since) }},
		{"until", Filter{Until: until}, func(r *Record) bool { return r.FailedAt.Before(until) }},
		{"class and time", Filter{Class: "validation", Since: since, Until: until}, func(r *Record) bool { return r.Class == "validation" && inTime(r) }},
		{"model and time", Filter{Model: "other", Since: since}, func(r *Record) bool { return r.Model == "other" && !r.FailedAt.Before(since) }},
		{"ids", Filter{IDs: some}, inSome},
		{"ids and class", Filter{IDs: some, Class: all[7].Class}, func(r *Record) bool { return inSome(r) && r.Class == all[7].Class }},
		{"ids and time", Filter{IDs: some, Until: all[7].FailedAt.Add(time.Millisecond)}, func(r *Record) bool { return r == all[7] || r == all[8] }},
		{"unknown class", Filter{Class: "nope"}, func(*Record) bool { return false }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := expect(tc.keep)
			var got []string
			f := tc.f
			f.Limit = 4
			for {
				page, next, err := s.List(f)
				if err != nil {
					t.Fatalf("List: %v", err)
				}
				got = append(got, ids(page)...)
				if next == "" {
					break
				}
				f.Cursor = next
			}
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("List = %v\nwant %v", got, want)
			}
			f.Cursor = "01ARZ3NDEKTSV4RRFFQ69G5FAV" // Count ignores Limit and Cursor
			if n, err := s.Count(f); err != nil || n != len(want) {
				t.Errorf("Count = %d, %v; want %d", n, err, len(want))
			}
		})
	}
}

func TestDeleteKeepsIndexesConsistent(t *testing.T) {
	s := openTest(t, nil)
	var recs []*Record
	for i := range 30 {
		recs = append(recs, rec([]string{"decode", "model"}[i%2], []string{"demo", ""}[i%3%2], time.Time{}))
	}
	mustPut(t, s, recs...)
	n, err := s.Delete(recs[0].ID, strings.ToLower(recs[1].ID), recs[0].ID, "01ARZ3NDEKTSV4RRFFQ69G5FAV", "junk")
	if err != nil || n != 2 {
		t.Fatalf("Delete = %d, %v; want 2", n, err)
	}
	if _, err := s.Get(recs[0].ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted record still there: %v", err)
	}
	checkConsistent(t, s)

	before, _ := s.Count(Filter{Class: "decode", Model: "demo"})
	// Limit and Cursor must not narrow a DeleteMatching.
	n, err = s.DeleteMatching(Filter{Class: "decode", Model: "demo", Limit: 1, Cursor: recs[0].ID})
	left, _ := s.Count(Filter{Class: "decode", Model: "demo"})
	if err != nil || before != 9 || n != before || left != 0 {
		t.Fatalf("DeleteMatching = %d, %v; had %d (want 9), %d left", n, err, before, left)
	}
	checkConsistent(t, s)
	if n, err := s.DeleteMatching(Filter{}); err != nil || n != 28-9 {
		t.Errorf("DeleteMatching(all) = %d, %v; want %d", n, err, 28-9)
	}
}

func TestPutSameIDReplacesIndexes(t *testing.T) {
	s := openTest(t, nil)
	r := rec("decode", "demo", time.Time{})
	mustPut(t, s, r)
	r.Class, r.Model = "model", "other"
	mustPut(t, s, r) // as a retried Put, or an import with the record's own ID, would
	checkConsistent(t, s)
	if st := s.Stats(); st.Records != 1 || st.ByClass["model"] != 1 || len(st.ByClass) != 1 {
		t.Errorf("Stats = %+v, want one record of class model", st)
	}
	if err := s.Put(context.Background(), &Record{ID: "junk"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Put with non-ULID ID err = %v, want ErrInvalid", err)
	}
	if err := s.Put(context.Background(), &Record{Class: "a\x00b"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Put with NUL in class err = %v, want ErrInvalid", err)
	}
}

// TestPutFromSourceOverwritesRedelivery: the same request dead-lettered twice (an
// at-least-once redelivery after a crash, or a transaction aborted after the store write) is
// one record, which keeps its first id, failure time and replay count and takes the newer
// failure's message; another request, or the same offset with other content, is a record of
// its own. Issue 9, row 15.
func TestPutFromSourceOverwritesRedelivery(t *testing.T) {
	clock := newClock()
	s := openTest(t, func(c *Config) { c.Now = clock.Now })
	first := rec("model", "demo", time.Time{})
	mustPutSourced(t, s, first)
	if err := s.MarkReplayed(first.ID); err != nil {
		t.Fatal(err)
	}
	firstAt := clock.Now()

	clock.Add(time.Minute)
	again := rec("timeout", "demo", time.Time{})
	again.Message, again.Attempts = "deadline exceeded again", 3
	mustPutSourced(t, s, again)
	if again.ID != first.ID {
		t.Fatalf("redelivered failure got id %s, want the first record's %s", again.ID, first.ID)
	}
	got, err := s.Get(first.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Class != "timeout" || got.Message != again.Message || got.Attempts != 3 || got.Replays != 1 || !got.FailedAt.Equal(firstAt) {
		t.Errorf("overwritten record = %+v; want the new class/message/attempts, replays 1, failed at %v", got, firstAt)
	}
	if st := s.Stats(); st.Records != 1 || st.ByClass["timeout"] != 1 || len(st.ByClass) != 1 {
		t.Errorf("Stats = %+v, want one record of class timeout", st)
	}
	checkConsistent(t, s)

	other := rec("model", "demo", time.Time{})
	other.SourceOffset = 43
	recreated := rec("model", "demo", time.Time{}) // same offset, other content: a re-created topic
	recreated.Value = []byte(`{"request_id":"other"}`)
	mustPutSourced(t, s, other, recreated)
	if other.ID == first.ID || recreated.ID == first.ID || other.ID == recreated.ID {
		t.Errorf("distinct requests share ids: first %s other %s recreated %s", first.ID, other.ID, recreated.ID)
	}
	if n, _ := s.Count(Filter{}); n != 3 {
		t.Errorf("Count = %d, want 3", n)
	}
	checkConsistent(t, s)

	// Deleting a record drops its source entry; a later failure of that source is new.
	if _, err := s.Delete(other.ID); err != nil {
		t.Fatal(err)
	}
	checkConsistent(t, s)
	again2 := rec("model", "demo", time.Time{})
	again2.SourceOffset = 43
	mustPutSourced(t, s, again2)
	if again2.ID == other.ID {
		t.Errorf("a deleted record's id %s was reused", other.ID)
	}
	// Plain Put does not deduplicate (imports, tests, the web's own test path).
	plain := rec("model", "demo", time.Time{})
	mustPut(t, s, plain)
	if plain.ID == first.ID || plain.ID == recreated.ID {
		t.Errorf("plain Put reused id %s", plain.ID)
	}
	checkConsistent(t, s)
}

func mustPutSourced(t *testing.T, s *Store, recs ...*Record) {
	t.Helper()
	if err := s.PutFromSource(context.Background(), recs...); err != nil {
		t.Fatalf("PutFromSource: %v", err)
	}
}

func TestMarkReplayed(t *testing.T) {
	clock := newClock()
	s := openTest(t, func(c *Config) { c.Now = clock.Now })
	a, b := rec("model", "demo", time.Time{}), rec("model", "demo", time.Time{})
	mustPut(t, s, a, b)
	clock.Add(time.Hour)
	if err := s.MarkReplayed(a.ID, a.ID); err != nil {
		t.Fatalf("MarkReplayed: %v", err)
	}
	got, _ := s.Get(a.ID)
	if got.Replays != 2 || !got.LastReplayAt.Equal(clock.Now()) {
		t.Errorf("after replay: Replays %d LastReplayAt %v", got.Replays, got.LastReplayAt)
	}
	err := s.MarkReplayed(b.ID, "01ARZ3NDEKTSV4RRFFQ69G5FAV")
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("MarkReplayed with a missing id err = %v, want ErrNotFound", err)
	}
	if got, _ := s.Get(b.ID); got.Replays != 1 {
		t.Errorf("existing record not marked when another was missing: Replays %d", got.Replays)
	}
}

func TestRetention(t *testing.T) {
	clock := newClock()
	s := openTest(t, func(c *Config) {
		c.Now = clock.Now
		c.Retention = 24 * time.Hour
		c.GCInterval = 5 * time.Millisecond
	})
	var old, fresh []*Record
	for i := range 1200 { // more than one delete chunk
		old = append(old, rec([]string{"decode", "model"}[i%2], "demo", time.Time{}))
	}
	mustPut(t, s, old...)
	clock.Add(20 * time.Hour)
	for range 5 {
		fresh = append(fresh, rec("validation", "", time.Time{}))
	}
	mustPut(t, s, fresh...)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()

	// Nothing is old enough yet; then time moves past the first batch's retention.
	if n, _ := s.Count(Filter{}); n != 1205 {
		t.Fatalf("Count = %d before expiry, want 1205", n)
	}
	clock.Add(5 * time.Hour)
	testutil.WaitFor(t, 10*time.Second, "5 records", func() bool { n, _ := s.Count(Filter{}); return n == 5 })
	left, _, _ := s.List(Filter{})
	if strings.Join(ids(left), ",") != strings.Join(ids(reverse(fresh)), ",") {
		t.Errorf("after retention left %v, want the fresh records", ids(left))
	}
	if n, _ := s.Count(Filter{Model: "demo"}); n != 0 {
		t.Errorf("model index still lists %d expired records", n)
	}
	checkConsistent(t, s)
}

func reverse(recs []*Record) []*Record {
	out := make([]*Record, len(recs))
	for i, r := range recs {
		out[len(recs)-1-i] = r
	}
	return out
}

func TestMaxRecordsDropsOldest(t *testing.T) {
	s := openTest(t, func(c *Config) { c.MaxRecords = 10 })
	var all []*Record
	for range 5 {
		batch := []*Record{rec("decode", "demo", time.Time{}), rec("model", "", time.Time{}), rec("internal", "x", time.Time{})}
		mustPut(t, s, batch...)
		all = append(all, batch...)
	}
	got, _, err := s.List(Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if want := ids(reverse(all))[:10]; strings.Join(ids(got), ",") != strings.Join(want, ",") {
		t.Errorf("kept %v, want the 10 newest %v", ids(got), want)
	}
	if s.dropped.Load() != 5 {
		t.Errorf("dropped counter = %d, want 5", s.dropped.Load())
	}
}

func TestReopenKeepsData(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(DefaultConfig(dir), testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	a, b := rec("decode", "", time.Time{}), rec("model", "demo", time.Time{})
	mustPut(t, s, a, b)
	if err := s.PutSetting("pipeline.paused", []byte("true")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(DefaultConfig(dir), testutil.Logger(t))
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	if got, err := s.Get(b.ID); err != nil || got.Model != "demo" {
		t.Fatalf("Get after reopen = %+v, %v", got, err)
	}
	if st := s.Stats(); st.Records != 2 || st.ByClass["decode"] != 1 || st.ByClass["model"] != 1 {
		t.Errorf("Stats after reopen = %+v", st)
	}
	if v, err := s.GetSetting("pipeline.paused"); err != nil || string(v) != "true" {
		t.Errorf("setting after reopen = %q, %v", v, err)
	}
	checkConsistent(t, s)
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(DefaultConfig(dir), testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = Open(DefaultConfig(dir), testutil.Logger(t))
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "in use by another infergate?") || !strings.Contains(err.Error(), dir) {
		t.Errorf("second Open of %s: err = %v, want ErrLocked naming the dir", dir, err)
	}

	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Open(DefaultConfig(filepath.Join(file, "store")), testutil.Logger(t))
	if err == nil || !strings.Contains(err.Error(), "data dir") {
		t.Errorf("Open under a regular file: err = %v, want a data dir error", err)
	}
	if os.Geteuid() != 0 { // root writes anywhere
		ro := t.TempDir()
		if err := os.Chmod(ro, 0o500); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(ro, 0o700) })
		if _, err = Open(DefaultConfig(ro), testutil.Logger(t)); err == nil || !strings.Contains(err.Error(), "not writable") {
			t.Errorf("Open of read-only dir: err = %v, want not writable", err)
		}
	}
}

// The lock error is recognised from Badger's text on every platform, so
// that a second process (`infergate dlq list` next to a running service)
// gets ErrLocked and turns to the admin API. TestOpenErrors opens a locked
// store for real on this platform; the Windows text cannot be produced on
// Linux, so it is checked here as Badger v4.9.6 writes it (dir_windows.go:
// CreateFile with no sharing fails while the service holds the file);
// packaging's TestWindowsUnderWine produces it for real under Wine.
func TestHeldByAnotherProcess(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       bool
	}{
		{"unix flock", `Cannot acquire directory lock on "/var/lib/infergate/store".  Another process is using this Badger database.: resource temporarily unavailable`, true},
		// Badger's text as infergate.exe printed it under Wine 8.0 (2026-12-06).
		{"windows CreateFile", `Cannot create lock file "C:\\ProgramData\\infergate\\data\\store\\LOCK".  Another process is using this Badger database err: Sharing violation.`, true},
		{"other open error", `Error while creating log file in valueLog.open: open /x/000001.vlog: no space left on device`, false},
	} {
		if got := heldByAnotherProcess(errors.New(tc.text)); got != tc.want {
			t.Errorf("%s: heldByAnotherProcess = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	inMemory := func(edit func(*Config)) Config {
		c := DefaultConfig("")
		c.InMemory = true
		edit(&c)
		return c
	}
	for _, tc := range []struct {
		cfg  Config
		want string // the field at fault, "" for a valid Config
	}{
		{DefaultConfig("/x"), ""},
		{inMemory(func(*Config) {}), ""},
		{inMemory(func(c *Config) { c.Retention = -time.Second }), "Retention"},
		{inMemory(func(c *Config) { c.MaxRecords = -1 }), "MaxRecords"},
		{inMemory(func(c *Config) { c.MinFreeBytes = -1 }), "MinFreeBytes"},
		{inMemory(func(c *Config) { c.GCInterval = 0 }), "GCInterval"},
		{inMemory(func(c *Config) { c.GCInterval = time.Microsecond }), "GCInterval"},
	} {
		fields, other := field.All(tc.cfg.Validate())
		var got []string
		for _, f := range fields {
			got = append(got, f.Name)
		}
		if len(other) > 0 || strings.Join(got, ",") != tc.want {
			t.Errorf("Validate(%+v): fields at fault %v (other errors %v), want %q", tc.cfg, got, other, tc.want)
		}
	}
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{GCInterval: time.Minute}, "Dir must be set"},
		{Config{InMemory: true, Dir: "/x", GCInterval: time.Minute}, "Dir must be empty"},
		{Config{Dir: "/x", Retention: -1, GCInterval: time.Minute}, "Retention"},
	} {
		if _, err := Open(tc.cfg, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%+v): err = %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

func TestConcurrentPut(t *testing.T) {
	s := openTest(t, func(c *Config) { c.MaxRecords = 300 })
	const writers, each = 8, 50
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	seen := make(chan string, writers*each)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				r := rec([]string{"decode", "model", "internal"}[(w+i)%3], fmt.Sprint("m", w%2), time.Time{})
				if err := s.Put(context.Background(), r); err != nil {
					errs <- err
					return
				}
				seen <- r.ID
				if i%10 == 0 {
					if _, _, err := s.List(Filter{Class: "decode", Limit: 5}); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	close(seen)
	for err := range errs {
		t.Fatal(err)
	}
	unique := map[string]bool{}
	for id := range seen {
		unique[id] = true
	}
	if len(unique) != writers*each {
		t.Errorf("%d unique IDs for %d records", len(unique), writers*each)
	}
	if n, _ := s.Count(Filter{}); n != 300 {
		t.Errorf("Count = %d, want the cap 300", n)
	}
}

func TestRunReturnsWhenCancelledOrClosed(t *testing.T) {
	s := openTest(t, func(c *Config) { c.GCInterval = time.Hour })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}

	s2, err := Open(inMemoryConfig(), testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	go func() { done <- s2.Run(context.Background()) }()
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after Close")
	}
}

func TestCloseIsIdempotent(t *testing.T) {
	s, err := Open(inMemoryConfig(), testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, rec("decode", "", time.Time{}))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if err := s.Put(context.Background(), rec("decode", "", time.Time{})); !errors.Is(err, ErrClosed) {
		t.Errorf("Put after Close = %v, want ErrClosed", err)
	}
	if _, _, err := s.List(Filter{}); !errors.Is(err, ErrClosed) {
		t.Errorf("List after Close = %v, want ErrClosed", err)
	}
}

func TestSettingsAndAudit(t *testing.T) {
	clock := newClock()
	s := openTest(t, func(c *Config) { c.Now = clock.Now })
	if _, err := s.GetSetting("missing"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetSetting(missing) = %v, want ErrNotFound", err)
	}
	if err := s.PutSetting("a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if err := s.PutSetting("a", []byte("2")); err != nil {
		t.Fatal(err)
	}
	if v, err := s.GetSetting("a"); err != nil || !bytes.Equal(v, []byte("2")) {
		t.Errorf("GetSetting = %q, %v", v, err)
	}
	defer func(old int) { maxAuditEntries = old }(maxAuditEntries)
	maxAuditEntries = 3
	for i := range 5 {
		if err := s.Audit("dlq.replay", fmt.Sprint("ids=", i)); err != nil {
			t.Fatal(err)
		}
		clock.Add(time.Second)
	}
	log, err := s.AuditLog(2)
	if err != nil || len(log) != 2 || log[0].Detail != "ids=4" || log[1].Detail != "ids=3" || log[0].Action != "dlq.replay" {
		t.Fatalf("AuditLog(2) = %+v, %v", log, err)
	}
	if err := s.trimAudit(); err != nil {
		t.Fatal(err)
	}
	if log, _ := s.AuditLog(0); len(log) != 3 || log[2].Detail != "ids=2" {
		t.Errorf("after trim AuditLog = %+v, want the newest 3", log)
	}
}

func TestBigBatchIsSplit(t *testing.T) {
	s := openTest(t, nil)
	var recs []*Record
	for range 3000 { // ~4 MiB: more than one Badger transaction holds
		r := rec("decode", "demo", time.Time{})
		r.Value = bytes.Repeat([]byte("x"), 1300)
		recs = append(recs, r)
	}
	mustPut(t, s, recs...)
	if n, _ := s.Count(Filter{}); n != 3000 {
		t.Errorf("Count = %d, want 3000", n)
	}
}

func TestLargeValueGoesToValueLog(t *testing.T) {
	s := openTest(t, nil)
	r := rec("validation", "demo", time.Time{})
	r.Value = bytes.Repeat([]byte{7}, 256<<10)
	mustPut(t, s, r)
	got, err := s.Get(r.ID)
	if err != nil || !bytes.Equal(got.Value, r.Value) {
		t.Fatalf("large record did not round-trip: %v", err)
	}
	if _, err := s.Delete(r.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.gcValueLog(); err != nil {
		t.Errorf("value-log GC: %v", err)
	}
}

// TestReplayFailureUpdatesItsRecord: a replayed request (header replay.of) that fails again
// updates the record it replays instead of adding one per replay; a record deleted since, or
// other content, gets a record of its own.
func TestReplayFailureUpdatesItsRecord(t *testing.T) {
	clock := newClock()
	s := openTest(t, func(c *Config) { c.Now = clock.Now })
	first := rec("validation", "demo", time.Time{})
	mustPutSourced(t, s, first)
	firstAt := clock.Now()
	for i := range 3 {
		if err := s.MarkReplayed(first.ID); err != nil {
			t.Fatal(err)
		}
		clock.Add(time.Minute)
		again := rec("model", "demo", time.Time{})
		again.SourceOffset = int64(100 + i) // the replay is a new record of the requests topic
		again.Message = "rejected again"
		again.Headers = append(again.Headers, Header{Key: ReplayOfHeader, Value: []byte(first.ID)})
		mustPutSourced(t, s, again)
		if again.ID != first.ID {
			t.Fatalf("replay %d failed again as a new record %s, want %s updated", i+1, again.ID, first.ID)
		}
	}
	got, err := s.Get(first.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Class != "model" || got.Message != "rejected again" || got.SourceOffset != 102 || got.Replays != 3 || !got.FailedAt.Equal(firstAt) {
		t.Errorf("updated record = %+v; want class model, the last replay's offset 102, replays 3, failed at %v", got, firstAt)
	}
	if st := s.Stats(); st.Records != 1 || st.ByClass["model"] != 1 || len(st.ByClass) != 1 {
		t.Errorf("Stats = %+v, want one record of class model", st)
	}
	checkConsistent(t, s)

	other := rec("model", "demo", time.Time{})
	other.SourceOffset = 200
	other.Value = []byte(`{"request_id":"fixed by hand"}`)
	other.Headers = append(other.Headers, Header{Key: ReplayOfHeader, Value: []byte(first.ID)})
	mustPutSourced(t, s, other)
	if other.ID == first.ID {
		t.Errorf("other content replaced record %s", first.ID)
	}
	if _, err := s.Delete(first.ID); err != nil {
		t.Fatal(err)
	}
	gone := rec("model", "demo", time.Time{})
	gone.SourceOffset = 201
	gone.Headers = append(gone.Headers, Header{Key: ReplayOfHeader, Value: []byte(first.ID)})
	mustPutSourced(t, s, gone)
	if gone.ID == first.ID {
		t.Errorf("a deleted record's id %s was reused", first.ID)
	}
	checkConsistent(t, s)
}

// TestRetriedReplayFailureKeepsReplayCount: the failure of a replayed request is written
// by one Put that Badger may retry after a conflict with the operator's MarkReplayed (the
// replay is produced before it is marked, so the failure can race the mark). The retry must
// read the replay count again, not write the one the first attempt read. A caller's retry of
// the same records takes the same path, so it is what this test does.
func TestRetriedReplayFailureKeepsReplayCount(t *testing.T) {
	s := openTest(t, nil)
	first := rec("validation", "demo", time.Time{})
	mustPutSourced(t, s, first)
	again := rec("validation", "demo", time.Time{})
	again.SourceOffset = 100
	again.Headers = append(again.Headers, Header{Key: ReplayOfHeader, Value: []byte(first.ID)})
	mustPutSourced(t, s, again) // the attempt that read replays 0
	if again.ID != first.ID {
		t.Fatalf("replay failed again as a new record %s, want %s updated", again.ID, first.ID)
	}
	if err := s.MarkReplayed(first.ID); err != nil {
		t.Fatal(err)
	}
	mustPutSourced(t, s, again) // the retry
	got, err := s.Get(first.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Replays != 1 || got.LastReplayAt.IsZero() {
		t.Errorf("after a retried put: replays %d, last replay %v; want 1 and the mark's time", got.Replays, got.LastReplayAt)
	}

	// The same for a redelivery of the same source record (reuseSourceID).
	src := rec("validation", "demo", time.Time{})
	src.SourceOffset = 300
	mustPutSourced(t, s, src)
	if err := s.MarkReplayed(src.ID); err != nil {
		t.Fatal(err)
	}
	redelivered := *src
	redelivered.Replays, redelivered.LastReplayAt = 0, time.Time{}
	mustPutSourced(t, s, &redelivered)
	if got, err := s.Get(src.ID); err != nil || got.Replays != 1 {
		t.Errorf("after a redelivered failure with its record's id: %+v, %v; want replays 1", got, err)
	}
	checkConsistent(t, s)
}

func inMemoryConfig() Config {
	c := DefaultConfig("")
	c.InMemory = true
	return c
}
