package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	goruntime "runtime"
	"text/tabwriter"
	"time"

	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/modelbench"
	"github.com/infergate/infergate/inference/modelserver/rest"
	"github.com/infergate/infergate/inference/tensor"
)

const modelBenchSynopsis = "model bench FILE|DIR [--batch 1,32] [--threads N] [--input FILE.json] [--duration 2s] [--json]"

// cmdModel is `infergate model SUBCOMMAND`; today only bench.
func cmdModel(ctx context.Context, args []string, io stdio) error {
	if len(args) > 0 {
		switch args[0] {
		case "rollback", "serve", "delete-version", "label":
			return cmdModelVersions(ctx, args[0], args[1:], io)
		}
	}
	if len(args) == 0 || args[0] != "bench" {
		fmt.Fprintf(io.err, "Usage: infergate %s\n       infergate %s\n", modelBenchSynopsis, versionsSynopsis)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return nil
		}
		return usageError{error: errors.New("missing subcommand: bench, rollback, serve, delete-version or label"), printed: false}
	}
	return cmdModelBench(ctx, args[1:], io)
}

// benchReport is what --json prints.
type benchReport struct {
	Model   string              `json:"model"`
	Format  string              `json:"format"`
	Threads int                 `json:"threads"`
	Kernel  string              `json:"gemm_kernel"`
	Results []modelbench.Result `json:"results"`
}

func cmdModelBench(ctx context.Context, args []string, io stdio) error {
	fs := newFlagSet("model bench", modelBenchSynopsis, io.err)
	batches := fs.String("batch", "1,32", "batch sizes to time, comma-separated (random inputs; ignored with --input)")
	threads := fs.Int("threads", 0, "threads one call may use (0: all cores, GOMAXPROCS)")
	input := fs.String("input", "", "request file in TF Serving's REST form ({\"inputs\": …} or {\"instances\": …}) instead of random inputs")
	duration := fs.Duration("duration", 2*time.Second, "how long to time each batch size (after a warm-up of a tenth of it)")
	dyn := fs.Int("dynamic-dim", 1, "size given to open dimensions other than the first (the batch)")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	// The file may come before the flags: parse what follows it again.
	var path string
	for {
		if err := fs.Parse(args); err != nil {
			return helpOrUsage(err)
		}
		if fs.NArg() == 0 {
			break
		}
		if path != "" {
			return usageErr(fmt.Errorf("one model FILE or DIR, got %q and %q", path, fs.Arg(0)))
		}
		path, args = fs.Arg(0), fs.Args()[1:]
	}
	if path == "" {
		return usageErr(errors.New("missing the model FILE or DIR"))
	}
	if *threads < 0 {
		return usageErr(fmt.Errorf("--threads is %d, want 0 (all cores) or more", *threads))
	}
	if *duration <= 0 {
		return usageErr(fmt.Errorf("--duration is %v, want more than 0", *duration))
	}
	if *dyn < 1 {
		return usageErr(fmt.Errorf("--dynamic-dim is %d, want at least 1", *dyn))
	}
	bs, err := modelbench.ParseBatches(*batches)
	if err != nil {
		return usageErr(fmt.Errorf("--batch %q: %w", *batches, err))
	}
	m, err := modelbench.Open(path, *threads)
	if err != nil {
		return err
	}
	var feeds []map[string]*tensor.Tensor
	if *input != "" {
		body, err := os.ReadFile(*input)
		if err != nil {
			return usageErr(fmt.Errorf("--input: %w", err))
		}
		in, err := rest.DecodeInputs(body, &model.Signature{Inputs: m.Inputs, Outputs: m.Outputs})
		if err != nil {
			return usageErr(fmt.Errorf("--input %s: %w", *input, err))
		}
		feeds = append(feeds, in)
	} else {
		for i, b := range bs {
			in, err := modelbench.RandomInputs(m.Inputs, b, *dyn, uint64(i+1))
			if err != nil {
				return err
			}
			feeds = append(feeds, in)
		}
	}
	rep := benchReport{Model: m.Path, Format: m.Format, Threads: *threads, Kernel: modelbench.KernelName()}
	if rep.Threads == 0 {
		rep.Threads = goruntime.GOMAXPROCS(0)
	}
	for _, in := range feeds {
		r, err := modelbench.Measure(ctx, m, in, *duration)
		if err != nil {
			return fmt.Errorf("batch %d: %w", modelbench.BatchOf(m.Inputs, in), err)
		}
		rep.Results = append(rep.Results, r)
	}
	if *asJSON {
		enc := json.NewEncoder(io.out)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	fmt.Fprintf(io.out, "%s (%s), %d threads, GEMM kernel %s\n", rep.Model, rep.Format, rep.Threads, rep.Kernel)
	tw := tabwriter.NewWriter(io.out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "batch\tµs/call (median)\tµs/call (mean)\tCPU µs/call\tpredictions/s\tcalls\t")
	for _, r := range rep.Results {
		fmt.Fprintf(tw, "%d\t%.1f\t%.1f\t%.1f\t%.0f\t%d\t\n", r.Batch, r.MicrosPerCall, r.MeanMicrosPerCall, r.CPUMicrosPerCall, r.PredictionsPerSec, r.Calls)
	}
	return tw.Flush()
}
