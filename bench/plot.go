package bench

import (
	"bytes"
	"fmt"
	"html"
	"io"
	"math"
	"os"
	"runtime"
	"strings"
)

// The plot is plain SVG written here: three panels sharing one file —
// throughput over time, latency percentiles over time, and the
// latency-by-percentile curve of the measured window (HDR style: each
// "nine" gets the same width, so the tail is visible).

const (
	plotW      = 960
	panelH     = 260
	marginL    = 80
	marginR    = 150
	marginT    = 40
	marginB    = 45
	panelGap   = 30
	fontFamily = "DejaVu Sans, Helvetica, Arial, sans-serif"
)

type plotSeries struct {
	name  string
	color string
	dash  string
	xs    []float64
	ys    []float64
}

type panel struct {
	title          string
	xLabel, yLabel string
	xMin, xMax     float64
	yMin, yMax     float64
	logY           bool
	xTicks         []tick  // nil: automatic
	yFixed         float64 // linear axes: the top of the y axis, if set
	shadeTo        float64
	shadeLabel     string
	series         []plotSeries
}

type tick struct {
	v     float64
	label string
}

// WritePlot writes reports' plot as SVG to path. Several reports (e.g. the
// pipeline and the baseline of a comparison) share the percentile panel.
func WritePlot(path string, reps ...*Report) error {
	var buf bytes.Buffer
	if err := writeSVG(&buf, reps...); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

var palette = [][3]string{
	{"#1f77b4", "#ff7f0e", "#d62728"}, // p50, p99, max of the first report
	{"#2ca02c", "#9467bd", "#8c564b"},
}

func writeSVG(w io.Writer, reps ...*Report) error {
	if len(reps) == 0 {
		return fmt.Errorf("bench: nothing to plot")
	}
	var panels []panel
	for i, r := range reps {
		name := r.Mode
		pal := palette[i%len(palette)]
		if len(r.Series) == 0 {
			continue
		}
		xMax := r.Series[len(r.Series)-1].T
		tp := panel{
			title:  fmt.Sprintf("%s: throughput over time (%s)", name, rateTitle(r)),
			xLabel: "seconds since start", yLabel: "requests/s",
			xMax: xMax, shadeTo: r.WarmupS, shadeLabel: "warmup",
		}
		lp := panel{
			title:  fmt.Sprintf("%s: latency over time (per second, intended send → result)", name),
			xLabel: "seconds since start", yLabel: "latency (ms)", logY: true,
			xMax: xMax, shadeTo: r.WarmupS, shadeLabel: "warmup",
		}
		op := panel{
			title:  "CPU taken by other processes on the machine (it is shared)",
			xLabel: "seconds since start", yLabel: "cores",
			xMax: xMax, shadeTo: r.WarmupS, shadeLabel: "warmup", yFixed: float64(runtime.NumCPU()),
		}
		var ts, sent, done, p50, p99, mx, other []float64
		for _, p := range r.Series {
			other = append(other, p.OtherCores)
			ts = append(ts, p.T)
			sent = append(sent, float64(p.Sent))
			done = append(done, float64(p.Completed))
			p50 = append(p50, p.P50)
			p99 = append(p99, p.P99)
			mx = append(mx, p.Max)
		}
		tp.series = []plotSeries{
			{name: "sent/s", color: "#7f7f7f", dash: "6,4", xs: ts, ys: sent},
			{name: "done/s", color: pal[0], xs: ts, ys: done},
		}
		lp.series = []plotSeries{
			{name: "p50", color: pal[0], xs: ts, ys: p50},
			{name: "p99", color: pal[1], xs: ts, ys: p99},
			{name: "max", color: pal[2], xs: ts, ys: mx},
		}
		op.series = []plotSeries{{name: "other", color: "#7f7f7f", xs: ts, ys: other}}
		panels = append(panels, tp, lp, op)
	}
	cp := panel{
		title:  "latency by percentile (measured window)",
		xLabel: "percentile", yLabel: "latency (ms)", logY: true,
		xMin: 0, xMax: 5,
	}
	for x := 0; x <= 5; x++ {
		cp.xTicks = append(cp.xTicks, tick{float64(x), percentileLabel(x)})
	}
	for i, r := range reps {
		pal := palette[i%len(palette)]
		var xs, ys []float64
		for _, c := range r.Curve {
			xs = append(xs, ninesX(c.Percentile))
			ys = append(ys, c.MS)
		}
		if len(xs) > 0 {
			cp.series = append(cp.series, plotSeries{name: r.Mode, color: pal[0], xs: xs, ys: ys})
		}
	}
	panels = append(panels, cp)

	h := len(panels)*(panelH+panelGap) + 20
	fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="%s" font-size="12">`+"\n",
		plotW, h, plotW, h, fontFamily)
	fmt.Fprintf(w, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	for i, p := range panels {
		p.autoscale()
		p.draw(w, float64(i*(panelH+panelGap)+10))
	}
	_, err := fmt.Fprintln(w, "</svg>")
	return err
}

func rateTitle(r *Report) string {
	if r.TargetRPS > 0 {
		return r.Rate + " req/s open loop"
	}
	return "as fast as possible"
}

// ninesX maps a percentile to its position on the curve's axis: 90 → 1,
// 99 → 2, 99.9 → 3, … capped at 5 (99.999 and above).
func ninesX(p float64) float64 {
	if p >= 100 {
		return 5
	}
	return min(-math.Log10(1-p/100), 5)
}

func percentileLabel(nines int) string {
	switch nines {
	case 0:
		return "0%"
	case 1:
		return "90%"
	case 2:
		return "99%"
	}
	return "99." + strings.Repeat("9", nines-2) + "%"
}

func (p *panel) autoscale() {
	first := true
	for _, s := range p.series {
		for i, y := range s.ys {
			if p.logY && y <= 0 {
				continue
			}
			if first {
				p.yMin, p.yMax = y, y
				first = false
			}
			p.yMin, p.yMax = min(p.yMin, y), max(p.yMax, y)
			if p.xMax == 0 || s.xs[i] > p.xMax {
				p.xMax = max(p.xMax, s.xs[i])
			}
		}
	}
	if first {
		p.yMin, p.yMax = 0, 1
	}
	if p.logY {
		p.yMin = math.Pow(10, math.Floor(math.Log10(max(p.yMin, 0.01))))
		p.yMax = math.Pow(10, math.Ceil(math.Log10(max(p.yMax, p.yMin*10))))
	} else {
		p.yMin = 0
		p.yMax = niceCeil(p.yMax * 1.05)
		if p.yFixed > 0 {
			p.yMax = max(p.yFixed, p.yMax)
		}
	}
	if p.xMax <= p.xMin {
		p.xMax = p.xMin + 1
	}
}

// niceCeil rounds v up to a round multiple of a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	e := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10} {
		if v <= m*e {
			return m * e
		}
	}
	return 10 * e
}

func (p *panel) draw(w io.Writer, top float64) {
	x0, x1 := float64(marginL), float64(plotW-marginR)
	y0, y1 := top+marginT, top+panelH-marginB+float64(marginT)/2
	sx := func(x float64) float64 { return x0 + (x-p.xMin)/(p.xMax-p.xMin)*(x1-x0) }
	sy := func(y float64) float64 {
		if p.logY {
			y = max(y, p.yMin)
			return y1 - (math.Log10(y)-math.Log10(p.yMin))/(math.Log10(p.yMax)-math.Log10(p.yMin))*(y1-y0)
		}
		return y1 - (y-p.yMin)/(p.yMax-p.yMin)*(y1-y0)
	}
	fmt.Fprintf(w, `<text x="%.1f" y="%.1f" font-size="14" font-weight="bold">%s</text>`+"\n", x0, top+22, html.EscapeString(p.title))
	if p.shadeTo > p.xMin {
		fmt.Fprintf(w, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#eeeeee"/>`+"\n", x0, y0, sx(min(p.shadeTo, p.xMax))-x0, y1-y0)
		fmt.Fprintf(w, `<text x="%.1f" y="%.1f" fill="#888">%s</text>`+"\n", x0+4, y0+14, p.shadeLabel)
	}
	// Grid and y ticks.
	for _, t := range p.yTicks() {
		y := sy(t.v)
		fmt.Fprintf(w, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#dddddd"/>`+"\n", x0, y, x1, y)
		fmt.Fprintf(w, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", x0-6, y+4, t.label)
	}
	xt := p.xTicks
	if xt == nil {
		xt = linearTicks(p.xMin, p.xMax)
	}
	for _, t := range xt {
		x := sx(t.v)
		fmt.Fprintf(w, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#dddddd"/>`+"\n", x, y0, x, y1)
		fmt.Fprintf(w, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", x, y1+16, t.label)
	}
	fmt.Fprintf(w, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#333"/>`+"\n", x0, y0, x1-x0, y1-y0)
	fmt.Fprintf(w, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", (x0+x1)/2, y1+34, html.EscapeString(p.xLabel))
	fmt.Fprintf(w, `<text transform="translate(%.1f %.1f) rotate(-90)" text-anchor="middle">%s</text>`+"\n", x0-58, (y0+y1)/2, html.EscapeString(p.yLabel))
	for i, s := range p.series {
		var pts []string
		for j := range s.xs {
			if p.logY && s.ys[j] <= 0 {
				continue
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", sx(s.xs[j]), sy(s.ys[j])))
		}
		dash := ""
		if s.dash != "" {
			dash = fmt.Sprintf(` stroke-dasharray="%s"`, s.dash)
		}
		if len(pts) > 0 {
			fmt.Fprintf(w, `<polyline fill="none" stroke="%s" stroke-width="2"%s points="%s"/>`+"\n", s.color, dash, strings.Join(pts, " "))
		}
		ly := y0 + 10 + float64(i)*20
		fmt.Fprintf(w, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"%s/>`+"\n", x1+12, ly, x1+36, ly, s.color, dash)
		fmt.Fprintf(w, `<text x="%.1f" y="%.1f">%s</text>`+"\n", x1+42, ly+4, html.EscapeString(s.name))
	}
}

func (p *panel) yTicks() []tick {
	if !p.logY {
		return linearTicks(p.yMin, p.yMax)
	}
	var ts []tick
	for d := p.yMin; d <= p.yMax*1.0001; d *= 10 {
		for _, m := range []float64{1, 2, 5} {
			v := d * m
			if v > p.yMax*1.0001 {
				break
			}
			ts = append(ts, tick{v, trimFloat(v)})
		}
	}
	return ts
}

func linearTicks(lo, hi float64) []tick {
	step := niceCeil((hi - lo) / 6)
	var ts []tick
	for v := math.Ceil(lo/step) * step; v <= hi+step*1e-9; v += step {
		ts = append(ts, tick{v, trimFloat(v)})
	}
	return ts
}

func trimFloat(v float64) string {
	switch {
	case v >= 1e6:
		return trimFloat(v/1e6) + "M"
	case v >= 1e4:
		return trimFloat(v/1e3) + "k"
	}
	s := fmt.Sprintf("%.3f", v)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s
}
