package store

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"
)

// BenchmarkPut measures Put of records with a 1 KiB value on disk, one record per Put and
// in pipeline-sized batches, with and without fsync. Reported as records/s.
func BenchmarkPut(b *testing.B) {
	// Random readings, so Snappy sees data as incompressible as real sensor values.
	var buf bytes.Buffer
	buf.WriteString(`{"request_id":"r-1","features":[`)
	for buf.Len() < 1020 {
		fmt.Fprintf(&buf, "%.6f,", rand.Float64())
	}
	buf.Truncate(1021)
	buf.WriteString("]}")
	value := buf.Bytes()
	for _, sync := range []bool{false, true} {
		for _, batch := range []int{1, 100} {
			b.Run(fmt.Sprintf("batch=%d/sync=%v", batch, sync), func(b *testing.B) {
				cfg := DefaultConfig(b.TempDir())
				cfg.SyncWrites = sync
				s, err := Open(cfg, slog.New(slog.DiscardHandler))
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				recs := make([]*Record, batch)
				b.SetBytes(int64(len(value) * batch))
				b.ResetTimer()
				start := time.Now()
				for b.Loop() {
					for i := range recs {
						r := rec("validation", "demo", time.Time{})
						r.Value = value
						recs[i] = r
					}
					if err := s.Put(context.Background(), recs...); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N*batch)/time.Since(start).Seconds(), "records/s")
			})
		}
	}
}
