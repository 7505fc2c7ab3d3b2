package bench

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestScheduleSlots(t *testing.T) {
	start := time.Unix(1000, 0)
	for _, c := range []struct {
		rate  float64
		d     time.Duration
		slots int64
	}{
		{1000, time.Second, 1000},
		{1000, 1500 * time.Millisecond, 1500},
		{3, time.Second, 3},
		{3, 1100 * time.Millisecond, 4},   // slots at 0, 333, 667, 1000 ms
		{7, 1000 * time.Millisecond, 7},   // 7 slots, the last at 857 ms
		{0.5, 3 * time.Second, 2},         // at 0 s and 2 s
		{100000, 10 * time.Second, 1e6},   // no drift over a million slots
		{1e6 / 3, time.Second, 333334},    // non-integer interval
		{250, 4 * time.Millisecond, 1},    // exactly one interval: slot 0 only
		{250, 4*time.Millisecond + 1, 2},  // a nanosecond more: slot 1 too
		{1, 999 * time.Millisecond, 1},    // shorter than an interval: still one
		{2000, 2 * time.Second, 4000},     //
		{33.3, 3 * time.Second, 100},      // 99.9 rounds up to 100 slots
		{1e5, 1 * time.Millisecond, 100},  //
		{1234.5, 2 * time.Second, 2469},   //
		{10, 100 * time.Millisecond, 1},   //
		{10, 100*time.Millisecond + 1, 2}, //
	} {
		s := newSchedule(start, c.rate, c.d)
		if s.slots != c.slots {
			t.Errorf("rate %g for %s: %d slots, want %d", c.rate, c.d, s.slots, c.slots)
			continue
		}
		if last := s.at(s.slots - 1); !last.Before(start.Add(c.d)) {
			t.Errorf("rate %g for %s: last slot at %s, not before the end", c.rate, c.d, last.Sub(start))
		}
		if s.dueBy(start.Add(-time.Nanosecond)) != 0 {
			t.Errorf("rate %g: slots due before the start", c.rate)
		}
		if s.dueBy(start) != 1 {
			t.Errorf("rate %g: slot 0 not due at the start", c.rate)
		}
		if got := s.dueBy(start.Add(c.d + time.Hour)); got != c.slots {
			t.Errorf("rate %g for %s: %d due at the end, want %d", c.rate, c.d, got, c.slots)
		}
	}
}

// TestPacerAccounting drives the pacer with irregular wake-ups, as a busy
// machine would give it: every slot is sent exactly once, in order, never
// before its time, and a late wake-up sends everything that fell due.
func TestPacerAccounting(t *testing.T) {
	start := time.Unix(5000, 0)
	s := newSchedule(start, 10000, 2*time.Second)
	p := pacer{s: s}
	rng := rand.New(rand.NewPCG(1, 2))
	now := start.Add(-3 * time.Millisecond)
	var sent int64
	var maxBehind int64
	for steps := 0; !p.done(); steps++ {
		if steps > 1e6 {
			t.Fatal("pacer does not finish")
		}
		from, to := p.due(now)
		if from != sent {
			t.Fatalf("at %s: sends from slot %d, but %d were sent", now.Sub(start), from, sent)
		}
		for i := from; i < to; i++ {
			if s.at(i).After(now) {
				t.Fatalf("slot %d (due %s) sent early at %s", i, s.at(i).Sub(start), now.Sub(start))
			}
		}
		if to < s.slots && !s.at(to).After(now) {
			t.Fatalf("at %s slot %d is due but was not handed out", now.Sub(start), to)
		}
		maxBehind = max(maxBehind, to-from)
		sent = to
		// Sleep as asked, plus a random oversleep; sometimes a long stall.
		w := p.wait(now)
		over := time.Duration(rng.IntN(300)) * time.Microsecond
		if rng.IntN(500) == 0 {
			over = 50 * time.Millisecond
		}
		now = now.Add(w + over)
	}
	if sent != 20000 {
		t.Fatalf("sent %d slots, want 20000", sent)
	}
	if p.behind != maxBehind || p.behind < 500 {
		t.Fatalf("behind = %d, max batch seen %d (a 50 ms stall at 10k/s should leave >= 500 due at once)", p.behind, maxBehind)
	}
	if p.wait(now) != 0 {
		t.Fatal("a finished pacer asks to wait")
	}
	if from, to := p.due(now.Add(time.Hour)); from != to {
		t.Fatalf("a finished pacer hands out slots %d..%d", from, to)
	}
}

func TestPercentiles(t *testing.T) {
	h := newHist()
	// 1..1000 ms, one each: the percentiles are known exactly (within
	// HDR's 0.1 %).
	for i := 1; i <= 1000; i++ {
		recordLatency(h, time.Duration(i)*time.Millisecond)
	}
	s := summarize(h)
	near := func(name string, got, want float64) {
		t.Helper()
		if got < want || got > want*1.001+0.001 {
			t.Errorf("%s = %g ms, want %g (within 0.1 %%)", name, got, want)
		}
	}
	near("p50", s.P50, 500)
	near("p90", s.P90, 900)
	near("p99", s.P99, 990)
	near("p99.9", s.P999, 999)
	near("max", s.Max, 1000)
	near("mean", s.Mean, 500.5)
	if s.Count != 1000 {
		t.Errorf("count = %d", s.Count)
	}

	// One slow request among many fast ones is visible at the tail and
	// only there.
	h.Reset()
	for range 9999 {
		recordLatency(h, 2*time.Millisecond)
	}
	recordLatency(h, 3*time.Second)
	s = summarize(h)
	near("p99.9 of fast", s.P999, 2)
	near("max with one slow", s.Max, 3000)

	// Out-of-range values are clamped, not dropped.
	h.Reset()
	recordLatency(h, -time.Second)
	recordLatency(h, 2*time.Hour)
	if s := summarize(h); s.Count != 2 || s.Max < 3.6e6 {
		t.Errorf("clamped values: %+v", s)
	}
	if got := summarize(newHist()); got != (Percentiles{}) {
		t.Errorf("empty histogram: %+v", got)
	}
	c := curve(h)
	if len(c) != len(curvePercentiles) || c[len(c)-1].Percentile != 100 {
		t.Errorf("curve: %+v", c)
	}
}

func TestStampRoundTrip(t *testing.T) {
	var b [stampLen]byte
	want := stamp{run: 0xdeadbeefcafe, seq: 123456789, intended: time.Now().UnixNano()}
	want.put(b[:])
	got, ok := readStamp([]kgo.RecordHeader{{Key: "other", Value: []byte("x")}, {Key: HeaderStamp, Value: b[:]}})
	if !ok || got != want {
		t.Fatalf("got %+v %v, want %+v", got, ok, want)
	}
	if _, ok := readStamp([]kgo.RecordHeader{{Key: HeaderStamp, Value: b[:10]}}); ok {
		t.Fatal("a short stamp was accepted")
	}
}

func TestBitset(t *testing.T) {
	var b bitset
	for _, i := range []int64{0, 63, 64, 1 << 20, 5} {
		if !b.set(i) {
			t.Fatalf("%d reported as seen before", i)
		}
	}
	for _, i := range []int64{0, 63, 64, 1 << 20, 5} {
		if b.set(i) {
			t.Fatalf("%d not reported as a duplicate", i)
		}
	}
	if b.set(-1) {
		t.Fatal("negative sequence accepted")
	}
}

func TestPayloads(t *testing.T) {
	p := newPayloads(20, 7, 5)
	bad := 0
	for i := range int64(40) {
		var v struct {
			RequestID string    `json:"request_id"`
			Features  []float32 `json:"features"`
		}
		err := json.Unmarshal(p.value(i), &v)
		if p.bad(i) {
			bad++
			if err == nil {
				t.Errorf("payload %d should not decode: %s", i, p.value(i))
			}
			continue
		}
		if err != nil || len(v.Features) != 16 || !strings.HasPrefix(v.RequestID, "bench-") {
			t.Errorf("payload %d: %v %s", i, err, p.value(i))
		}
	}
	if bad != 8 {
		t.Errorf("%d bad of 40 with every 5th of 20 distinct bad, want 8", bad)
	}
}

func TestProcParsing(t *testing.T) {
	stat := []byte("4242 (infer gate) (x)) S 1 2 3 4 5 6 7 8 9 10 250 70 0 0 20 0 8 0 100 0 0")
	cpu, err := parseStatCPU(stat)
	if err != nil || cpu != 3200*time.Millisecond {
		t.Fatalf("cpu = %s, %v; want 3.2s", cpu, err)
	}
	status := []byte("Name:\tinfergate\nVmHWM:\t  81920 kB\nVmRSS:\t   40960 kB\nThreads:\t9\n")
	rss, hwm, err := parseStatus(status)
	if err != nil || rss != 40<<20 || hwm != 80<<20 {
		t.Fatalf("rss %d hwm %d err %v", rss, hwm, err)
	}
	s, err := selfProc{}.sample()
	if err != nil || s.rss <= 0 || s.cpu <= 0 {
		t.Fatalf("self sample %+v %v", s, err)
	}
}

func TestPlotIsSVG(t *testing.T) {
	rep := &Report{Mode: "pipeline", Rate: "1000", TargetRPS: 1000, WarmupS: 1,
		Series: []SeriesPoint{{T: 1, Sent: 1000, Completed: 990, P50: 1, P99: 3, Max: 8}, {T: 2, Sent: 1000, Completed: 1000, P50: 1.2, P99: 2.5, Max: 4}},
		Curve:  []CurvePoint{{0, 0.5}, {50, 1}, {99, 3}, {99.9, 6}, {100, 8}}}
	var buf bytes.Buffer
	if err := writeSVG(&buf, rep); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if !strings.HasPrefix(out, "<svg") || !strings.Contains(out, "</svg>") || strings.Count(out, "<polyline") != 7 {
		t.Fatalf("unexpected SVG:\n%s", out)
	}
	if strings.Contains(out, "NaN") || strings.Contains(out, "Inf") {
		t.Fatal("NaN or Inf coordinates in the SVG")
	}
}

func TestResultTimestamp(t *testing.T) {
	v := []byte(`{"request_id":"r-1","model":"demo","model_version":1,"prediction":[0.5],"timestamp":"2026-11-29T07:40:01.123456789Z","latency_ms":1.5}`)
	got, ok := resultTimestamp(v)
	if want := time.Date(2026, 11, 29, 7, 40, 1, 123456789, time.UTC); !ok || !got.Equal(want) {
		t.Fatalf("got %s %v, want %s", got, ok, want)
	}
	for _, bad := range []string{`{}`, `{"timestamp":"yesterday"}`, `{"timestamp":"2026`} {
		if _, ok := resultTimestamp([]byte(bad)); ok {
			t.Errorf("%s: accepted", bad)
		}
	}
}

func TestMachineBusy(t *testing.T) {
	b := []byte("cpu  100 5 50 1000 20 3 2 1 0 0\ncpu0 50 2 25 500 10 1 1 0 0 0\n")
	got, err := parseMachineBusy(b)
	if want := 161 * 10 * time.Millisecond; err != nil || got != want {
		t.Fatalf("busy = %s, %v; want %s", got, err, want)
	}
	if _, err := machineBusy(); err != nil {
		t.Fatal(err)
	}
}

func TestParseUTCLikeTimeParse(t *testing.T) {
	base := time.Date(2026, 11, 29, 7, 40, 1, 0, time.UTC)
	for _, ns := range []int{0, 1, 10, 123456789, 100000000, 999999999, 5000} {
		want := base.Add(time.Duration(ns))
		s := want.Format(time.RFC3339Nano)
		got, ok := parseUTC([]byte(s))
		if !ok || !got.Equal(want) {
			t.Errorf("%s: got %s %v", s, got, ok)
		}
	}
	for _, s := range []string{"2026-11-29T07:40:01+01:00", "2026-11-29T07:40:01.5+01:00"} {
		want, _ := time.Parse(time.RFC3339Nano, s)
		if got, ok := parseUTC([]byte(s)); !ok || !got.Equal(want) {
			t.Errorf("%s: got %s %v", s, got, ok)
		}
	}
	for _, s := range []string{"2026-13-29T07:40:01Z", "2026-11-29T07:40:01.Z", "2026-11-29 07:40:01Z", "x"} {
		if _, ok := parseUTC([]byte(s)); ok {
			t.Errorf("%s: accepted", s)
		}
	}
}
