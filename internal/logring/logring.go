// Package logring keeps the appliance's most recent log records in memory, for the
// dashboard's log view: an operator on the line reads what the appliance said without a
// shell on the box or access to wherever the log stream is shipped.
//
// Tee wraps the process's slog handler; every record the handler writes is also kept in the
// Ring, which drops the oldest records beyond its capacity. The ring keeps what the log
// stream gets (the same level), so it never holds what the log may not (the admin token is
// never logged).
package logring

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
)

// DefaultCapacity is how many records New keeps when asked for 0.
const DefaultCapacity = 2000

// maxValueLen bounds one attribute's text (a panic's stack trace is 16 KiB), so a few
// large records cannot take the ring's memory.
const maxValueLen = 4 << 10

// Entry is one log record.
type Entry struct {
	Seq       uint64    `json:"seq"` // increasing, never reused
	Time      time.Time `json:"time"`
	Level     string    `json:"level"` // DEBUG, INFO, WARN, ERROR
	Component string    `json:"component,omitempty"`
	Message   string    `json:"msg"`
	Attrs     []Attr    `json:"attrs,omitempty"`
}

// Attr is one key-value pair of a record, the value as text (a duration as Go's "1.5s").
type Attr struct {
	Key   string `json:"k"`
	Value string `json:"v"`
}

// Ring holds the most recent entries. Safe for concurrent use.
type Ring struct {
	mu    sync.Mutex
	buf   []Entry // circular once full
	next  int     // where the next entry goes
	full  bool
	seq   uint64
	comps map[string]struct{}
}

// New returns a ring keeping capacity entries (0: DefaultCapacity).
func New(capacity int) *Ring {
	if capacity <= 0 {
		capacity = DefaultCapacity
	}
	return &Ring{buf: make([]Entry, capacity), comps: map[string]struct{}{}}
}

func (r *Ring) add(e Entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seq++
	e.Seq = r.seq
	r.buf[r.next] = e
	r.next++
	if r.next == len(r.buf) {
		r.next, r.full = 0, true
	}
	if e.Component != "" {
		r.comps[e.Component] = struct{}{}
	}
}

// Filter selects entries. The zero Filter selects all.
type Filter struct {
	After     uint64     // only entries with Seq > After
	MinLevel  slog.Level // only entries at this level or above (zero value: INFO and above; use slog.LevelDebug for all)
	Component string     // "" any
	Contains  string     // case-insensitive substring of the message or an attribute value; "" any
	Limit     int        // newest Limit of the matches; 0 all
}

// Entries returns the matching entries, oldest first, and the sequence number of the newest
// entry in the ring (0 when empty), which a caller passes as After next time.
func (r *Ring) Entries(f Filter) (entries []Entry, last uint64) {
	r.mu.Lock()
	all := make([]Entry, 0, len(r.buf))
	if r.full {
		all = append(all, r.buf[r.next:]...)
	}
	all = append(all, r.buf[:r.next]...)
	last = r.seq
	r.mu.Unlock()

	needle := strings.ToLower(f.Contains)
	out := all[:0]
	for _, e := range all {
		if e.Seq <= f.After || levelOf(e.Level) < f.MinLevel || (f.Component != "" && e.Component != f.Component) {
			continue
		}
		if needle != "" && !e.contains(needle) {
			continue
		}
		out = append(out, e)
	}
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[len(out)-f.Limit:]
	}
	return slices.Clip(out), last
}

// Last returns the sequence number of the newest entry, 0 when there is none.
func (r *Ring) Last() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seq
}

// Components returns the components seen so far, sorted.
func (r *Ring) Components() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.comps))
	for c := range r.comps {
		out = append(out, c)
	}
	slices.Sort(out)
	return out
}

func (e *Entry) contains(lower string) bool {
	if strings.Contains(strings.ToLower(e.Message), lower) {
		return true
	}
	for _, a := range e.Attrs {
		if strings.Contains(strings.ToLower(a.Value), lower) {
			return true
		}
	}
	return false
}

// ParseLevel reads debug, info, warn (or warning) and error, in any case.
func ParseLevel(s string) (slog.Level, bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		return slog.LevelDebug, true
	case "", "info":
		return slog.LevelInfo, true
	case "warn", "warning":
		return slog.LevelWarn, true
	case "error":
		return slog.LevelError, true
	}
	return 0, false
}

func levelOf(s string) slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return slog.LevelInfo
	}
	return l
}

// Tee returns a handler that writes every record to inner and keeps it in r. It is enabled
// exactly when inner is.
func Tee(inner slog.Handler, r *Ring) slog.Handler {
	return &handler{inner: inner, ring: r}
}

type handler struct {
	inner  slog.Handler
	ring   *Ring
	attrs  []Attr // from WithAttrs, keys prefixed by the groups open then
	comp   string
	prefix string // open groups, "a.b."
}

func (h *handler) Enabled(ctx context.Context, l slog.Level) bool { return h.inner.Enabled(ctx, l) }

func (h *handler) Handle(ctx context.Context, rec slog.Record) error {
	err := h.inner.Handle(ctx, rec)
	e := Entry{Time: rec.Time, Level: rec.Level.String(), Component: h.comp, Message: rec.Message}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.Attrs = append(make([]Attr, 0, len(h.attrs)+rec.NumAttrs()), h.attrs...)
	rec.Attrs(func(a slog.Attr) bool {
		e.Attrs, e.Component = appendAttr(e.Attrs, h.prefix, a, e.Component)
		return true
	})
	h.ring.add(e)
	return err
}

func (h *handler) WithAttrs(as []slog.Attr) slog.Handler {
	n := *h
	n.inner = h.inner.WithAttrs(as)
	n.attrs = slices.Clone(h.attrs)
	for _, a := range as {
		n.attrs, n.comp = appendAttr(n.attrs, h.prefix, a, n.comp)
	}
	return &n
}

func (h *handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	n := *h
	n.inner = h.inner.WithGroup(name)
	n.prefix = h.prefix + name + "."
	return &n
}

// appendAttr flattens a into out (groups as dotted keys). A top-level "component" names
// the entry's component instead.
func appendAttr(out []Attr, prefix string, a slog.Attr, comp string) ([]Attr, string) {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p += a.Key + "."
		}
		for _, g := range v.Group() {
			out, comp = appendAttr(out, p, g, comp)
		}
		return out, comp
	}
	if a.Key == "" {
		return out, comp
	}
	s := v.String()
	if len(s) > maxValueLen {
		s = strings.ToValidUTF8(s[:maxValueLen], "") + "…"
	}
	if prefix == "" && a.Key == "component" {
		return out, s
	}
	return append(out, Attr{Key: prefix + a.Key, Value: s}), comp
}
