package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/infergate/infergate/internal/editdist"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/infergate/infergate/appliance"
	"github.com/infergate/infergate/broker"
	"github.com/infergate/infergate/inference/pipeline"
	"github.com/infergate/infergate/store"
	"github.com/infergate/infergate/web"
)

// dlqSynopsis is the dlq commands' usage; the classes come from pipeline.Classes.
var dlqSynopsis = `dlq list [--class C] [--model M] [--since AGE] [--limit N] [--json] [--data-dir DIR | --url URL] [--timeout D]
       infergate dlq show ID [--data-dir DIR | --url URL]
       infergate dlq replay (ID... | --all [--class C] [--model M] [--since AGE]) [--data-dir DIR | --url URL]
       infergate dlq delete ID... [--data-dir DIR | --url URL]
       infergate dlq purge [--class C] [--model M] [--since AGE] --yes [--data-dir DIR | --url URL]

AGE is a duration back from now: 90m, 12h, 1d, 2w, 1d12h. Classes: ` + strings.Join(pipeline.Classes[:], ", ") + `.
ATTEMPTS counts the model calls the request took part in: 0 for decode and validation errors, which are
found before any call.

With --url, or when the appliance owning the data dir is running, the commands go through its admin API
(the token is read from INFERGATE_ADMIN_TOKEN, --token, or <data dir>/admin-token). Otherwise they read
the store in the data dir directly; replay then produces to the broker itself (starting the embedded
broker of the data dir for the moment if the appliance uses one).`

// dlqRecord is how the CLI shows a dead-lettered record, whichever way it
// was read: the admin API's JSON form (web.RecordView), so `--json` output
// is the same with and without a running appliance.
type dlqRecord = web.RecordView

// fromStore is the admin API's view of a store record: text where the bytes
// are UTF-8, base64 otherwise.
func fromStore(r *store.Record) dlqRecord {
	v := dlqRecord{
		ID: r.ID, Class: r.Class, Message: r.Message, Model: r.Model,
		ValueSize: len(r.Value), Headers: make([]web.HeaderView, 0, len(r.Headers)),
		SourceTopic: r.SourceTopic, SourcePartition: r.SourcePartition, SourceOffset: r.SourceOffset,
		Attempts: r.Attempts, FailedAt: r.FailedAt.UTC(), Replays: r.Replays, LastReplayAt: r.LastReplayAt,
	}
	if r.Key != nil {
		if utf8.Valid(r.Key) {
			k := string(r.Key)
			v.Key = &k
		} else {
			v.KeyBase64 = base64.StdEncoding.EncodeToString(r.Key)
		}
	}
	if utf8.Valid(r.Value) {
		v.Value = string(r.Value)
	} else {
		v.ValueBase64 = base64.StdEncoding.EncodeToString(r.Value)
	}
	for _, h := range r.Headers {
		hv := web.HeaderView{Key: h.Key}
		if utf8.Valid(h.Value) {
			hv.Value = string(h.Value)
		} else {
			hv.ValueBase64 = base64.StdEncoding.EncodeToString(h.Value)
		}
		v.Headers = append(v.Headers, hv)
	}
	return v
}

// dlqBackend is where the dlq subcommands read and replay.
type dlqBackend interface {
	list(ctx context.Context, f dlqFilter) ([]dlqRecord, error)
	get(ctx context.Context, id string) (*dlqRecord, error)
	replay(ctx context.Context, ids []string, f *dlqFilter) (int, error)
	// delete removes the records with these ids, or (ids nil) every record matching f.
	delete(ctx context.Context, ids []string, f *dlqFilter) (int, error)
	// warnings says what data was lost (store or broker corruption), one
	// sentence each; an error if the appliance cannot be reached at all.
	warnings(ctx context.Context) ([]string, error)
	close() error
}

type dlqFilter struct {
	Class, Model string
	Since        time.Duration
	Limit        int
}

func cmdDLQ(ctx context.Context, args []string, io stdio) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprintf(io.err, "Usage: infergate %s\n", dlqSynopsis)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return nil
		}
		return usageError{error: errors.New("missing subcommand: list, show, replay, delete or purge"), printed: false}
	}
	sub, args := args[0], args[1:]
	fs := newFlagSet("dlq "+sub, dlqSynopsis, io.err)
	var cf clientFlags
	cf.register(fs)
	apiURL := fs.String("url", "", "`URL` of the admin API of a running appliance, e.g. http://127.0.0.1:8080")
	token := fs.String("token", "", "admin `TOKEN` (default INFERGATE_ADMIN_TOKEN, else <data dir>/admin-token)")
	var f dlqFilter
	fs.StringVar(&f.Class, "class", "", "only records of this error `CLASS` ("+strings.Join(pipeline.Classes[:], ", ")+")")
	fs.StringVar(&f.Model, "model", "", "only records for this `MODEL`")
	fs.Var(ageFlag{&f.Since}, "since", "only records that failed within this `AGE`, e.g. 1h, 1d, 2w")
	fs.IntVar(&f.Limit, "limit", 100, "list: print at most `N` records")
	asJSON := fs.Bool("json", false, "list: print JSON lines instead of a table")
	all := fs.Bool("all", false, "replay: every record matching --class/--model/--since")
	yes := fs.Bool("yes", false, "purge: really delete every matching record")
	// Flags may follow the IDs (`dlq show ID --url URL`, as documented).
	ids, err := parseInterleaved(fs, args)
	if err != nil {
		return helpOrUsage(err)
	}
	if err := checkClass(f.Class); err != nil {
		return usageErr(err)
	}
	filtered := f.Class != "" || f.Model != "" || f.Since > 0
	switch sub {
	case "list":
		if len(ids) > 0 {
			return usageErr(fmt.Errorf("list takes no arguments, got %q", ids))
		}
	case "show":
		if len(ids) != 1 {
			return usageErr(errors.New("show takes exactly one record ID"))
		}
	case "replay":
		if *all == (len(ids) > 0) {
			return usageErr(errors.New("replay takes record IDs or --all (with optional --class, --model, --since), not both"))
		}
	case "delete":
		if len(ids) == 0 || filtered {
			return usageErr(errors.New("delete takes record IDs; to delete by --class/--model/--since, use purge"))
		}
	case "purge":
		if len(ids) > 0 {
			return usageErr(fmt.Errorf("purge takes no IDs, got %q (to delete these, use delete)", ids))
		}
		if !*yes {
			what := "EVERY dead-lettered record"
			if filtered {
				what = "every record matching --class/--model/--since"
			}
			return usageErr(fmt.Errorf("purge deletes %s for good; add --yes to do it (dlq list with the same flags shows them)", what))
		}
	default:
		return usageErr(fmt.Errorf("unknown subcommand %q: list, show, replay, delete or purge", sub))
	}

	be, err := openDLQBackend(ctx, &cf, io.environ, *apiURL, *token)
	if err != nil {
		return err
	}
	defer be.close()

	// Lost data is said first, on stderr, whatever the subcommand: a list that silently
	// misses records is what this is against.
	ws, err := be.warnings(ctx)
	if err != nil {
		return err
	}
	for _, w := range ws {
		fmt.Fprintln(io.err, "WARNING:", w)
	}
	switch sub {
	case "list":
		recs, err := be.list(ctx, f)
		if err != nil {
			return err
		}
		if *asJSON {
			enc := json.NewEncoder(io.out)
			for _, r := range recs {
				if err := enc.Encode(r); err != nil {
					return err
				}
			}
			return nil
		}
		tw := tabwriter.NewWriter(io.out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tFAILED AT\tAGO\tCLASS\tMODEL\tSOURCE\tSIZE\tATTEMPTS\tREPLAYS\tMESSAGE")
		now := time.Now()
		for _, r := range recs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s[%d]@%d\t%s\t%d\t%d\t%s\n", r.ID, r.FailedAt.Local().Format(time.DateTime),
				formatAge(now.Sub(r.FailedAt).Truncate(time.Second)), r.Class, orDash(r.Model), r.SourceTopic, r.SourcePartition,
				r.SourceOffset, formatBytes(int64(r.ValueSize)), r.Attempts, r.Replays, oneLine(r.Message, 80))
		}
		return tw.Flush()
	case "show":
		r, err := be.get(ctx, ids[0])
		if err != nil {
			return err
		}
		b, _ := json.MarshalIndent(r, "", "  ")
		fmt.Fprintf(io.out, "%s\n", b)
		return nil
	case "delete", "purge":
		var filter *dlqFilter
		if sub == "purge" {
			ids, filter = nil, &f
		}
		n, err := be.delete(ctx, ids, filter)
		fmt.Fprintf(io.err, "deleted %d records\n", n)
		if err == nil && sub == "delete" && n < len(ids) {
			return fmt.Errorf("%d of the %d IDs named no record", len(ids)-n, len(ids))
		}
		return err
	default: // replay
		var filter *dlqFilter
		if *all {
			filter = &f
		}
		n, err := be.replay(ctx, ids, filter)
		fmt.Fprintf(io.err, "replayed %d records to %s\n", n, "the requests topic")
		return err
	}
}

// checkClass refuses a --class that no record can have, so a typo is not
// an empty list.
func checkClass(c string) error {
	if c == "" || slices.Contains(pipeline.Classes[:], c) {
		return nil
	}
	hint := ""
	best := 3
	for _, k := range pipeline.Classes {
		if d := editdist.Levenshtein(c, k); d < best {
			best, hint = d, fmt.Sprintf(" (did you mean %s?)", k)
		}
	}
	return fmt.Errorf("--class %q is not an error class%s; the classes are %s", c, hint, strings.Join(pipeline.Classes[:], ", "))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) > max {
		return string([]rune(s)[:max-1]) + "…"
	}
	return s
}

// openDLQBackend picks the admin API or the store. The store's lock tells
// whether the appliance owning the data dir runs: probing a port could find
// another appliance with another data dir.
func openDLQBackend(ctx context.Context, cf *clientFlags, environ []string, apiURL, token string) (dlqBackend, error) {
	cfg, err := cf.settings(environ)
	if err != nil {
		return nil, err
	}
	dataDir := cfg.DataDir
	token = adminToken(token, environ, dataDir) // a --url without a token still reads
	if apiURL != "" {
		return newAPIBackend(apiURL, "--url", token, cf.timeout)
	}
	paths := appliance.DataPaths(dataDir)
	if _, err := os.Stat(paths.Store); err != nil {
		return nil, usageErr(fmt.Errorf("no store at %s (is --data-dir right?): %w", paths.Store, err))
	}
	sc := store.DefaultConfig(paths.Store)
	st, err := store.Open(sc, nil)
	if errors.Is(err, store.ErrLocked) {
		u, source := runningAdminURL(dataDir, cfg)
		if u == "" {
			return nil, fmt.Errorf("the appliance using %s is running with its admin API off (http.listen is empty): stop it or pass --url", dataDir)
		}
		return newAPIBackend(u, source, token, cf.timeout)
	}
	if err != nil {
		return nil, err
	}
	return &storeBackend{st: st, cfg: cfg, paths: paths, brokers: cf.brokers, timeout: cf.timeout}, nil
}

// dialable turns a listen address into one to connect to.
func dialable(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

func envMap(environ []string) map[string]string {
	m := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

// storeBackend reads the store of a stopped appliance.
type storeBackend struct {
	st      *store.Store
	cfg     *appliance.Config
	paths   appliance.Paths
	brokers string
	timeout time.Duration
}

func (b *storeBackend) close() error { return b.st.Close() }

func (b *storeBackend) warnings(ctx context.Context) ([]string, error) {
	return appliance.StoreWarnings(b.st.CheckedHealth(ctx)), nil
}

func (b *storeBackend) filter(f dlqFilter) store.Filter {
	sf := store.Filter{Class: f.Class, Model: f.Model, Limit: f.Limit}
	if f.Since > 0 {
		sf.Since = time.Now().Add(-f.Since)
	}
	return sf
}

func (b *storeBackend) list(_ context.Context, f dlqFilter) ([]dlqRecord, error) {
	recs, _, err := b.st.List(b.filter(f))
	if err != nil {
		return nil, err
	}
	out := make([]dlqRecord, len(recs))
	for i, r := range recs {
		out[i] = fromStore(r)
	}
	return out, nil
}

func (b *storeBackend) get(_ context.Context, id string) (*dlqRecord, error) {
	r, err := b.st.Get(id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("no dead-lettered record %q in %s", id, b.paths.Store)
	}
	if err != nil {
		return nil, err
	}
	out := fromStore(r)
	return &out, nil
}

// replay produces the selected records to the requests topic, as the admin
// API does, and marks them replayed. The appliance is not running, so the records wait in
// the requests topic until it starts again.
func (b *storeBackend) replay(ctx context.Context, ids []string, f *dlqFilter) (int, error) {
	var recs []*store.Record
	if f != nil {
		sf := b.filter(*f)
		sf.Limit = 1000
		for {
			page, next, err := b.st.List(sf)
			if err != nil {
				return 0, err
			}
			recs = append(recs, page...)
			if next == "" {
				break
			}
			sf.Cursor = next
		}
	} else {
		for _, id := range ids {
			r, err := b.st.Get(id)
			if errors.Is(err, store.ErrNotFound) {
				return 0, fmt.Errorf("no dead-lettered record %q in %s", id, b.paths.Store)
			}
			if err != nil {
				return 0, err
			}
			recs = append(recs, r)
		}
	}
	if len(recs) == 0 {
		return 0, nil
	}

	cc := b.cfg.ClientConfig()
	switch {
	case b.brokers != "":
		cc.Brokers = strings.Split(b.brokers, ",")
	case b.cfg.Broker.Mode == appliance.BrokerEmbedded && broker.Durability(b.cfg.Broker.Durability) == broker.DurabilityMemory:
		// A broker started here would keep the replayed requests in this
		// process's memory, and they would be gone before the appliance
		// could read them, yet marked replayed.
		return 0, errors.New("the appliance is not running and its embedded broker keeps its topics in memory (broker.durability: memory, " +
			"the default on Windows): start infergate, then replay again; the records stay in the DLQ")
	case b.cfg.Broker.Mode == appliance.BrokerEmbedded:
		// The appliance (and so its broker) is stopped: open the data
		// dir's broker on a free local port just for this.
		e, err := broker.NewEmbedded(broker.EmbeddedConfig{
			DataDir: b.paths.Broker, Listen: "127.0.0.1:0",
			Durability: broker.Durability(b.cfg.Broker.Durability),
		}, slog.New(slog.DiscardHandler))
		if err != nil {
			return 0, fmt.Errorf("opening the embedded broker of %s: %w", b.paths.Root, err)
		}
		defer e.Close()
		cc.Brokers = []string{e.Addr()}
	}
	t := &target{cc: cc, cfg: b.cfg, source: "the broker settings", timeout: b.timeout}
	if b.brokers != "" {
		t.source = "--brokers"
	}
	cl, err := t.connect(ctx, b.cfg.Pipeline.RequestsTopic, kgo.RecordDeliveryTimeout(b.timeout), kgo.ProduceRequestTimeout(b.timeout))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	if err := pipeline.Replay(ctx, cl, b.cfg.Pipeline.RequestsTopic, recs); err != nil {
		return 0, fmt.Errorf("producing replayed records to %s at %s: %w", b.cfg.Pipeline.RequestsTopic, t.addrs(), err)
	}
	replayed := make([]string, len(recs))
	for i, r := range recs {
		replayed[i] = r.ID
	}
	if err := b.st.MarkReplayed(replayed...); err != nil {
		return len(recs), fmt.Errorf("records were replayed but not marked so: %w", err)
	}
	return len(recs), nil
}

func (b *storeBackend) delete(_ context.Context, ids []string, f *dlqFilter) (int, error) {
	if f != nil {
		return b.st.DeleteMatching(b.filter(*f))
	}
	return b.st.Delete(ids...)
}

// apiBackend talks to a running appliance's admin API (paths in docs/dashboard.md, "Admin API").
type apiBackend struct {
	base    *url.URL
	source  string // where the URL came from, for errors
	token   string
	timeout time.Duration
	http    *http.Client
}

func newAPIBackend(raw, source, token string, timeout time.Duration) (*apiBackend, error) {
	u, err := url.Parse(strings.TrimRight(raw, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usageErr(fmt.Errorf("--url %q is not an http(s) URL", raw))
	}
	return &apiBackend{base: u, source: source, token: token, timeout: timeout, http: &http.Client{Timeout: timeout}}, nil
}

func (b *apiBackend) close() error { return nil }

func (b *apiBackend) warnings(ctx context.Context) ([]string, error) {
	var st web.Status
	if err := b.do(ctx, http.MethodGet, "/api/v1/status", nil, nil, &st); err != nil {
		var ue unreachableError
		if errors.As(err, &ue) {
			return nil, err
		}
		return []string{"cannot tell whether data was lost: " + err.Error()}, nil
	}
	return st.Warnings, nil
}

// reachable checks, within timeout, that the admin API answers at all, for
// a command whose own calls may take much longer (a dataset capture).
func (b *apiBackend) reachable(ctx context.Context, timeout time.Duration) error {
	quick := *b
	quick.timeout, quick.http = timeout, &http.Client{Timeout: timeout}
	var st web.Status
	err := quick.do(ctx, http.MethodGet, "/api/v1/status", nil, nil, &st)
	var ue unreachableError
	if errors.As(err, &ue) {
		return err
	}
	return nil // it answered; the command's own call reports any refusal
}

// unreachableError is an admin API call that got no HTTP answer.
type unreachableError struct{ error }

func (u unreachableError) Unwrap() error { return u.error }

func (b *apiBackend) do(ctx context.Context, method, path string, query url.Values, body, out any) error {
	u := *b.base
	u.Path += path
	u.RawQuery = query.Encode()
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if b.token != "" {
		req.Header.Set("Authorization", "Bearer "+b.token)
	}
	resp, err := b.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return unreachableError{fmt.Errorf("gave up after %s (--timeout) waiting for the admin API at %s (address from %s) to answer %s %s", b.timeout, b.base, b.source, method, path)}
		}
		return unreachableError{fmt.Errorf("no admin API at %s (address from %s): %s %s: %w", b.base, b.source, method, path, errors.Unwrap(err))}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("admin API at %s: %w", b.base, err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error   string `json:"error"`
			Message string `json:"message"`
		}
		msg := strings.TrimSpace(string(data))
		if json.Unmarshal(data, &e) == nil && (e.Error != "" || e.Message != "") {
			msg = strings.TrimSpace(e.Error + " " + e.Message)
		}
		// The status is printed below; a message that starts with its text
		// ("Conflict" and "conflict: rollout … is running") would say it twice.
		if t := http.StatusText(resp.StatusCode); len(msg) > len(t) && strings.EqualFold(msg[:len(t)], t) && msg[len(t)] == ':' {
			msg = strings.TrimSpace(msg[len(t)+1:])
		}
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			msg += " (pass the admin token with --token or INFERGATE_ADMIN_TOKEN, or --data-dir of the appliance)"
		}
		return fmt.Errorf("admin API %s %s: %s: %s", method, path, resp.Status, msg)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("admin API %s %s: unexpected response: %w", method, path, err)
	}
	return nil
}

func (f dlqFilter) query() url.Values {
	q := url.Values{}
	if f.Class != "" {
		q.Set("class", f.Class)
	}
	if f.Model != "" {
		q.Set("model", f.Model)
	}
	if f.Since > 0 {
		q.Set("since", time.Now().Add(-f.Since).UTC().Format(time.RFC3339Nano))
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	return q
}

func (b *apiBackend) list(ctx context.Context, f dlqFilter) ([]dlqRecord, error) {
	var resp struct {
		Records []web.RecordView `json:"records"`
	}
	if err := b.do(ctx, http.MethodGet, "/api/v1/dlq", f.query(), nil, &resp); err != nil {
		return nil, err
	}
	return resp.Records, nil
}

func (b *apiBackend) get(ctx context.Context, id string) (*dlqRecord, error) {
	var v web.RecordView
	if err := b.do(ctx, http.MethodGet, "/api/v1/dlq/"+url.PathEscape(id), nil, nil, &v); err != nil {
		return nil, err
	}
	return &v, nil
}

func (b *apiBackend) replay(ctx context.Context, ids []string, f *dlqFilter) (int, error) {
	var body web.BulkRequest
	if f != nil {
		body.Filter = &web.FilterJSON{Class: f.Class, Model: f.Model}
		if f.Since > 0 {
			body.Filter.Since = f.Since.String() // "that long ago"
		}
	} else {
		body.IDs = ids
	}
	var resp struct {
		Replayed int `json:"replayed"`
	}
	if err := b.do(ctx, http.MethodPost, "/api/v1/dlq/replay", nil, body, &resp); err != nil {
		return 0, err
	}
	return resp.Replayed, nil
}

func (b *apiBackend) delete(ctx context.Context, ids []string, f *dlqFilter) (int, error) {
	var body web.BulkRequest
	if f != nil {
		body.Filter = &web.FilterJSON{Class: f.Class, Model: f.Model}
		if f.Since > 0 {
			body.Filter.Since = f.Since.String()
		}
	} else {
		body.IDs = ids
	}
	var resp struct {
		Deleted int `json:"deleted"`
	}
	if err := b.do(ctx, http.MethodPost, "/api/v1/dlq/delete", nil, body, &resp); err != nil {
		return 0, err
	}
	return resp.Deleted, nil
}
