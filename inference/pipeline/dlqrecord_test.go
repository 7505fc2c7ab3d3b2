package pipeline_test

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/infergate/infergate/inference/pipeline"
)

// FuzzStoreRecord: whatever headers a record of the DLQ topic carries (anyone may produce
// there), StoreRecord returns a record with an id, a class and a source, or an error.
func FuzzStoreRecord(f *testing.F) {
	f.Add("01JAAAAAAAAAAAAAAAAAAAAAAA", "validation", "requests", "3", "42", "1", "2026-01-02T03:04:05.5Z", "demo")
	f.Add("", "decode", "requests", "x", "-1", "", "yesterday", "")
	f.Fuzz(func(t *testing.T, id, class, topic, part, off, attempts, failedAt, model string) {
		r := &kgo.Record{Value: []byte("v"), Headers: []kgo.RecordHeader{
			{Key: pipeline.HeaderErrorClass, Value: []byte(class)}, {Key: pipeline.HeaderSourceTopic, Value: []byte(topic)},
			{Key: pipeline.HeaderSourcePartition, Value: []byte(part)}, {Key: pipeline.HeaderSourceOffset, Value: []byte(off)},
			{Key: pipeline.HeaderAttempts, Value: []byte(attempts)}, {Key: pipeline.HeaderFailedAt, Value: []byte(failedAt)},
			{Key: pipeline.HeaderDLQModel, Value: []byte(model)}, {Key: pipeline.HeaderDLQID, Value: []byte(id)},
		}}
		rec, _, err := pipeline.StoreRecord(r)
		if err != nil {
			return
		}
		if rec.ID != id || rec.Class == "" || rec.SourceTopic == "" || rec.SourcePartition < 0 || rec.SourceOffset < 0 || rec.Model != model {
			t.Fatalf("StoreRecord = %+v", rec)
		}
		for _, h := range rec.Headers {
			if h.Key == pipeline.HeaderDLQID || h.Key == pipeline.HeaderDLQModel {
				t.Fatalf("header %s kept", h.Key)
			}
		}
	})
}
