package bench

import (
	"math"
	"time"
)

// schedule is the open-loop send plan. Slot i is due at start + i/rate
// whatever happened to the slots before it: a sender that falls behind (the
// producer's buffer is full, the machine is busy) sends the late slots as
// soon as it can, and their latency is still measured from the slot's time.
// This is what keeps coordinated omission from hiding slow responses: a
// stalled system cannot make the load generator wait politely and then
// report only the fast requests.
type schedule struct {
	start    time.Time
	interval float64 // nanoseconds between slots
	slots    int64   // slots in [start, start+duration)
}

// newSchedule plans rate slots per second for d, starting at start. The
// last slot is the last one due strictly before start+d, so a rate of R for
// D seconds is exactly ceil(R*D) slots.
func newSchedule(start time.Time, rate float64, d time.Duration) schedule {
	interval := float64(time.Second) / rate
	slots := int64(math.Ceil(float64(d) / interval))
	// Guard against floating-point rounding putting a slot exactly at the end.
	for slots > 0 && float64(slots-1)*interval >= float64(d) {
		slots--
	}
	return schedule{start: start, interval: interval, slots: slots}
}

// at is when slot i is due.
func (s schedule) at(i int64) time.Time {
	return s.start.Add(time.Duration(float64(i) * s.interval))
}

// dueBy is how many slots are due at now: slots 0..dueBy(now)-1 should have
// been sent. It never exceeds the plan's slots.
func (s schedule) dueBy(now time.Time) int64 {
	el := now.Sub(s.start)
	if el < 0 {
		return 0
	}
	n := int64(float64(el)/s.interval) + 1
	// float division may land one off at the boundary; at(n-1) must be <= now.
	for n > 0 && s.at(n-1).After(now) {
		n--
	}
	for n < s.slots && !s.at(n).After(now) {
		n++
	}
	return min(n, s.slots)
}

// pacer turns the schedule into send decisions for one sender goroutine: it
// remembers the next slot to send and tells the sender which slots are due
// and how long to sleep until the next one. It keeps no clock of its own, so
// its accounting is testable with made-up times.
type pacer struct {
	s    schedule
	next int64 // first slot not yet sent
	// behind is the most slots that were due at once when the sender woke;
	// a large value means the sender (or the machine) could not keep up.
	behind int64
}

// due returns the range [from, to) of slots to send now and advances past it.
func (p *pacer) due(now time.Time) (from, to int64) {
	from = p.next
	to = p.s.dueBy(now)
	if to < from {
		to = from
	}
	p.behind = max(p.behind, to-from)
	p.next = to
	return from, to
}

// done reports whether every slot has been handed out.
func (p *pacer) done() bool { return p.next >= p.s.slots }

// wait is how long to sleep at now before the next slot is due (0 when it
// already is, or when the plan is finished).
func (p *pacer) wait(now time.Time) time.Duration {
	if p.done() {
		return 0
	}
	return max(p.s.at(p.next).Sub(now), 0)
}
