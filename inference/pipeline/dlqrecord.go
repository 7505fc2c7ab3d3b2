package pipeline

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/infergate/infergate/store"
)

// ErrNoDLQID is returned by StoreRecord for a DLQ record without a dlq.id header: one whose
// store write failed, or one produced by a version of infergate before the header.
var ErrNoDLQID = errors.New("no " + HeaderDLQID + " header")

// StoreRecord turns a record read from the DLQ topic back into the store record the
// instance that dead-lettered it stored (dlqOutput), under the ID its dlq.id header
// carries. truncated reports a record cut down to fit the topic (dlq.truncated): its value,
// and perhaps its key and original headers, are not the request's. The replay counts are
// not in the topic: they are 0.
func StoreRecord(kr *kgo.Record) (rec *store.Record, truncated bool, err error) {
	rec = &store.Record{Key: kr.Key, Value: kr.Value, SourcePartition: -1, SourceOffset: -1}
	for _, h := range kr.Headers {
		v := string(h.Value)
		switch h.Key {
		case HeaderDLQID:
			rec.ID = v
			continue // not a header of the stored record
		case HeaderDLQModel:
			rec.Model = v
			continue
		case HeaderErrorClass:
			rec.Class = v
		case HeaderErrorMessage:
			rec.Message = v
		case HeaderSourceTopic:
			rec.SourceTopic = v
		case HeaderSourcePartition:
			p, perr := strconv.ParseInt(v, 10, 32)
			if perr != nil {
				return nil, false, fmt.Errorf("header %s %q: %w", h.Key, v, perr)
			}
			rec.SourcePartition = int32(p)
		case HeaderSourceOffset:
			if rec.SourceOffset, err = strconv.ParseInt(v, 10, 64); err != nil {
				return nil, false, fmt.Errorf("header %s %q: %w", h.Key, v, err)
			}
		case HeaderAttempts:
			if rec.Attempts, err = strconv.Atoi(v); err != nil {
				return nil, false, fmt.Errorf("header %s %q: %w", h.Key, v, err)
			}
		case HeaderFailedAt:
			if rec.FailedAt, err = time.Parse(time.RFC3339Nano, v); err != nil {
				return nil, false, fmt.Errorf("header %s %q: %w", h.Key, v, err)
			}
		case HeaderTruncated:
			truncated = true
		}
		rec.Headers = append(rec.Headers, store.Header{Key: h.Key, Value: h.Value})
	}
	switch {
	case rec.ID == "":
		return nil, truncated, ErrNoDLQID
	case rec.Class == "":
		return nil, truncated, fmt.Errorf("no %s header", HeaderErrorClass)
	case rec.SourceTopic == "" || rec.SourcePartition < 0 || rec.SourceOffset < 0:
		// Sharing matches a record with its source; a record without one is not a pipeline's.
		return nil, truncated, fmt.Errorf("no source headers")
	}
	if rec.FailedAt.IsZero() {
		rec.FailedAt = kr.Timestamp
	}
	return rec, truncated, nil
}
