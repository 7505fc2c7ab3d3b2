package rollout

import (
	"container/heap"
	"encoding/json"
	"fmt"
	"math"
	"sort"
)

// Report compares the two versions of a rollout over its stored
// comparisons.
type Report struct {
	Rollout Rollout `json:"rollout"`
	// Compared is the number of requests both versions scored.
	Compared int `json:"compared"`
	// Kind is "score" (one value a request: differences, correlation,
	// threshold flips) or "class" (several: same-class rate and a confusion
	// matrix, classes by argmax).
	Kind string `json:"kind"`
	// Agreement is the share of compared requests that agree (scores within
	// the tolerance, or the same class).
	Agreement  float64     `json:"agreement"`
	Difference *Difference `json:"difference,omitempty"`
	// Correlation is Pearson's r of the two scores (score kind).
	Correlation float64 `json:"correlation"`
	Threshold   float64 `json:"threshold"`
	Flips       int     `json:"flips"`
	FlipShare   float64 `json:"flip_share"`
	// Confusion[i][j] counts requests the stable version put in class i and
	// the candidate in class j (class kind).
	Confusion [][]int `json:"confusion,omitempty"`
	Stable    Side    `json:"stable"`
	Candidate Side    `json:"candidate"`
	// Top are the requests that differ most, largest first, with their
	// place on the requests topic.
	Top []Comparison `json:"top"`
	// Dropped counts sampled requests the shadow skipped as the pipeline was
	// busy or the model server unavailable (since this process started);
	// Queue is its backlog now.
	Dropped int64 `json:"dropped"`
	// Yielded is the part of Dropped skipped to keep the shadow to its share
	// of time while the pipeline had a backlog (rollout.shadow_busy_share).
	Yielded int64 `json:"yielded"`
	Queue   int   `json:"queue"`
	// Truncated is set when more comparisons exist than one report reads.
	Truncated bool `json:"truncated,omitempty"`
}

// Difference is the distribution of |candidate - stable| over compared
// requests (the largest element-wise difference of a row).
type Difference struct {
	Mean      float64  `json:"mean"` // of candidate - stable, signed
	P50       float64  `json:"p50"`
	P90       float64  `json:"p90"`
	P99       float64  `json:"p99"`
	Max       float64  `json:"max"`
	Histogram []Bucket `json:"histogram"`
}

// Bucket counts differences up to (and including) Le; the last is +Inf.
type Bucket struct {
	Le    string `json:"le"`
	Count int    `json:"count"`
}

var bucketBounds = []float64{1e-6, 1e-4, 1e-3, 1e-2, 0.05, 0.1, 0.25, 0.5, 1}

// Side is one version's figures in a report.
type Side struct {
	Version int64 `json:"version"`
	// Requests it scored among the comparisons (answering or shadowing)
	// and how many of them failed.
	Requests  int     `json:"requests"`
	Errors    int     `json:"errors"`
	ErrorRate float64 `json:"error_rate"`
	// P50Ms and P99Ms are of its model calls, per request (a batch's
	// latency counts once for each request in it).
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
	// Answered is how many results it produced since the rollout started
	// in this process, and AnswerErrors how many of those were dead-lettered.
	Answered     int64 `json:"answered"`
	AnswerErrors int64 `json:"answer_errors"`
}

// TopN is how many differing requests a report lists.
const TopN = 20

// Report builds the report of the model's running or last rollout.
func (c *Controller) Report(name string) (*Report, error) {
	r, err := c.Get(name)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	lv := c.lives[r.ID]
	c.mu.Unlock()
	return c.report(r, lv)
}

// report compares the two versions of r over the comparisons stored under
// its id; lv (nil for a replay) adds what the pipeline answered.
func (c *Controller) report(r *Rollout, lv *live) (*Report, error) {
	rep := &Report{Rollout: *r, Threshold: r.Threshold, Kind: "score", Top: []Comparison{},
		Stable: Side{Version: r.Stable}, Candidate: Side{Version: r.Candidate},
		Dropped: c.dropped.Load(), Yielded: c.yielded.Load(), Queue: len(c.jobs)}
	var sLat, cLat, diffs, xs, ys []float64
	var signed float64
	var agreeN int
	top := &topHeap{}
	var width int
	n := 0
	err := c.st.ScanShadow(r.ID, c.cfg.MaxReportRecords+1, func(val []byte) error {
		n++
		if n > c.cfg.MaxReportRecords {
			rep.Truncated = true
			return nil
		}
		var cmp Comparison
		if err := json.Unmarshal(val, &cmp); err != nil {
			return nil // a record from another build: skip
		}
		rep.Stable.Requests++
		rep.Candidate.Requests++
		if cmp.StableErr != "" {
			rep.Stable.Errors++
		} else {
			sLat = append(sLat, cmp.StableMs)
		}
		if cmp.CandErr != "" {
			rep.Candidate.Errors++
		} else {
			cLat = append(cLat, cmp.CandMs)
		}
		if cmp.StableErr != "" || cmp.CandErr != "" || len(cmp.Stable) == 0 || len(cmp.Stable) != len(cmp.Candidate) {
			return nil
		}
		rep.Compared++
		if len(cmp.Stable) > 1 {
			width = max(width, len(cmp.Stable))
		}
		if agree(cmp.Stable, cmp.Candidate, r.Tolerance) {
			agreeN++
		}
		d := 0.0
		for i := range cmp.Stable {
			d = max(d, math.Abs(cmp.Candidate[i]-cmp.Stable[i]))
		}
		diffs = append(diffs, d)
		signed += cmp.Candidate[0] - cmp.Stable[0]
		xs, ys = append(xs, cmp.Stable[0]), append(ys, cmp.Candidate[0])
		if len(cmp.Stable) == 1 && (cmp.Stable[0] >= r.Threshold) != (cmp.Candidate[0] >= r.Threshold) {
			rep.Flips++
		}
		if len(cmp.Stable) > 1 {
			si, ci := argmax(cmp.Stable), argmax(cmp.Candidate)
			const maxClasses = 64
			if si < maxClasses && ci < maxClasses {
				for len(rep.Confusion) <= max(si, ci) {
					rep.Confusion = append(rep.Confusion, nil)
				}
				for i := range rep.Confusion {
					for len(rep.Confusion[i]) < len(rep.Confusion) {
						rep.Confusion[i] = append(rep.Confusion[i], 0)
					}
				}
				rep.Confusion[si][ci]++
			}
		}
		if d > 0 {
			cmp.Diff = d
			heap.Push(top, topItem{d, cmp})
			if top.Len() > TopN {
				heap.Pop(top)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if width > 1 {
		rep.Kind = "class"
	}
	for _, s := range []*Side{&rep.Stable, &rep.Candidate} {
		if s.Requests > 0 {
			s.ErrorRate = float64(s.Errors) / float64(s.Requests)
		}
	}
	sort.Float64s(sLat)
	sort.Float64s(cLat)
	rep.Stable.P50Ms, rep.Stable.P99Ms = quantile(sLat, 0.5), quantile(sLat, 0.99)
	rep.Candidate.P50Ms, rep.Candidate.P99Ms = quantile(cLat, 0.5), quantile(cLat, 0.99)
	if lv != nil {
		lv.mu.Lock()
		rep.Stable.Answered, rep.Stable.AnswerErrors = lv.stableReqs, lv.stableErrs
		rep.Candidate.Answered, rep.Candidate.AnswerErrors = lv.candReqs, lv.candErrs
		lv.mu.Unlock()
	}
	if rep.Compared > 0 {
		rep.Agreement = float64(agreeN) / float64(rep.Compared)
		rep.FlipShare = float64(rep.Flips) / float64(rep.Compared)
		rep.Correlation = pearson(xs, ys)
		sort.Float64s(diffs)
		d := &Difference{Mean: signed / float64(rep.Compared), P50: quantile(diffs, 0.5), P90: quantile(diffs, 0.9),
			P99: quantile(diffs, 0.99), Max: diffs[len(diffs)-1]}
		i := 0
		for _, b := range bucketBounds {
			k := 0
			for i < len(diffs) && diffs[i] <= b {
				i++
				k++
			}
			d.Histogram = append(d.Histogram, Bucket{Le: fmt.Sprint(b), Count: k})
		}
		d.Histogram = append(d.Histogram, Bucket{Le: "+Inf", Count: len(diffs) - i})
		rep.Difference = d
	}
	for top.Len() > 0 {
		rep.Top = append(rep.Top, heap.Pop(top).(topItem).cmp)
	}
	for i, j := 0, len(rep.Top)-1; i < j; i, j = i+1, j-1 {
		rep.Top[i], rep.Top[j] = rep.Top[j], rep.Top[i]
	}
	return rep, nil
}

// quantile of sorted values (nearest rank); 0 for none.
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func pearson(xs, ys []float64) float64 {
	n := float64(len(xs))
	if n < 2 {
		return 0
	}
	var mx, my float64
	for i := range xs {
		mx += xs[i]
		my += ys[i]
	}
	mx /= n
	my /= n
	var sxy, sxx, syy float64
	for i := range xs {
		dx, dy := xs[i]-mx, ys[i]-my
		sxy += dx * dy
		sxx += dx * dx
		syy += dy * dy
	}
	if sxx == 0 || syy == 0 {
		if sxx == syy {
			return 1 // both constant: identical up to a shift
		}
		return 0
	}
	return sxy / math.Sqrt(sxx*syy)
}

type topItem struct {
	d   float64
	cmp Comparison
}

// topHeap is a min-heap on the difference: the smallest of the kept top
// is dropped first.
type topHeap []topItem

func (h topHeap) Len() int           { return len(h) }
func (h topHeap) Less(i, j int) bool { return h[i].d < h[j].d }
func (h topHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *topHeap) Push(x any)        { *h = append(*h, x.(topItem)) }
func (h *topHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
