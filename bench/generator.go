package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/infergate/infergate/inference/demo"
)

// HeaderStamp is the record header the bench puts on every request. The
// pipeline copies request headers onto results and DLQ records, so the
// collector reads back which run and request a result belongs to and when
// that request was due to be sent, without keeping a table per request.
const HeaderStamp = "infergate-bench"

// stampLen is the stamp's size: run id, sequence number, intended send
// time (Unix nanoseconds), each 8 bytes big-endian.
const stampLen = 24

type stamp struct {
	run      uint64
	seq      int64
	intended int64 // Unix nanoseconds
}

func (s stamp) put(b []byte) {
	binary.BigEndian.PutUint64(b[0:], s.run)
	binary.BigEndian.PutUint64(b[8:], uint64(s.seq))
	binary.BigEndian.PutUint64(b[16:], uint64(s.intended))
}

func readStamp(hs []kgo.RecordHeader) (stamp, bool) {
	for i := range hs {
		if hs[i].Key == HeaderStamp && len(hs[i].Value) == stampLen {
			b := hs[i].Value
			return stamp{
				run:      binary.BigEndian.Uint64(b[0:]),
				seq:      int64(binary.BigEndian.Uint64(b[8:])),
				intended: int64(binary.BigEndian.Uint64(b[16:])),
			}, true
		}
	}
	return stamp{}, false
}

// payloads are request values encoded once before the run, so the
// generator spends its time sending, not formatting JSON. Request seq uses
// payload seq % len. Every badEvery-th payload (0: none) is not a valid
// request and must end in the DLQ.
type payloads struct {
	vals     [][]byte
	badEvery int
}

func newPayloads(n int, seed uint64, badEvery int) payloads {
	g := demo.NewGenerator(int64(seed))
	p := payloads{vals: make([][]byte, n), badEvery: badEvery}
	for i := range n {
		id := "bench-" + strconv.Itoa(i)
		if p.bad(int64(i)) {
			p.vals[i] = []byte(`{"request_id":"` + id + `","features":"not a list of numbers"}`)
			continue
		}
		feats, _ := g.Reading()
		p.vals[i] = demo.AppendRequest(nil, id, feats)
	}
	return p
}

func (p payloads) bad(seq int64) bool {
	return p.badEvery > 0 && seq%int64(len(p.vals))%int64(p.badEvery) == 0
}
func (p payloads) value(seq int64) []byte {
	return p.vals[seq%int64(len(p.vals))]
}

// outRecord is a request record with its header and stamp in one
// allocation.
type outRecord struct {
	rec kgo.Record
	hs  [1]kgo.RecordHeader
	st  [stampLen]byte
}

// generator produces requests: on a fixed schedule (open loop) or as fast
// as a bounded window of outstanding requests allows.
type generator struct {
	cl    *kgo.Client
	topic string
	run   uint64
	pay   payloads

	handed atomic.Int64 // given to the producer
	acked  atomic.Int64 // acknowledged by the broker
	failed atomic.Int64 // failed to produce
	errMu  sync.Mutex
	err    error // first produce error

	// lag is how late requests were handed to the producer relative to
	// their slot (fixed rate only): the generator's own contribution to the
	// measured latency. Only the sending goroutine records into it.
	lag *hdr.Histogram
}

func newGenerator(cl *kgo.Client, topic string, run uint64, pay payloads) *generator {
	return &generator{
		cl: cl, topic: topic, run: run, pay: pay,
		lag: newHist(),
	}
}

func (g *generator) send(seq int64, intended time.Time) {
	o := new(outRecord)
	stamp{run: g.run, seq: seq, intended: intended.UnixNano()}.put(o.st[:])
	o.hs[0] = kgo.RecordHeader{Key: HeaderStamp, Value: o.st[:]}
	o.rec = kgo.Record{Topic: g.topic, Value: g.pay.value(seq), Headers: o.hs[:], Timestamp: intended}
	g.handed.Add(1)
	g.cl.Produce(context.Background(), &o.rec, g.promise)
}

// promise runs on the producer's callback goroutine once the broker
// answered; the record is no longer used by the client then.
func (g *generator) promise(_ *kgo.Record, err error) {
	if err != nil {
		g.failed.Add(1)
		g.errMu.Lock()
		if g.err == nil {
			g.err = fmt.Errorf("bench: producing a request: %w", err)
		}
		g.errMu.Unlock()
	} else {
		g.acked.Add(1)
	}
}

// runFixed sends the schedule's slots, each stamped with its slot time.
func (g *generator) runFixed(ctx context.Context, s schedule) {
	p := pacer{s: s}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for !p.done() && ctx.Err() == nil {
		now := time.Now()
		from, to := p.due(now)
		for i := from; i < to; i++ {
			at := s.at(i)
			g.send(i, at)
			recordLatency(g.lag, now.Sub(at))
		}
		if w := p.wait(time.Now()); w > 0 {
			timer.Reset(w)
			select {
			case <-ctx.Done():
			case <-timer.C:
			}
		}
	}
}

// runMax sends as fast as the window allows until end: at most window
// requests are outstanding (sent but neither a result nor a DLQ record
// seen). Each request's time is when it was handed to the producer.
func (g *generator) runMax(ctx context.Context, end time.Time, window int64, completed func() int64, progress <-chan struct{}) {
	var seq int64
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for ctx.Err() == nil {
		now := time.Now()
		if !now.Before(end) {
			return
		}
		room := window - (g.handed.Load() - completed())
		if room <= 0 {
			select {
			case <-ctx.Done():
			case <-progress:
			case <-tick.C:
			}
			continue
		}
		// Stamping every record with its own clock reading costs little
		// and keeps latencies honest within a burst.
		for range min(room, 512) {
			g.send(seq, time.Now())
			seq++
		}
	}
}

// produceErr is the first produce error, if any.
func (g *generator) produceErr() error {
	g.errMu.Lock()
	defer g.errMu.Unlock()
	return g.err
}

// seed returns a random run id and payload seed.
func seed() uint64 { return rand.Uint64() }
