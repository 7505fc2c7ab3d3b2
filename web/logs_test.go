package web

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/infergate/infergate/internal/logring"
	"github.com/infergate/infergate/web/webtest"
)

// logEnv is a server whose log view reads ring, and a logger writing into it at debug
// level, as the appliance's would.
func logEnv(t *testing.T, mutate ...func(*Config)) (*testEnv, *slog.Logger) {
	t.Helper()
	ring := logring.New(100)
	env := newEnv(t, append([]func(*Config){func(c *Config) { c.Logs = ring }}, mutate...)...)
	return env, slog.New(logring.Tee(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelDebug}), ring))
}

func messages(es []logring.Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Message)
	}
	return out
}

// TestLogsAPI reads the appliance's recent logs as a viewer, filtered by level, component
// and text, and sees a new record arrive on the events stream.
func TestLogsAPI(t *testing.T) {
	env, log := logEnv(t)
	_, viewer := env.createUser("vera", RoleViewer)
	log.With("component", "pipeline").Debug("batch formed", "rows", 8)
	log.With("component", "pipeline").Warn("model call failed; retrying", "err", "connection refused", "backoff", 200*time.Millisecond)
	log.With("component", "broker").Info("partition assigned", "partition", 3)
	log.With("component", "store").Error("writing the DLQ record", "err", "disk full")

	get := func(query string) logsResponse {
		t.Helper()
		r := env.call("GET", "/api/v1/logs"+query, viewer, nil)
		expectCode(t, r, http.StatusOK)
		var lr logsResponse
		r.json(t, &lr)
		return lr
	}
	for _, tc := range []struct{ query, want string }{
		{"", "[model call failed; retrying partition assigned writing the DLQ record]"},
		{"?level=debug&component=pipeline", "[batch formed model call failed; retrying]"},
		{"?level=warn", "[model call failed; retrying writing the DLQ record]"},
		{"?level=error", "[writing the DLQ record]"},
		{"?q=REFUSED", "[model call failed; retrying]"},
		{"?component=broker", "[partition assigned]"},
		{"?level=debug&limit=1", "[writing the DLQ record]"},
	} {
		lr := get(tc.query)
		if got := fmt.Sprint(messages(lr.Entries)); got != tc.want {
			t.Errorf("%q: %s, want %s", tc.query, got, tc.want)
		}
	}
	all := get("?level=debug")
	if fmt.Sprint(all.Components) != "[broker pipeline store]" || all.Last != 4 {
		t.Errorf("components %q, last %d", all.Components, all.Last)
	}
	if a := all.Entries[1].Attrs; fmt.Sprint(a) != "[{err connection refused} {backoff 200ms}]" {
		t.Errorf("attributes %v", a)
	}
	if got := get("?level=debug&after=3"); fmt.Sprint(messages(got.Entries)) != "[writing the DLQ record]" {
		t.Errorf("after=3: %v", messages(got.Entries))
	}
	for _, q := range []string{"?level=verbose", "?after=x", "?limit=0", "?limit=5000"} {
		expectCode(t, env.call("GET", "/api/v1/logs"+q, viewer, nil), http.StatusBadRequest)
	}
	expectCode(t, env.call("GET", "/api/v1/logs", "", nil), http.StatusUnauthorized)

	// A record logged while a dashboard is open reaches it on the events stream.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := env.readEvents(ctx, "/api/v1/events")
	deadline := time.After(30 * time.Second)
	for i := 0; ; i++ {
		// Logged until seen: the stream starts from the records logged after it connected.
		log.With("component", "pipeline").Info("circuit opened", "n", i)
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("events stream ended")
			}
			if ev.name != "logs" {
				continue
			}
			var le logEvent
			if err := json.Unmarshal([]byte(ev.data), &le); err != nil {
				t.Fatal(err)
			}
			if len(le.Entries) == 0 || le.Entries[0].Message != "circuit opened" || le.Entries[0].Component != "pipeline" || le.Last < 5 {
				t.Fatalf("logs event %s", ev.data)
			}
			if strings.Contains(ev.data, "partition assigned") {
				t.Fatalf("the stream resent a record from before it connected: %s", ev.data)
			}
			return
		case <-deadline:
			t.Fatal("no logs event")
		}
	}
}

// TestBrowserLogs reads the log view in headless Chromium: the records are listed, the level
// and component filters narrow them, and a record logged while the view is open appears
// without a reload.
func TestBrowserLogs(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test")
	}
	env, log := logEnv(t, func(c *Config) { c.EventsInterval = 100 * time.Millisecond })
	log.With("component", "pipeline").Warn("model call failed; retrying", "err", "connection refused")
	log.With("component", "broker").Info("partition assigned", "partition", 3)
	ctx := webtest.NewBrowser(t)
	webtest.Login(t, ctx, env.base, testToken)
	webtest.Go(t, ctx, env.base, "logs")
	webtest.WaitJS(t, ctx, "two records listed", `document.querySelectorAll('#log-table tbody tr').length === 2`)
	if text := webtest.Text(t, ctx, "#log-table tbody"); !strings.Contains(text, "err=connection refused") || !strings.Contains(text, "partition=3") {
		t.Fatalf("log view %q", text)
	}

	webtest.SetSelect(t, ctx, "#log-level", "warn")
	webtest.WaitJS(t, ctx, "warnings only", `[...document.querySelectorAll('#log-table tbody tr')].map(r => r.dataset.level).join() === 'WARN'`)
	webtest.SetSelect(t, ctx, "#log-level", "info")
	webtest.SetSelect(t, ctx, "#log-component", "broker")
	webtest.WaitJS(t, ctx, "the broker's records only", `[...document.querySelectorAll('#log-table tbody tr')].map(r => r.dataset.component).join() === 'broker'`)

	// Live: a new broker record shows up; a pipeline one is filtered out.
	log.With("component", "pipeline").Info("not for this filter")
	log.With("component", "broker").Info("partition revoked", "partition", 3)
	webtest.WaitJS(t, ctx, "the new record, newest first", `(document.querySelector('#log-table tbody tr') || {}).textContent.includes('partition revoked')`)
	if text := webtest.Text(t, ctx, "#log-table tbody"); strings.Contains(text, "not for this filter") {
		t.Fatalf("the component filter let a pipeline record through: %q", text)
	}
}
