package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/infergate/infergate/inference/rollout"
	"github.com/infergate/infergate/store"
	"github.com/infergate/infergate/web"
)

const rolloutSubcommands = "start, status, report, percent, promote, abort, capture, datasets, replay or delete-dataset"

// datasetTimeout is --timeout of capture and replay when not given.
const datasetTimeout = 10 * time.Minute

// datasetFlags are the flags of rollout capture and replay.
type datasetFlags struct {
	asJSON *bool
	spec   *rollout.Spec // --stable, --candidate, --threshold, --tolerance, --output of start
	last   int
	since  string
	until  string
	model  string
	dlq    bool
	class  string
	ids    string
}

func (d *datasetFlags) register(fs *flag.FlagSet) {
	fs.IntVar(&d.last, "last", 0, "capture: the newest N requests (default 1000 when neither --since nor --until is given)")
	fs.StringVar(&d.since, "since", "", "capture: from this time (RFC 3339, Unix seconds, or a duration ago such as 15m)")
	fs.StringVar(&d.until, "until", "", "capture: up to this time (default: now)")
	fs.StringVar(&d.model, "model", "", "capture: only the requests of this model; replay: the model scored (default: the dataset's, else pipeline.default_model)")
	fs.BoolVar(&d.dlq, "dlq", false, "capture: dead-lettered requests (the DLQ store) instead of the requests topic")
	fs.StringVar(&d.class, "class", "", "capture --dlq: only dead letters of this error class")
	fs.StringVar(&d.ids, "ids", "", "capture --dlq: these dead letters, by id (comma-separated)")
}

// datasetCommand is rollout capture|datasets|replay|delete-dataset; ok is
// false for another subcommand.
func datasetCommand(ctx context.Context, sub string, pos []string, d datasetFlags, io stdio) (call func(*apiBackend) error, ok bool, err error) {
	one := func() error {
		if len(pos) != 1 {
			return usageErr(fmt.Errorf("rollout %s: wrong number of arguments\nUsage: infergate %s", sub, rolloutSynopsis))
		}
		return nil
	}
	switch sub {
	case "capture":
		if err := one(); err != nil {
			return nil, true, err
		}
		req := web.CaptureRequest{Name: pos[0], Last: d.last, Since: d.since, Until: d.until, Model: d.model, Class: d.class}
		if d.dlq {
			req.Source = rollout.SourceDLQ
		}
		for _, id := range strings.Split(d.ids, ",") {
			if id = strings.TrimSpace(id); id != "" {
				req.IDs = append(req.IDs, id)
			}
		}
		if !d.dlq && (req.Class != "" || len(req.IDs) > 0) {
			return nil, true, usageErr(errors.New("--class and --ids select dead letters: add --dlq"))
		}
		return func(api *apiBackend) error {
			var ds store.Dataset
			if err := api.do(ctx, http.MethodPost, "/api/v1/datasets", nil, req, &ds); err != nil {
				return err
			}
			if *d.asJSON {
				return json.NewEncoder(io.out).Encode(ds)
			}
			printDatasets(io.out, []store.Dataset{ds})
			return nil
		}, true, nil
	case "datasets":
		if len(pos) != 0 {
			return nil, true, usageErr(fmt.Errorf("rollout datasets takes no arguments\nUsage: infergate %s", rolloutSynopsis))
		}
		return func(api *apiBackend) error {
			var out struct {
				Datasets []store.Dataset `json:"datasets"`
			}
			if err := api.do(ctx, http.MethodGet, "/api/v1/datasets", nil, nil, &out); err != nil {
				return err
			}
			if *d.asJSON {
				return json.NewEncoder(io.out).Encode(out.Datasets)
			}
			printDatasets(io.out, out.Datasets)
			return nil
		}, true, nil
	case "replay":
		if err := one(); err != nil {
			return nil, true, err
		}
		spec := rollout.ReplaySpec{Model: d.model, Stable: d.spec.Stable, Candidate: d.spec.Candidate,
			Threshold: d.spec.Threshold, Tolerance: d.spec.Tolerance, Output: d.spec.Output}
		return func(api *apiBackend) error {
			var rep rollout.Report
			if err := api.do(ctx, http.MethodPost, "/api/v1/datasets/"+url.PathEscape(pos[0])+"/replay", nil, spec, &rep); err != nil {
				return err
			}
			if *d.asJSON {
				enc := json.NewEncoder(io.out)
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			printReport(io.out, &rep)
			return nil
		}, true, nil
	case "delete-dataset":
		if err := one(); err != nil {
			return nil, true, err
		}
		return func(api *apiBackend) error {
			if err := api.do(ctx, http.MethodDelete, "/api/v1/datasets/"+url.PathEscape(pos[0]), nil, nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(io.out, "dataset %s deleted\n", pos[0])
			return nil
		}, true, nil
	}
	return nil, false, nil
}

func printDatasets(w io.Writer, list []store.Dataset) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSOURCE\tRECORDS\tBYTES\tSELECTION\tCREATED\tEXPIRES")
	for _, d := range list {
		sel := d.Selection
		if d.Truncated {
			sel += " (truncated at the size limit)"
		}
		expires := "-"
		if !d.ExpiresAt.IsZero() {
			expires = d.ExpiresAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\n", d.Name, d.Source, d.Records, d.Bytes, sel, d.CreatedAt.UTC().Format(time.RFC3339), expires)
	}
	tw.Flush()
}
