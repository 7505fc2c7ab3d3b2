package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is the outcome of one run. The JSON names are stable: scripts and
// CI read them.
type Report struct {
	Mode      string `json:"mode"`
	ModelPath string `json:"model_path"`
	// ModelFile is the --model file served instead of the demo model.
	ModelFile     string  `json:"model_file,omitempty"`
	Rate          string  `json:"rate"`       // as asked: a number or "max"
	TargetRPS     float64 `json:"target_rps"` // 0 for max
	DurationS     float64 `json:"duration_s"`
	WarmupS       float64 `json:"warmup_s"`
	SelfContained bool    `json:"self_contained"`
	Brokers       string  `json:"brokers"`
	Partitions    int     `json:"partitions,omitempty"`
	Durability    string  `json:"durability,omitempty"`
	Compression   string  `json:"compression,omitempty"`
	// The self-contained pipeline's settings.
	MaxBatch int    `json:"max_batch,omitempty"`
	MaxWait  string `json:"max_wait,omitempty"`
	InFlight int    `json:"in_flight,omitempty"`
	Linger   string `json:"linger"` // the generator's
	Started  string `json:"started"`

	// Sent is requests the broker acknowledged; Results and DLQ count
	// distinct requests whose output arrived; Lost = Sent - Results - DLQ
	// after the drain and must be 0.
	Sent       int64 `json:"sent"`
	Results    int64 `json:"results"`
	DLQ        int64 `json:"dlq"`
	Lost       int64 `json:"lost"`
	Duplicates int64 `json:"duplicates"`
	// ThroughputRPS is outputs (results and DLQ records) that arrived
	// within the measured window, per second.
	ThroughputRPS float64 `json:"throughput_rps"`
	Percentiles
	// Encoded is the latency up to the result's "timestamp" field, when the
	// pipeline encoded it; the rest is producing it and fetching it here.
	EncodedP50MS float64 `json:"encoded_p50_ms"`
	EncodedP99MS float64 `json:"encoded_p99_ms"`
	// ModelCalls and MeanBatch (self-contained pipeline) are the model calls
	// within the window and the rows each carried on average.
	ModelCalls uint64  `json:"model_calls,omitempty"`
	MeanBatch  float64 `json:"mean_batch,omitempty"`
	// SendLag is how late the generator handed requests to the producer
	// relative to their slots: its own share of the latency (fixed rate).
	SendLagP99MS float64 `json:"send_lag_p99_ms"`
	SendLagMaxMS float64 `json:"send_lag_max_ms"`

	// Resource use of the appliance (self-contained: this whole process,
	// generator and collector included; external: --pid, else zero).
	RSSMB      float64 `json:"rss_mb"`      // highest RSS sampled while sending and draining
	RSSIdleMB  float64 `json:"rss_idle_mb"` // RSS once ready, before sending
	RSSPeakMB  float64 `json:"rss_peak_mb"` // VmHWM: the peak since the process started
	CPUSeconds float64 `json:"cpu_seconds"` // CPU time within the measured window
	CPUCores   float64 `json:"cpu_cores"`   // CPUSeconds / window: cores busy on average
	// CPUMicrosPerRequest is CPUSeconds over the outputs of the window: a
	// cost per request that other load on the machine hardly changes.
	CPUMicrosPerRequest float64 `json:"cpu_us_per_request"`
	ReadyMS             float64 `json:"ready_ms"` // self-contained: New to ready
	// OtherCores is how many cores other processes on the machine kept busy
	// on average during the window (the machine may be shared).
	OtherCores float64 `json:"other_cores"`

	// Shadow (--shadow) is what the shadow of version 2 did.
	Shadow *ShadowFigures `json:"shadow,omitempty"`

	Errors []string      `json:"errors,omitempty"`
	Series []SeriesPoint `json:"series,omitempty"`
	Curve  []CurvePoint  `json:"curve,omitempty"`
}

// OK reports whether the run lost nothing and met no error.
func (r *Report) OK() bool { return r.Lost == 0 && len(r.Errors) == 0 }

// WriteJSON writes the report as one JSON object.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes the report for a person.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	target := "as fast as possible"
	if r.TargetRPS > 0 {
		target = fmt.Sprintf("%s req/s (open loop)", r.Rate)
	}
	where := "external " + r.Brokers
	if r.SelfContained {
		where = "self-contained (in process)"
	}
	row := func(k, format string, args ...any) { fmt.Fprintf(tw, "  %s\t%s\n", k, fmt.Sprintf(format, args...)) }
	fmt.Fprintf(tw, "infergate bench: %s, model %s\n", r.Mode, r.ModelPath)
	if r.ModelFile != "" {
		fmt.Fprintf(tw, "model file: %s (served as %q)\n", r.ModelFile, ModelName)
	}
	row("appliance", "%s", where)
	row("rate", "%s for %s after %s warmup", target, secs(r.DurationS), secs(r.WarmupS))
	if r.SelfContained {
		row("settings", "%d partitions, durability %s, compression %s; pipeline max batch %d, max wait %s, %d in flight; generator linger %s",
			r.Partitions, r.Durability, r.Compression, r.MaxBatch, r.MaxWait, r.InFlight, r.Linger)
	}
	row("sent", "%d", r.Sent)
	row("results", "%d", r.Results)
	row("dlq", "%d", r.DLQ)
	row("lost", "%d", r.Lost)
	if r.Duplicates > 0 {
		row("duplicates", "%d (delivered twice, counted once)", r.Duplicates)
	}
	row("throughput", "%.0f req/s", r.ThroughputRPS)
	row("latency", "p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (%d measured)",
		ms(r.P50), ms(r.P90), ms(r.P99), ms(r.P999), ms(r.Max), r.Count)
	if r.ModelCalls > 0 {
		row("batches", "%d model calls, %.1f requests each on average", r.ModelCalls, r.MeanBatch)
	}
	if r.EncodedP99MS > 0 {
		row("to encoded", "p50 %s  p99 %s  (up to the result's timestamp; the rest is its produce and fetch)", ms(r.EncodedP50MS), ms(r.EncodedP99MS))
	}
	if r.TargetRPS > 0 {
		row("send lag", "p99 %s  max %s  (generator's own lateness, included above)", ms(r.SendLagP99MS), ms(r.SendLagMaxMS))
	}
	if r.RSSMB > 0 {
		row("memory", "RSS idle %.1f MB, under load %.1f MB, peak %.1f MB", r.RSSIdleMB, r.RSSMB, r.RSSPeakMB)
		row("cpu", "%.1f s in the window = %.2f cores, %.1f µs per request", r.CPUSeconds, r.CPUCores, r.CPUMicrosPerRequest)
	}
	row("other load", "%.2f cores busy with other processes on average (%d CPUs)", r.OtherCores, runtime.NumCPU())
	if s := r.Shadow; s != nil {
		if s.Error != "" {
			row("shadow", "%s version 2 shadowed every request; its report: %s", s.Model, s.Error)
		} else {
			row("shadow", "%s version 2 shadowed every request: %d compared with version 1, %d skipped while the pipeline was busy, agreement %.2f%%",
				s.Model, s.Compared, s.Dropped, 100*s.Agreement)
		}
	}
	if r.ReadyMS > 0 {
		row("ready", "%.0f ms after start (empty data dir)", r.ReadyMS)
	}
	for _, e := range r.Errors {
		row("error", "%s", e)
	}
	return tw.Flush()
}

func ms(v float64) string {
	if v < 10 {
		return fmt.Sprintf("%.2f ms", v)
	}
	return fmt.Sprintf("%.1f ms", v)
}

func secs(s float64) string { return time.Duration(s * float64(time.Second)).String() }

// Comparison is the pipeline and the baseline measured back to back.
type Comparison struct {
	Pipeline *Report `json:"pipeline"`
	Baseline *Report `json:"baseline"`
	// Ratio is the pipeline's throughput over the baseline's.
	Ratio float64 `json:"ratio"`
}

func (c *Comparison) WriteTable(w io.Writer) error {
	if err := c.Pipeline.WriteTable(w); err != nil {
		return err
	}
	fmt.Fprintln(w)
	if err := c.Baseline.WriteTable(w); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\npipeline / baseline throughput: %.1fx (%.0f / %.0f req/s)\n",
		c.Ratio, c.Pipeline.ThroughputRPS, c.Baseline.ThroughputRPS)
	return err
}

func (c *Comparison) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(c)
}

// progressLine is what is printed on stderr every second.
func progressLine(el time.Duration, warmup bool, sent, done, dlq, dSent, dDone int64, p99 float64, rssMB float64) string {
	var b strings.Builder
	phase := "     "
	if warmup {
		phase = "warm "
	}
	fmt.Fprintf(&b, "%s%5.0fs  sent %9d (%7d/s)  done %9d (%7d/s)  dlq %6d  outstanding %7d  p99 %s",
		phase, el.Seconds(), sent, dSent, done, dDone, dlq, sent-done, ms(p99))
	if rssMB > 0 {
		fmt.Fprintf(&b, "  rss %.0f MB", rssMB)
	}
	return b.String()
}
