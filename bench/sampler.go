package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

// sampler reads the appliance's resource use, and the machine's, while the
// run lasts. The machine is shared: the CPU time other processes took is
// recorded next to every figure, so a latency spike can be told apart from
// a neighbour's compile.
type sampler struct {
	src procSource // nil: the appliance is not measured

	mu       sync.Mutex
	samples  []machineSample
	from, to procSample // at the measured window's edges
	haveFrom bool
	haveTo   bool
	maxRSS   int64
	last     procSample
	err      error
}

type machineSample struct {
	at   time.Time
	busy time.Duration // all CPUs' non-idle time since boot (/proc/stat)
	own  time.Duration // the appliance's CPU time (0 when not measured)
}

func (s *sampler) loop(ctx context.Context, from, to time.Time) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	fromT := time.NewTimer(time.Until(from))
	defer fromT.Stop()
	toT := time.NewTimer(time.Until(to))
	defer toT.Stop()
	s.take(nil)
	for {
		select {
		case <-ctx.Done():
			s.take(nil)
			return
		case <-tick.C:
			s.take(nil)
		case <-fromT.C:
			s.take(func(p procSample) { s.from, s.haveFrom = p, true })
		case <-toT.C:
			s.take(func(p procSample) { s.to, s.haveTo = p, true })
		}
	}
}

// take records a sample; edge, if not nil, is called with it under mu.
func (s *sampler) take(edge func(procSample)) {
	m := machineSample{at: time.Now()}
	busy, merr := machineBusy()
	var p procSample
	var perr error
	if s.src != nil {
		p, perr = s.src.sample()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if merr == nil {
		m.busy, m.own = busy, p.cpu
		s.samples = append(s.samples, m)
	}
	if s.src == nil {
		return
	}
	if perr != nil {
		s.err = perr
		return
	}
	s.last = p
	s.maxRSS = max(s.maxRSS, p.rss)
	if edge != nil {
		edge(p)
	}
}

func (s *sampler) lastRSS() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last.rss
}

// otherCores is the average number of cores that processes other than the
// appliance kept busy between a and b (with no appliance measured: all
// processes).
func (s *sampler) otherCores(a, b time.Time) float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	x, y := nearest(s.samples, a), nearest(s.samples, b)
	if x < 0 || y <= x {
		return 0
	}
	sa, sb := s.samples[x], s.samples[y]
	wall := sb.at.Sub(sa.at)
	if wall <= 0 {
		return 0
	}
	other := (sb.busy - sa.busy) - (sb.own - sa.own)
	return max(other.Seconds()/wall.Seconds(), 0)
}

func nearest(ss []machineSample, t time.Time) int {
	best := -1
	var bestD time.Duration
	for i, m := range ss {
		d := m.at.Sub(t)
		if d < 0 {
			d = -d
		}
		if best < 0 || d < bestD {
			best, bestD = i, d
		}
	}
	return best
}

func (s *sampler) fill(rep *Report, idle procSample) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		rep.Errors = append(rep.Errors, "sampling the appliance: "+s.err.Error())
	}
	rep.RSSIdleMB = mb(idle.rss)
	rep.RSSMB = mb(s.maxRSS)
	rep.RSSPeakMB = mb(max(s.last.hwm, idle.hwm))
	if s.haveFrom && s.haveTo {
		cpu := s.to.cpu - s.from.cpu
		rep.CPUSeconds = cpu.Seconds()
		if w := s.to.at.Sub(s.from.at); w > 0 {
			rep.CPUCores = cpu.Seconds() / w.Seconds()
		}
	}
}

// userHZ is the unit of /proc/stat's times (USER_HZ, 100 on Linux).
const userHZ = 100

// machineBusy is the non-idle CPU time of all CPUs since boot.
func machineBusy() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	return parseMachineBusy(b)
}

// parseMachineBusy reads the "cpu" line of /proc/stat: user nice system
// idle iowait irq softirq steal ...; busy is everything but idle and iowait.
func parseMachineBusy(b []byte) (time.Duration, error) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := bytes.Fields(line)
	if len(f) < 5 || string(f[0]) != "cpu" {
		return 0, fmt.Errorf("malformed /proc/stat %q", line)
	}
	var busy int64
	for i, v := range f[1:] {
		n, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("malformed /proc/stat %q", line)
		}
		if i == 3 || i == 4 || i >= 8 { // idle, iowait; guest times are already in user
			continue
		}
		busy += n
	}
	return time.Duration(busy) * time.Second / userHZ, nil
}
