package logring

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestTeeKeepsWhatTheLogWrites(t *testing.T) {
	var out bytes.Buffer
	r := New(0)
	log := slog.New(Tee(slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: slog.LevelInfo}), r))

	log.Debug("below the level")
	web := log.With("component", "web")
	web.Info("listening", "url", "http://127.0.0.1:8080")
	web.WithGroup("req").Warn("slow", "took", 1500*time.Millisecond, slog.Group("peer", "addr", "10.0.0.7"))
	log.With("component", "pipeline").Error("predict failed", "err", errors.New("connection refused"))

	if strings.Contains(out.String(), "below the level") {
		t.Fatalf("the inner handler wrote a debug record: %s", out.String())
	}
	got, last := r.Entries(Filter{MinLevel: slog.LevelDebug})
	if len(got) != 3 || last != 3 {
		t.Fatalf("%d entries, last %d: %+v", len(got), last, got)
	}
	if e := got[0]; e.Component != "web" || e.Message != "listening" || e.Level != "INFO" || len(e.Attrs) != 1 || e.Attrs[0] != (Attr{"url", "http://127.0.0.1:8080"}) {
		t.Errorf("first entry %+v", e)
	}
	if e := got[1]; e.Level != "WARN" || fmt.Sprint(e.Attrs) != "[{req.took 1.5s} {req.peer.addr 10.0.0.7}]" {
		t.Errorf("grouped entry %+v", e)
	}
	if e := got[2]; e.Component != "pipeline" || fmt.Sprint(e.Attrs) != "[{err connection refused}]" {
		t.Errorf("error entry %+v", e)
	}
	if n := strings.Count(out.String(), "\n"); n != 3 {
		t.Errorf("the inner handler wrote %d lines, want 3", n)
	}

	for _, tc := range []struct {
		f    Filter
		want []string
	}{
		{Filter{MinLevel: slog.LevelWarn}, []string{"slow", "predict failed"}},
		{Filter{Component: "web"}, []string{"listening", "slow"}},
		{Filter{Contains: "REFUSED"}, []string{"predict failed"}},
		{Filter{Contains: "10.0.0"}, []string{"slow"}},
		{Filter{After: 2}, []string{"predict failed"}},
		{Filter{Limit: 2}, []string{"slow", "predict failed"}},
	} {
		es, _ := r.Entries(tc.f)
		var msgs []string
		for _, e := range es {
			msgs = append(msgs, e.Message)
		}
		if fmt.Sprint(msgs) != fmt.Sprint(tc.want) {
			t.Errorf("%+v: %q, want %q", tc.f, msgs, tc.want)
		}
	}
	if c := r.Components(); fmt.Sprint(c) != "[pipeline web]" {
		t.Errorf("components %q", c)
	}
}

func TestRingDropsTheOldest(t *testing.T) {
	r := New(3)
	log := slog.New(Tee(slog.DiscardHandler, r))
	// DiscardHandler is never enabled: nothing reaches the ring either.
	log.Error("dropped")
	if es, last := r.Entries(Filter{}); len(es) != 0 || last != 0 {
		t.Fatalf("a disabled handler's record was kept: %+v", es)
	}
	log = slog.New(Tee(slog.NewTextHandler(&bytes.Buffer{}, nil), r))
	for i := range 5 {
		log.Info(fmt.Sprint("m", i), "big", strings.Repeat("é", maxValueLen))
	}
	es, last := r.Entries(Filter{})
	if last != 5 || len(es) != 3 || es[0].Message != "m2" || es[2].Message != "m4" || es[0].Seq != 3 {
		t.Fatalf("last %d, entries %+v", last, es)
	}
	if v := es[0].Attrs[0].Value; len(v) > maxValueLen+len("…") || !strings.HasSuffix(v, "…") || !strings.HasPrefix(v, "éé") {
		t.Errorf("a long value kept as %d bytes", len(v))
	}
}
