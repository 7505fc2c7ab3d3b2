package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// SeriesPoint is one second of the run as the collector saw it.
type SeriesPoint struct {
	T         float64 `json:"t_s"` // seconds since the first slot, end of the interval
	Sent      int64   `json:"sent"`
	Completed int64   `json:"completed"` // results + DLQ records that arrived in the interval
	P50       float64 `json:"p50_ms"`
	P99       float64 `json:"p99_ms"`
	Max       float64 `json:"max_ms"`
	// OtherCores is the cores other processes kept busy in the interval.
	OtherCores float64 `json:"other_cores"`
}

// collector reads the results and DLQ topics from the offsets they had
// before the run, keeps the records stamped with this run's id, and measures
// each request's latency from its intended send time to the moment its
// output arrived here.
type collector struct {
	cl          *kgo.Client
	run         uint64
	resultTopic string
	dlqTopic    string
	start       time.Time // first slot
	measureFrom time.Time // end of warmup
	measureTo   time.Time // end of sending
	sent        func() int64

	results atomic.Int64
	dlq     atomic.Int64
	dups    atomic.Int64
	foreign atomic.Int64 // records of other runs or producers, ignored
	windowN atomic.Int64 // outputs that arrived within [measureFrom, measureTo)

	// progress is signalled (without blocking) after each batch of outputs,
	// so a window-bound generator wakes up.
	progress chan struct{}

	mu    sync.Mutex // guards what follows: the progress printer reads it
	total *hdr.Histogram
	// encoded is intended send time → the result's "timestamp" (when the
	// pipeline encoded it): the total minus producing the result and
	// fetching it here.
	encoded  *hdr.Histogram
	interval *hdr.Histogram
	series   []SeriesPoint
	nextTick time.Time
	lastSent int64
	seen     bitset
	err      error
}

// startOffsets are the end offsets of the topics now: the run's outputs
// come after them.
func startOffsets(ctx context.Context, adm *kadm.Client, topics ...string) (map[string]map[int32]kgo.Offset, error) {
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return nil, err
	}
	out := make(map[string]map[int32]kgo.Offset)
	var errs []error
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			errs = append(errs, fmt.Errorf("bench: topic %s partition %d: %w", o.Topic, o.Partition, o.Err))
			return
		}
		if out[o.Topic] == nil {
			out[o.Topic] = make(map[int32]kgo.Offset)
		}
		out[o.Topic][o.Partition] = kgo.NewOffset().At(o.Offset)
	})
	for _, t := range topics {
		if len(out[t]) == 0 {
			errs = append(errs, fmt.Errorf("bench: topic %s does not exist", t))
		}
	}
	return out, errors.Join(errs...)
}

func (c *collector) completed() int64 { return c.results.Load() + c.dlq.Load() }

// loop consumes until ctx ends.
func (c *collector) loop(ctx context.Context) {
	for ctx.Err() == nil {
		// Short polls so the per-second series ticks while nothing arrives.
		pctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		fs := c.cl.PollFetches(pctx)
		cancel()
		now := time.Now()
		if fs.IsClientClosed() {
			return
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				ferr = fmt.Errorf("bench: consuming %s/%d: %w", t, p, err)
			}
		})
		c.mu.Lock()
		if ferr != nil && c.err == nil {
			c.err = ferr
		}
		c.tick(now)
		n := 0
		fs.EachRecord(func(r *kgo.Record) {
			if c.add(r, now) {
				n++
			}
		})
		c.mu.Unlock()
		if n > 0 {
			select {
			case c.progress <- struct{}{}:
			default:
			}
		}
	}
}

// add accounts for one output record; called with mu held.
func (c *collector) add(r *kgo.Record, now time.Time) bool {
	st, ok := readStamp(r.Headers)
	if !ok || st.run != c.run {
		c.foreign.Add(1)
		return false
	}
	if !c.seen.set(st.seq) {
		// At-least-once delivery may publish an output twice (after a
		// rebalance or a retried produce); the request counts once.
		c.dups.Add(1)
		return false
	}
	if r.Topic == c.dlqTopic {
		c.dlq.Add(1)
	} else {
		c.results.Add(1)
	}
	lat := now.Sub(time.Unix(0, st.intended))
	recordLatency(c.interval, lat)
	if st.intended >= c.measureFrom.UnixNano() {
		recordLatency(c.total, lat)
		if at, ok := resultTimestamp(r.Value); ok {
			recordLatency(c.encoded, at.Sub(time.Unix(0, st.intended)))
		}
	}
	if !now.Before(c.measureFrom) && now.Before(c.measureTo) {
		c.windowN.Add(1)
	}
	return true
}

// resultTimestamp reads the "timestamp" field of a result value without
// decoding the rest of it.
func resultTimestamp(v []byte) (time.Time, bool) {
	const key = `"timestamp":"`
	i := bytes.LastIndex(v, []byte(key))
	if i < 0 {
		return time.Time{}, false
	}
	rest := v[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return time.Time{}, false
	}
	return parseUTC(rest[:j])
}

// parseUTC reads what the pipeline writes, "2006-01-02T15:04:05.999999999Z"
// (UTC, RFC 3339), without time.Parse's generality: the collector reads one
// per result at up to a few hundred thousand a second. Anything else goes
// to time.Parse.
func parseUTC(b []byte) (time.Time, bool) {
	num := func(b []byte) (int, bool) {
		n := 0
		for _, c := range b {
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	if len(b) >= 20 && b[len(b)-1] == 'Z' && b[4] == '-' && b[7] == '-' && b[10] == 'T' && b[13] == ':' && b[16] == ':' &&
		(len(b) == 20 || (b[19] == '.' && len(b) <= 30 && len(b) > 21)) {
		y, ok1 := num(b[0:4])
		mo, ok2 := num(b[5:7])
		d, ok3 := num(b[8:10])
		h, ok4 := num(b[11:13])
		mi, ok5 := num(b[14:16])
		s, ok6 := num(b[17:19])
		ns := 0
		ok7 := true
		if len(b) > 20 {
			frac := b[20 : len(b)-1]
			ns, ok7 = num(frac)
			for range 9 - len(frac) {
				ns *= 10
			}
		}
		if ok1 && ok2 && ok3 && ok4 && ok5 && ok6 && ok7 && mo >= 1 && mo <= 12 && d >= 1 && d <= 31 && h < 24 && mi < 60 && s < 60 {
			return time.Date(y, time.Month(mo), d, h, mi, s, ns, time.UTC), true
		}
	}
	t, err := time.Parse(time.RFC3339Nano, string(b))
	return t, err == nil
}

// tick closes the one-second intervals that ended by now; called with mu
// held.
func (c *collector) tick(now time.Time) {
	if c.nextTick.IsZero() {
		c.nextTick = c.start.Add(time.Second)
	}
	for !now.Before(c.nextTick) {
		sent := c.sent()
		p := SeriesPoint{T: c.nextTick.Sub(c.start).Seconds(), Sent: sent - c.lastSent}
		s := summarize(c.interval)
		p.Completed, p.P50, p.P99, p.Max = s.Count, s.P50, s.P99, s.Max
		c.series = append(c.series, p)
		c.interval.Reset()
		c.lastSent = sent
		c.nextTick = c.nextTick.Add(time.Second)
	}
}

// bitset records which sequence numbers arrived, growing as needed: one bit
// per request (a million requests take 125 KB).
type bitset []uint64

// set marks i and reports whether it was new.
func (b *bitset) set(i int64) bool {
	if i < 0 {
		return false
	}
	w := int(i >> 6)
	if w >= len(*b) {
		n := max(2*len(*b), w+1, 1024)
		nb := make(bitset, n)
		copy(nb, *b)
		*b = nb
	}
	m := uint64(1) << (uint(i) & 63)
	if (*b)[w]&m != 0 {
		return false
	}
	(*b)[w] |= m
	return true
}
