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
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/infergate/infergate/appliance"
	"github.com/infergate/infergate/inference/rollout"
)

const rolloutSynopsis = `rollout start MODEL [--stable V] [--candidate V] [--shadow | --percent P | --steps 10%:5m,50%:10m,100%:10m]
                       [--sample S] [--max-error-rate R] [--max-p99 D] [--max-disagreement R] [--min-requests N]
                       [--threshold T] [--tolerance T] [--output NAME]
       infergate rollout status [MODEL] [--json]
       infergate rollout report MODEL [--json]
       infergate rollout percent MODEL P
       infergate rollout promote MODEL
       infergate rollout abort MODEL [--reason TEXT]
       infergate rollout capture NAME [--last N] [--since T] [--until T] [--model MODEL]
                       [--dlq [--class CLASS] [--ids ID,...]]
       infergate rollout datasets [--json]
       infergate rollout replay DATASET [--model MODEL] [--stable V] [--candidate V] [--json]
       infergate rollout delete-dataset NAME
   (each with [--url URL] [--token TOKEN] [--data-dir DIR])`

const versionsSynopsis = `model rollback MODEL [VERSION]   serve the version before the one serving (or VERSION)
       infergate model serve MODEL VERSION       serve VERSION (0: the latest again)
       infergate model delete-version MODEL VERSION
       infergate model label MODEL LABEL VERSION
   (each with [--url URL] [--token TOKEN] [--data-dir DIR])`

// adminFlags find a running appliance's admin API: --url, else the address
// it left in its data dir, else http.listen; the token from --token,
// INFERGATE_ADMIN_TOKEN or <data dir>/admin-token.
type adminFlags struct {
	cf    clientFlags
	url   *string
	token *string
}

func (f *adminFlags) register(fs *flag.FlagSet) {
	f.cf.register(fs)
	f.url = fs.String("url", "", "admin API of a running appliance, e.g. http://127.0.0.1:8080")
	f.token = fs.String("token", "", "admin token (default INFERGATE_ADMIN_TOKEN, else <data dir>/admin-token)")
}

func (f *adminFlags) api(environ []string) (*apiBackend, error) {
	cfg, err := f.cf.settings(environ)
	if err != nil {
		return nil, err
	}
	dir := f.cf.dataDir
	if dir == "" {
		dir = cfg.DataDir
	}
	u, source := *f.url, "--url"
	if u == "" {
		if u, source = runningAdminURL(dir, cfg); u == "" {
			return nil, usageErr(errors.New("no admin API: pass --url (http.listen is empty)"))
		}
	}
	return newAPIBackend(u, source, adminToken(*f.token, environ, dir), f.cf.timeout)
}

// adminToken is the admin token given (--token), else INFERGATE_ADMIN_TOKEN,
// else the one the appliance wrote into its data dir.
func adminToken(given string, environ []string, dataDir string) string {
	if given != "" {
		return given
	}
	if t := envMap(environ)["INFERGATE_ADMIN_TOKEN"]; t != "" {
		return t
	}
	t, _ := appliance.ReadAdminToken(dataDir)
	return t
}

// runningAdminURL is the admin API of the appliance running on dataDir: the
// address it left there, else http.listen's; "" when http.listen is empty.
// source says where it came from, for errors.
func runningAdminURL(dataDir string, cfg *appliance.Config) (u, source string) {
	if got, err := appliance.ReadAdminURL(dataDir); err == nil && got != "" {
		return got, filepath.Join(dataDir, appliance.AdminURLFile) + ", written by the appliance running on " + dataDir
	}
	if cfg.HTTP.Listen == "" {
		return "", ""
	}
	return "http://" + dialable(cfg.HTTP.Listen), "the http.listen setting"
}

// parseInterleaved parses flags that may come before or after the positional
// arguments and returns the positional ones. Its error is fs.Parse's, for
// helpOrUsage (flag.ErrHelp after --help).
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// cmdModelVersions is `infergate model rollback|serve|delete-version|label`.
func cmdModelVersions(ctx context.Context, sub string, args []string, io stdio) error {
	fs := newFlagSet("model "+sub, versionsSynopsis, io.err)
	var af adminFlags
	af.register(fs)
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return helpOrUsage(err)
	}
	num := func(i int, what string) (int64, error) {
		v, err := strconv.ParseInt(pos[i], 10, 64)
		if err != nil || v < 0 {
			return 0, usageErr(fmt.Errorf("%s %q is not a version number", what, pos[i]))
		}
		return v, nil
	}
	want := map[string][2]int{"rollback": {1, 2}, "serve": {2, 2}, "delete-version": {2, 2}, "label": {3, 3}}[sub]
	if len(pos) < want[0] || len(pos) > want[1] {
		return usageErr(fmt.Errorf("model %s: wrong number of arguments\nUsage: infergate %s", sub, versionsSynopsis))
	}
	api, err := af.api(io.environ)
	if err != nil {
		return err
	}
	name := url.PathEscape(pos[0])
	var out map[string]any
	switch sub {
	case "rollback":
		body := map[string]any{}
		if len(pos) == 2 {
			v, err := num(1, "VERSION")
			if err != nil {
				return err
			}
			body["version"] = v
		}
		err = api.do(ctx, http.MethodPost, "/api/v1/models/"+name+"/rollback", nil, body, &out)
		if err == nil {
			fmt.Fprintf(io.out, "model %s: serving version %v\n", pos[0], out["serving_version"])
		}
	case "serve":
		v, err2 := num(1, "VERSION")
		if err2 != nil {
			return err2
		}
		err = api.do(ctx, http.MethodPut, "/api/v1/models/"+name+"/serving", nil, map[string]any{"version": v}, &out)
		if err == nil {
			fmt.Fprintf(io.out, "model %s: serving version %d (0: the latest)\n", pos[0], v)
		}
	case "delete-version":
		v, err2 := num(1, "VERSION")
		if err2 != nil {
			return err2
		}
		err = api.do(ctx, http.MethodDelete, "/api/v1/models/"+name+"/versions/"+strconv.FormatInt(v, 10), nil, nil, &out)
		if err == nil {
			fmt.Fprintf(io.out, "model %s: version %d deleted\n", pos[0], v)
		}
	case "label":
		v, err2 := num(2, "VERSION")
		if err2 != nil {
			return err2
		}
		err = api.do(ctx, http.MethodPut, "/api/v1/models/"+name+"/labels/"+url.PathEscape(pos[1]), nil, map[string]any{"version": v}, &out)
		if err == nil {
			fmt.Fprintf(io.out, "model %s: label %s -> version %d\n", pos[0], pos[1], v)
		}
	}
	return err
}

// cmdRollout is `infergate rollout SUBCOMMAND`.
func cmdRollout(ctx context.Context, args []string, io stdio) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprintf(io.err, "Usage: infergate %s\n", rolloutSynopsis)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return nil
		}
		return usageError{error: errors.New("missing subcommand: " + rolloutSubcommands), printed: false}
	}
	sub, args := args[0], args[1:]
	fs := newFlagSet("rollout "+sub, rolloutSynopsis, io.err)
	var af adminFlags
	af.register(fs)
	asJSON := fs.Bool("json", false, "status, report, datasets, replay: print JSON")
	var spec rollout.Spec
	fs.Int64Var(&spec.Stable, "stable", 0, "start, replay: version serving now (default: the pinned or highest)")
	fs.Int64Var(&spec.Candidate, "candidate", 0, "start, replay: version to try (default: the highest)")
	shadow := fs.Bool("shadow", false, "start: shadow only (the default without --percent or --steps)")
	fs.Float64Var(&spec.Percent, "percent", 0, "start: split at once, this share of keys (0-100) to the candidate")
	steps := fs.String("steps", "", "start: planned split, e.g. 10%:5m,50%:10m,100%:10m (the plan promotes after the last hold)")
	fs.Float64Var(&spec.Sample, "sample", 1, "start: share of requests scored by both versions (0-1)")
	fs.Float64Var(&spec.Guards.MaxErrorRate, "max-error-rate", 0, "start: roll back when the candidate fails more than this share of its requests (0: no guard)")
	maxP99 := fs.Duration("max-p99", 0, "start: roll back when the candidate's model call p99 exceeds this (0: no guard)")
	fs.Float64Var(&spec.Guards.MaxDisagreement, "max-disagreement", 0, "start: roll back when more than this share of compared requests disagree (0: no guard)")
	fs.IntVar(&spec.Guards.MinRequests, "min-requests", 20, "start: requests the candidate must have answered or been compared on before a guard judges")
	fs.Float64Var(&spec.Threshold, "threshold", 0.5, "start: score at which a decision flips (report: threshold flips)")
	fs.Float64Var(&spec.Tolerance, "tolerance", 1e-6, "start: largest score difference that still agrees")
	fs.StringVar(&spec.Output, "output", "", "start: output compared (default: the first by name)")
	reason := fs.String("reason", "", "abort: why (kept in the rollout and the audit log)")
	ds := datasetFlags{asJSON: asJSON, spec: &spec}
	ds.register(fs)
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return helpOrUsage(err)
	}
	needModel := func(n int) error {
		if len(pos) != n {
			return usageErr(fmt.Errorf("rollout %s: wrong number of arguments\nUsage: infergate %s", sub, rolloutSynopsis))
		}
		return nil
	}
	var call func(api *apiBackend) error
	probe := false // check the API answers before a long call
	switch sub {
	case "start":
		if err := needModel(1); err != nil {
			return err
		}
		spec.Model = pos[0]
		spec.Guards.MaxP99Ms = float64(*maxP99) / float64(time.Millisecond)
		if *steps != "" {
			if spec.Steps, err = rollout.ParseSteps(*steps); err != nil {
				return usageErr(fmt.Errorf("--steps: %w", err))
			}
		}
		switch {
		case *shadow && (spec.Percent > 0 || len(spec.Steps) > 0):
			return usageErr(errors.New("--shadow with --percent or --steps: choose one"))
		case *shadow:
			spec.Mode = rollout.ModeShadow
		case spec.Percent > 0 || len(spec.Steps) > 0:
			spec.Mode = rollout.ModeSplit
		}
		call = func(api *apiBackend) error {
			var r rollout.Rollout
			if err := api.do(ctx, http.MethodPost, "/api/v1/rollouts", nil, spec, &r); err != nil {
				return err
			}
			printRollouts(io.out, []rollout.Rollout{r})
			return nil
		}
	case "status":
		if len(pos) > 1 {
			return needModel(1)
		}
		call = func(api *apiBackend) error {
			var list []rollout.Rollout
			if len(pos) == 1 {
				var r rollout.Rollout
				if err := api.do(ctx, http.MethodGet, "/api/v1/rollouts/"+url.PathEscape(pos[0]), nil, nil, &r); err != nil {
					return err
				}
				list = []rollout.Rollout{r}
			} else {
				var out struct {
					Rollouts []rollout.Rollout `json:"rollouts"`
				}
				if err := api.do(ctx, http.MethodGet, "/api/v1/rollouts", nil, nil, &out); err != nil {
					return err
				}
				list = out.Rollouts
			}
			if *asJSON {
				return json.NewEncoder(io.out).Encode(list)
			}
			printRollouts(io.out, list)
			return nil
		}
	case "report":
		if err := needModel(1); err != nil {
			return err
		}
		call = func(api *apiBackend) error {
			var rep rollout.Report
			if err := api.do(ctx, http.MethodGet, "/api/v1/rollouts/"+url.PathEscape(pos[0])+"/report", nil, nil, &rep); err != nil {
				return err
			}
			if *asJSON {
				enc := json.NewEncoder(io.out)
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			printReport(io.out, &rep)
			return nil
		}
	case "percent":
		if err := needModel(2); err != nil {
			return err
		}
		p, err := strconv.ParseFloat(strings.TrimSuffix(pos[1], "%"), 64)
		if err != nil {
			return usageErr(fmt.Errorf("percent %q is not a number", pos[1]))
		}
		call = func(api *apiBackend) error {
			var r rollout.Rollout
			if err := api.do(ctx, http.MethodPut, "/api/v1/rollouts/"+url.PathEscape(pos[0])+"/percent", nil, map[string]any{"percent": p}, &r); err != nil {
				return err
			}
			printRollouts(io.out, []rollout.Rollout{r})
			return nil
		}
	case "promote", "abort":
		if err := needModel(1); err != nil {
			return err
		}
		call = func(api *apiBackend) error {
			var body any
			if sub == "abort" {
				body = map[string]any{"reason": *reason}
			}
			var r rollout.Rollout
			if err := api.do(ctx, http.MethodPost, "/api/v1/rollouts/"+url.PathEscape(pos[0])+"/"+sub, nil, body, &r); err != nil {
				return err
			}
			printRollouts(io.out, []rollout.Rollout{r})
			return nil
		}
	default:
		var ok bool
		if call, ok, err = datasetCommand(ctx, sub, pos, ds, io); !ok {
			return usageErr(fmt.Errorf("unknown subcommand %q: %s", sub, rolloutSubcommands))
		}
		if err != nil {
			return err
		}
		// A capture or a replay of a large dataset takes longer than one
		// API call usually does.
		timeoutSet := false
		fs.Visit(func(f *flag.Flag) { timeoutSet = timeoutSet || f.Name == "timeout" })
		if !timeoutSet && (sub == "capture" || sub == "replay") {
			af.cf.timeout = datasetTimeout
			probe = true
		}
	}
	api, err := af.api(io.environ)
	if err != nil {
		return err
	}
	if probe {
		// The long wait is for the work, not for an API that is not
		// there: that one is found within the usual timeout.
		if err := api.reachable(ctx, defaultTimeout); err != nil {
			return err
		}
	}
	return call(api)
}

func printRollouts(w io.Writer, list []rollout.Rollout) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MODEL\tID\tSTATE\tMODE\tSTABLE\tCANDIDATE\tPERCENT\tSTEP\tREASON")
	for _, r := range list {
		step := "-"
		if r.StepIndex >= 0 && len(r.Steps) > 0 {
			step = fmt.Sprintf("%d/%d", r.StepIndex+1, len(r.Steps))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%g%%\t%s\t%s\n", r.Model, r.ID, r.State, r.Mode, r.Stable, r.Candidate, r.Percent, step, orDash(r.Reason))
	}
	tw.Flush()
}

func printReport(w io.Writer, rep *rollout.Report) {
	r := rep.Rollout
	fmt.Fprintf(w, "rollout %s: model %s, stable %d, candidate %d, %s, %s\n", r.ID, r.Model, r.Stable, r.Candidate, r.Mode, r.State)
	if r.Reason != "" {
		fmt.Fprintf(w, "ended: %s\n", r.Reason)
	}
	if st := r.Replay; st != nil {
		fmt.Fprintf(w, "dataset %s: %d records, %d scored, %d undecodable, %d of another model\n",
			st.Dataset, st.Records, st.Scored, st.Undecodable, st.OtherModel)
	}
	fmt.Fprintf(w, "compared %d requests (%s), agreement %.2f%%", rep.Compared, rep.Kind, 100*rep.Agreement)
	if rep.Kind == "score" {
		fmt.Fprintf(w, ", correlation %.4f, threshold %g flips %d (%.2f%%)", rep.Correlation, rep.Threshold, rep.Flips, 100*rep.FlipShare)
	}
	fmt.Fprintln(w)
	if d := rep.Difference; d != nil {
		fmt.Fprintf(w, "|difference|: p50 %.3g  p90 %.3g  p99 %.3g  max %.3g  mean (candidate-stable) %.3g\n", d.P50, d.P90, d.P99, d.Max, d.Mean)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\tVERSION\tREQUESTS\tERRORS\tERROR RATE\tP50 MS\tP99 MS")
	for _, s := range []struct {
		n string
		s rollout.Side
	}{{"stable", rep.Stable}, {"candidate", rep.Candidate}} {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.2f%%\t%.2f\t%.2f\n", s.n, s.s.Version, s.s.Requests, s.s.Errors, 100*s.s.ErrorRate, s.s.P50Ms, s.s.P99Ms)
	}
	tw.Flush()
	if rep.Dropped > 0 {
		fmt.Fprintf(w, "the shadow skipped %d sampled requests while the pipeline was busy\n", rep.Dropped)
	}
	if len(rep.Top) > 0 {
		fmt.Fprintln(w, "requests that differ most:")
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "REQUEST\tKEY\tSOURCE\tSTABLE\tCANDIDATE\tDIFF")
		for _, c := range rep.Top {
			fmt.Fprintf(tw, "%s\t%s\t%s/%d@%d\t%v\t%v\t%.4g\n", orDash(c.RequestID), orDash(c.Key), c.Topic, c.Partition, c.Offset, c.Stable, c.Candidate, c.Diff)
		}
		tw.Flush()
	}
}
