package store

import (
	"crypto/rand"
	"encoding/binary"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
)

// Key layout. Record IDs are ULIDs: 26 Crockford base32 characters whose lexical order is
// time order, so every prefix below iterates oldest→newest forwards and newest→oldest in
// reverse, and a time bound becomes a key bound without decoding anything.
//
//	r/<id>                  the record (codec.go)
//	i/c/<class>\x00<id>     class index, empty value
//	i/m/<model>\x00<id>     model index, empty value (records with an unknown model are not indexed)
//	i/s/<topic>\x00<partition><offset>  source index: the id of the record dead-lettered from that
//	                        Kafka record (partition and offset big-endian, 4 and 8 bytes)
//	s/<key>                 settings
//	a/<ulid>                audit log entries
//
// NUL ends the class and model because it cannot appear in them (Put rejects it), so the
// prefix of model "a" never matches the keys of model "a/b".
const (
	recordPrefix = "r/"
	auditPrefix  = "a/"
	settingPref  = "s/"
	idLen        = 26
)

func recordKey(id string) []byte { return []byte(recordPrefix + id) }

func classPrefix(class string) []byte { return []byte("i/c/" + class + "\x00") }
func modelPrefix(model string) []byte { return []byte("i/m/" + model + "\x00") }

func classKey(class, id string) []byte { return append(classPrefix(class), id...) }

// sourceKey is the source index key of a record that came from a Kafka record. A redelivered
// request that fails again finds its earlier record through it (see put). Topic names cannot
// contain NUL (Kafka allows [a-zA-Z0-9._-] only), so the prefix of topic "a" never matches "a.b".
func sourceKey(topic string, partition int32, offset int64) []byte {
	k := make([]byte, 0, len("i/s/")+len(topic)+1+12)
	k = append(k, "i/s/"...)
	k = append(k, topic...)
	k = append(k, 0)
	k = binary.BigEndian.AppendUint32(k, uint32(partition))
	return binary.BigEndian.AppendUint64(k, uint64(offset))
}
func modelKey(model, id string) []byte { return append(modelPrefix(model), id...) }

// idGen makes ULIDs that are strictly increasing within a millisecond, so records put in the
// same millisecond keep their Put order.
type idGen struct {
	mu      sync.Mutex
	entropy *ulid.MonotonicEntropy
}

func newIDGen() *idGen { return &idGen{entropy: ulid.Monotonic(rand.Reader, 0)} }

func (g *idGen) next(t time.Time) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	id, err := ulid.New(msOf(t), g.entropy)
	if err != nil {
		// Monotonic overflow after 2^80 IDs in one millisecond, or clock before 1970:
		// fall back to fresh randomness, losing only the within-millisecond order.
		id, _ = ulid.New(msOf(t), rand.Reader)
	}
	return id.String()
}

// canonicalID parses a ULID case-insensitively and returns its canonical (upper-case) form.
func canonicalID(s string) (string, bool) {
	id, err := ulid.ParseStrict(s)
	if err != nil {
		return "", false
	}
	return id.String(), true
}

// boundID is the smallest ID of the millisecond containing t: every record that failed at or
// after that millisecond sorts at or after it.
func boundID(t time.Time) string {
	var id ulid.ULID
	_ = id.SetTime(msOf(t))
	return id.String()
}

func msOf(t time.Time) uint64 {
	ms := t.UnixMilli()
	switch {
	case ms < 0:
		return 0
	case uint64(ms) > ulid.MaxTime():
		return ulid.MaxTime()
	}
	return uint64(ms)
}

// idTime is the failure time encoded in an ID, to the millisecond.
func idTime(id string) time.Time {
	u, err := ulid.ParseStrict(id)
	if err != nil {
		return time.Time{}
	}
	return ulid.Time(u.Time()).UTC()
}
