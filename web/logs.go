package web

import (
	"log/slog"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/infergate/infergate/internal/logring"
)

// The log view: the appliance's recent log records (logring), filtered here by level,
// component and text. New records also go out on the events stream ("logs" events), so the
// view updates live without polling.

const (
	defaultLogLimit = 200
	maxLogLimit     = 2000
	// maxLogsPerEvent bounds one "logs" event: a debug-level burst must not make the events
	// stream of every open dashboard megabytes long; the view says records were skipped.
	maxLogsPerEvent = 200
)

// logsResponse is GET /api/v1/logs.
type logsResponse struct {
	Entries    []logring.Entry `json:"entries"` // oldest first
	Last       uint64          `json:"last"`    // newest sequence number in the ring: pass as after= next time
	Components []string        `json:"components"`
}

// handleLogs: query level (debug, info, warn, error: that level and above; default info),
// component, q (text in the message or a value), after (sequence number), limit (newest N,
// default 200, at most 2000).
func (s *Server) handleLogs(c echo.Context) error {
	level, ok := logring.ParseLevel(c.QueryParam("level"))
	if !ok {
		return badRequest("level %q: want debug, info, warn or error", c.QueryParam("level"))
	}
	f := logring.Filter{MinLevel: level, Component: c.QueryParam("component"), Contains: c.QueryParam("q"), Limit: defaultLogLimit}
	if v := c.QueryParam("after"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return badRequest("after %q: want a sequence number", v)
		}
		f.After = n
	}
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxLogLimit {
			return badRequest("limit %q: want 1..%d", v, maxLogLimit)
		}
		f.Limit = n
	}
	entries, last := s.logs.Entries(f)
	if entries == nil {
		entries = []logring.Entry{}
	}
	return c.JSON(http.StatusOK, logsResponse{Entries: entries, Last: last, Components: s.logs.Components()})
}

// logEvent is the data of a "logs" event: the records after the client's last one.
type logEvent struct {
	Entries []logring.Entry `json:"entries"`
	Skipped int             `json:"skipped,omitempty"` // records beyond maxLogsPerEvent, not sent
	Last    uint64          `json:"last"`
}

// newLogs returns the records after seq for the events stream, nil when there are none.
func (s *Server) newLogs(after uint64) (*logEvent, uint64) {
	all, last := s.logs.Entries(logring.Filter{After: after, MinLevel: slog.LevelDebug})
	if len(all) == 0 {
		return nil, last
	}
	ev := &logEvent{Entries: all, Last: last}
	if len(all) > maxLogsPerEvent {
		ev.Skipped = len(all) - maxLogsPerEvent
		ev.Entries = all[len(all)-maxLogsPerEvent:]
	}
	return ev, last
}
