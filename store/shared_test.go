package store

import (
	"context"
	"slices"
	"testing"
	"time"
)

// TestSharedDLQ: two stores as two instances of a group. A dead letter put on one under
// its ID reaches the other through PutShared; a delete and a replay on either are
// announced (OnChange) and applied (ApplyChange); a deleted record read again from the
// topic is not stored again; a record stored locally under another ID for the same source
// is replaced by the topic's.
func TestSharedDLQ(t *testing.T) {
	ctx := context.Background()
	clock := newClock()
	a := openTest(t, func(c *Config) { c.Now = clock.Now })
	b := openTest(t, func(c *Config) { c.Now = clock.Now })
	var changes []Change
	a.OnChange(func(c Change) { changes = append(changes, c) })
	b.OnChange(func(c Change) { changes = append(changes, c) })

	// a dead-letters a request, stores it, and the topic carries it to b (and back to a).
	r := rec("model", "demo", time.Time{})
	mustPutSourced(t, a, r)
	for _, s := range []*Store{a, b} {
		cp := *r
		if err := s.PutShared(ctx, &cp); err != nil {
			t.Fatal(err)
		}
	}
	if st := b.Stats(); st.Records != 1 {
		t.Fatalf("b holds %d records, want 1", st.Records)
	}
	if got, err := b.Get(r.ID); err != nil || got.Model != "demo" || got.SourceOffset != 42 {
		t.Fatalf("b.Get(%s) = %+v, %v", r.ID, got, err)
	}

	// Replayed on b: announced with the new count, applied on a.
	clock.Add(time.Minute)
	if err := b.MarkReplayed(r.ID); err != nil {
		t.Fatal(err)
	}
	if len(changes) != 1 || changes[0].Op != ChangeReplayed || !slices.Equal(changes[0].IDs, []string{r.ID}) || changes[0].Replays[0] != 1 {
		t.Fatalf("changes after a replay = %+v", changes)
	}
	if err := a.ApplyChange(changes[0]); err != nil {
		t.Fatal(err)
	}
	if got, _ := a.Get(r.ID); got.Replays != 1 || !got.LastReplayAt.Equal(clock.Now()) {
		t.Errorf("a's record after b's replay: replays %d at %v, want 1 at %v", got.Replays, got.LastReplayAt, clock.Now())
	}
	// Applying it twice (the topic read again after a crash) changes nothing.
	if err := a.ApplyChange(changes[0]); err != nil {
		t.Fatal(err)
	}
	if got, _ := a.Get(r.ID); got.Replays != 1 {
		t.Errorf("replays %d after the same change twice, want 1", got.Replays)
	}
	// The topic's copy (replays 0) does not lower the count.
	cp := *r
	if err := a.PutShared(ctx, &cp); err != nil {
		t.Fatal(err)
	}
	if got, _ := a.Get(r.ID); got.Replays != 1 {
		t.Errorf("replays %d after PutShared of the topic's copy, want 1", got.Replays)
	}
	changes = nil

	// Deleted on a: announced, applied on b, and neither stores it again from the topic.
	if n, err := a.Delete(r.ID); err != nil || n != 1 {
		t.Fatalf("Delete = %d, %v", n, err)
	}
	if len(changes) != 1 || changes[0].Op != ChangeDelete || !slices.Equal(changes[0].IDs, []string{r.ID}) {
		t.Fatalf("changes after a delete = %+v", changes)
	}
	if err := b.ApplyChange(changes[0]); err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]*Store{"a": a, "b": b} {
		cp := *r
		if err := s.PutShared(ctx, &cp); err != nil {
			t.Fatal(err)
		}
		if st := s.Stats(); st.Records != 0 {
			t.Errorf("%s holds %d records after the delete and the topic's copy, want 0", name, st.Records)
		}
		checkConsistent(t, s)
	}
	changes = nil

	// A delete that arrives before the record (another partition of the topic) wins too.
	late := rec("decode", "", time.Time{})
	late.SourceOffset = 50
	mustPutSourced(t, a, late)
	if err := b.ApplyChange(Change{Op: ChangeDelete, IDs: []string{late.ID}}); err != nil {
		t.Fatal(err)
	}
	cp = *late
	if err := b.PutShared(ctx, &cp); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(late.ID); err == nil {
		t.Error("a record deleted before it arrived was stored")
	}
	if len(changes) != 0 {
		t.Errorf("ApplyChange announced %+v; it must not", changes)
	}

	// b stored a failure under its own ID, crashed before producing it; the redelivery
	// failed on a, whose ID the topic carries: b ends with a's ID only.
	mine := rec("model", "demo", time.Time{})
	mine.SourceOffset = 60
	mustPutSourced(t, b, mine)
	clock.Add(time.Second)
	theirs := rec("model", "demo", time.Time{})
	theirs.SourceOffset = 60
	mustPutSourced(t, a, theirs)
	if theirs.ID == mine.ID {
		t.Fatal("two stores gave one failure the same id")
	}
	cp = *theirs
	if err := b.PutShared(ctx, &cp); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(mine.ID); err == nil {
		t.Errorf("b kept its own id %s besides the topic's %s", mine.ID, theirs.ID)
	}
	if _, err := b.Get(theirs.ID); err != nil {
		t.Errorf("b: %v", err)
	}
	checkConsistent(t, b)

	if err := b.PutShared(ctx, &Record{Class: "model"}); err == nil {
		t.Error("PutShared of a record without id: no error")
	}
}
