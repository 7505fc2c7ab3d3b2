package store

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestDatasets: a dataset keeps its records in order with their source,
// expires with the store's retention, stops at the store's record cap, is
// not overwritten, and goes away whole when deleted.
func TestDatasets(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	s := openTest(t, func(c *Config) {
		c.Now = func() time.Time { return now }
		c.Retention = 48 * time.Hour
		c.MaxRecords = 5
	})
	if s.DatasetLimit() != 5 {
		t.Fatalf("limit %d, want the store's MaxRecords", s.DatasetLimit())
	}
	var recs []*Record
	for i := range 7 {
		recs = append(recs, &Record{Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, `{"features":[%d]}`, i),
			Headers: []Header{{Key: "model", Value: []byte("demo")}}, SourceTopic: "req", SourcePartition: 1, SourceOffset: int64(10 + i)})
	}
	d := &Dataset{Name: "a", Source: "requests", Selection: "last 7"}
	if err := s.SaveDataset(d, recs); err != nil {
		t.Fatal(err)
	}
	if d.Records != 5 || !d.Truncated || !d.CreatedAt.Equal(now) || !d.ExpiresAt.Equal(now.Add(48*time.Hour)) {
		t.Fatalf("saved %+v", d)
	}
	if err := s.SaveDataset(&Dataset{Name: "a"}, recs[:1]); !errors.Is(err, ErrExists) {
		t.Fatalf("saving over a dataset: %v", err)
	}
	var got []*Record
	if err := s.ScanDataset("a", func(r *Record) error { got = append(got, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 {
		t.Fatalf("scanned %d records", len(got))
	}
	for i, r := range got {
		if string(r.Key) != fmt.Sprintf("k%d", i) || r.SourceOffset != int64(10+i) || r.SourceTopic != "req" || len(r.Headers) != 1 {
			t.Errorf("record %d: %+v", i, r)
		}
	}
	if err := s.SaveDataset(&Dataset{Name: "b"}, recs[:2]); err != nil {
		t.Fatal(err)
	}
	list, err := s.Datasets()
	if err != nil || len(list) != 2 || list[0].Name != "a" || list[1].Records != 2 {
		t.Fatalf("datasets %+v %v", list, err)
	}
	if err := s.DeleteDataset("a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetDataset("a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("get after delete: %v", err)
	}
	n := 0
	if err := s.ScanDataset("a", func(*Record) error { n++; return nil }); err != nil || n != 0 {
		t.Errorf("records after delete: %d %v", n, err)
	}
	if err := s.DeleteDataset("a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleting twice: %v", err)
	}
	// The DLQ's count is not the datasets' business.
	if st := s.Stats(); st.Records != 0 {
		t.Errorf("the DLQ counts %d records", st.Records)
	}
}
