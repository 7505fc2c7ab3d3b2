package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Records are stored in a small hand-written binary form rather than JSON: it keeps the
// original key, value and header bytes verbatim (including the nil/empty distinction Kafka
// makes), it is about a third of the size of JSON with base64, and decoding is cheap.
//
//	version byte (1)
//	class, model, message, source topic: uvarint length + bytes
//	key, value: uvarint (length+1, 0 = nil) + bytes
//	headers: uvarint count, then per header key string, value as key/value above
//	source partition, source offset, attempts, replays: varint
//	failed at, last replay at: varint Unix nanoseconds (0 = zero time)
//
// The ID is not stored: it is the database key.
const codecVersion = 1

var errCorrupt = errors.New("corrupt record")

func encodeRecord(r *Record) []byte {
	n := 1 + 6*binary.MaxVarintLen64 + 4*binary.MaxVarintLen64 + len(r.Class) + len(r.Model) + len(r.Message) +
		len(r.SourceTopic) + len(r.Key) + len(r.Value) + 8*binary.MaxVarintLen64
	for _, h := range r.Headers {
		n += 2*binary.MaxVarintLen64 + len(h.Key) + len(h.Value)
	}
	b := make([]byte, 0, n)
	b = append(b, codecVersion)
	b = appendString(b, r.Class)
	b = appendString(b, r.Model)
	b = appendString(b, r.Message)
	b = appendString(b, r.SourceTopic)
	b = appendBytes(b, r.Key)
	b = appendBytes(b, r.Value)
	b = binary.AppendUvarint(b, uint64(len(r.Headers)))
	for _, h := range r.Headers {
		b = appendString(b, h.Key)
		b = appendBytes(b, h.Value)
	}
	b = binary.AppendVarint(b, int64(r.SourcePartition))
	b = binary.AppendVarint(b, r.SourceOffset)
	b = binary.AppendVarint(b, int64(r.Attempts))
	b = binary.AppendVarint(b, int64(r.Replays))
	b = binary.AppendVarint(b, timeToNanos(r.FailedAt))
	b = binary.AppendVarint(b, timeToNanos(r.LastReplayAt))
	return b
}

func decodeRecord(id string, b []byte) (*Record, error) {
	d := decoder{b: b}
	if v := d.byte(); v != codecVersion {
		if d.err != nil {
			return nil, fmt.Errorf("record %s: %w", id, d.err)
		}
		return nil, fmt.Errorf("record %s: unknown encoding version %d: %w", id, v, errCorrupt)
	}
	r := &Record{ID: id}
	r.Class = d.string()
	r.Model = d.string()
	r.Message = d.string()
	r.SourceTopic = d.string()
	r.Key = d.bytes()
	r.Value = d.bytes()
	if n := d.uvarint(); n > 0 {
		// Each header takes at least two bytes, which bounds a corrupt count before allocating.
		if n > uint64(len(d.b)/2) {
			d.fail()
		} else {
			r.Headers = make([]Header, n)
			for i := range r.Headers {
				r.Headers[i].Key = d.string()
				r.Headers[i].Value = d.bytes()
			}
		}
	}
	r.SourcePartition = int32(d.varint())
	r.SourceOffset = d.varint()
	r.Attempts = int(d.varint())
	r.Replays = int(d.varint())
	r.FailedAt = nanosToTime(d.varint())
	r.LastReplayAt = nanosToTime(d.varint())
	if d.err == nil && len(d.b) != 0 {
		d.fail()
	}
	if d.err != nil {
		return nil, fmt.Errorf("record %s: %w", id, d.err)
	}
	return r, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBytes(b, v []byte) []byte {
	if v == nil {
		return binary.AppendUvarint(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(v))+1)
	return append(b, v...)
}

func timeToNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func nanosToTime(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// decoder reads fields until the first error, after which every read returns a zero value;
// callers check err once at the end.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = errCorrupt
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if len(d.b) == 0 {
		d.fail()
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) take(n uint64) []byte {
	if n > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string { return string(d.take(d.uvarint())) }

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if n == 0 || d.err != nil {
		return nil
	}
	v := d.take(n - 1)
	if d.err != nil {
		return nil
	}
	// Copy: the input is Badger's value buffer, valid only inside its transaction.
	return append(make([]byte, 0, len(v)), v...)
}
