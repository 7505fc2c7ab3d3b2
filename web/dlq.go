package web

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/infergate/infergate/store"
)

const (
	// listPreview bounds the value shown per record in a list; GET dlq/{id} has all of it.
	listPreview = 256
	// replayChunk is how many records go to the Backend per Replay call: large enough to
	// batch produce requests, small enough that a failure leaves little in doubt.
	replayChunk = 500
)

func newMultipartReader(r interface{ Read([]byte) (int, error) }, boundary string) *multipart.Reader {
	return multipart.NewReader(r, boundary)
}

func base64Std(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// RecordView is the JSON form of a DLQ record. Key, value and header values are text when
// they are UTF-8 and base64 (the *_base64 fields) otherwise.
type RecordView struct {
	ID              string       `json:"id"`
	Class           string       `json:"class"`
	Message         string       `json:"message"`
	Model           string       `json:"model,omitempty"`
	Key             *string      `json:"key,omitempty"`
	KeyBase64       string       `json:"key_base64,omitempty"`
	Value           string       `json:"value"`
	ValueBase64     string       `json:"value_base64,omitempty"`
	ValueSize       int          `json:"value_size"`
	ValueTruncated  bool         `json:"value_truncated,omitempty"`
	Headers         []HeaderView `json:"headers"`
	SourceTopic     string       `json:"source_topic"`
	SourcePartition int32        `json:"source_partition"`
	SourceOffset    int64        `json:"source_offset"`
	Attempts        int          `json:"attempts"`
	FailedAt        time.Time    `json:"failed_at"`
	Replays         int          `json:"replays"`
	LastReplayAt    time.Time    `json:"last_replay_at,omitzero"`
}

// HeaderView is one record header.
type HeaderView struct {
	Key         string `json:"key"`
	Value       string `json:"value"`
	ValueBase64 string `json:"value_base64,omitempty"`
}

func viewRecord(r *store.Record, limit int) RecordView {
	v := RecordView{
		ID: r.ID, Class: r.Class, Message: r.Message, Model: r.Model,
		ValueSize: len(r.Value), Headers: make([]HeaderView, 0, len(r.Headers)),
		SourceTopic: r.SourceTopic, SourcePartition: r.SourcePartition, SourceOffset: r.SourceOffset,
		Attempts: r.Attempts, FailedAt: r.FailedAt.UTC(), Replays: r.Replays, LastReplayAt: r.LastReplayAt,
	}
	if r.Key != nil {
		text, b64, _ := bytesView(r.Key, 0)
		if b64 != "" {
			v.KeyBase64 = b64
		} else {
			v.Key = &text
		}
	}
	v.Value, v.ValueBase64, v.ValueTruncated = bytesView(r.Value, limit)
	for _, h := range r.Headers {
		text, b64, _ := bytesView(h.Value, 0)
		v.Headers = append(v.Headers, HeaderView{Key: h.Key, Value: text, ValueBase64: b64})
	}
	return v
}

// FilterJSON is the filter of a bulk replay or delete; times as in the list's query parameters.
type FilterJSON struct {
	Class string `json:"class,omitempty"`
	Model string `json:"model,omitempty"`
	Since string `json:"since,omitempty"`
	Until string `json:"until,omitempty"`
}

func (f FilterJSON) toStore(now time.Time) (store.Filter, error) {
	var out store.Filter
	out.Class, out.Model = f.Class, f.Model
	var err error
	if out.Since, err = parseTime(f.Since, "since", now); err != nil {
		return out, err
	}
	if out.Until, err = parseTime(f.Until, "until", now); err != nil {
		return out, err
	}
	return out, nil
}

// parseTime accepts RFC 3339, Unix seconds, or a duration meaning "that long ago" (15m, 2h).
func parseTime(s, what string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n >= 0 {
		return time.Unix(n, 0), nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, badRequest("%s %q: want RFC 3339 (2025-01-02T15:04:05Z), Unix seconds, or a duration ago (15m)", what, s)
}

// filterFromQuery reads class, model, since, until, limit and cursor.
func (s *Server) filterFromQuery(q url.Values) (store.Filter, error) {
	f, err := FilterJSON{Class: q.Get("class"), Model: q.Get("model"), Since: q.Get("since"), Until: q.Get("until")}.toStore(s.now())
	if err != nil {
		return f, err
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return f, badRequest("limit %q: want 1..1000", v)
		}
		f.Limit = n
	}
	f.Cursor = q.Get("cursor")
	return f, nil
}

func (s *Server) handleDLQList(c echo.Context) error {
	f, err := s.filterFromQuery(c.QueryParams())
	if err != nil {
		return err
	}
	recs, next, err := s.store.List(f)
	if err != nil {
		return err
	}
	total, err := s.countMatching(f)
	if err != nil {
		return err
	}
	views := make([]RecordView, 0, len(recs))
	for _, r := range recs {
		views = append(views, viewRecord(r, listPreview))
	}
	return c.JSON(http.StatusOK, map[string]any{"records": views, "next_cursor": next, "total": total})
}

// countMatching answers the common cases (everything, one class) from the store's in-memory
// counts rather than walking the index.
func (s *Server) countMatching(f store.Filter) (int, error) {
	if f.Model == "" && f.Since.IsZero() && f.Until.IsZero() && len(f.IDs) == 0 {
		st := s.store.Stats()
		if f.Class == "" {
			return int(st.Records), nil
		}
		return int(st.ByClass[f.Class]), nil
	}
	return s.store.Count(f)
}

func (s *Server) handleDLQShow(c echo.Context) error {
	r, err := s.store.Get(c.Param("id"))
	if err != nil {
		return s.notFound(err, c.Param("id"))
	}
	return c.JSON(http.StatusOK, viewRecord(r, 0))
}

func (s *Server) notFound(err error, id string) error {
	if errors.Is(err, store.ErrNotFound) {
		return &APIError{Code: http.StatusNotFound, Message: fmt.Sprintf("no DLQ record with id %q", id), Err: err}
	}
	return err
}

func (s *Server) handleDLQDelete(c echo.Context) error {
	id := c.Param("id")
	n, err := s.store.Delete(id)
	if err != nil {
		return err
	}
	if n == 0 {
		return apiErr(http.StatusNotFound, "no DLQ record with id %q", id)
	}
	s.audit(c, "dlq.delete", id)
	return c.NoContent(http.StatusNoContent)
}

// BulkRequest selects DLQ records for replay or delete: either IDs or a filter ({} is every
// record). Naming neither is an error, so an empty body never means "all".
type BulkRequest struct {
	IDs    []string    `json:"ids,omitempty"`
	Filter *FilterJSON `json:"filter,omitempty"`
	// Delete removes records once they are replayed (replay only).
	Delete bool `json:"delete,omitempty"`
}

func (b *BulkRequest) check() error {
	switch {
	case b.IDs != nil && b.Filter != nil:
		return badRequest("give either \"ids\" or \"filter\", not both")
	case b.IDs == nil && b.Filter == nil:
		return badRequest("give \"ids\": [...] or \"filter\": {...} ({} selects every record)")
	case b.IDs != nil && len(b.IDs) == 0:
		return badRequest("\"ids\" is empty")
	}
	return nil
}

func (s *Server) handleDLQBulkDelete(c echo.Context) error {
	var req BulkRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if err := req.check(); err != nil {
		return err
	}
	if req.Delete {
		return badRequest("\"delete\" applies to replay only")
	}
	var n int
	var err error
	if req.IDs != nil {
		n, err = s.store.Delete(req.IDs...)
	} else {
		var f store.Filter
		if f, err = req.Filter.toStore(s.now()); err != nil {
			return err
		}
		n, err = s.store.DeleteMatching(f)
	}
	if n > 0 {
		s.audit(c, "dlq.delete", describeBulk(req, n))
	}
	if err != nil {
		return &APIError{Code: statusOf(err), Message: fmt.Sprintf("deleted %d records, then: %v", n, err), Err: err}
	}
	return c.JSON(http.StatusOK, map[string]int{"deleted": n})
}

func describeBulk(req BulkRequest, n int) string {
	if req.IDs != nil {
		if len(req.IDs) <= 5 {
			return fmt.Sprintf("%d records: %s", n, strings.Join(req.IDs, ","))
		}
		return fmt.Sprintf("%d records by id", n)
	}
	f := req.Filter
	return fmt.Sprintf("%d records matching class=%q model=%q since=%q until=%q", n, f.Class, f.Model, f.Since, f.Until)
}

// handleDLQReplay replays records by id (all must exist, or nothing is replayed) or every
// record matching a filter, in chunks: produce through the Backend, then mark replayed (or
// delete). A replayed record that fails again updates its own record (store.PutFromSource,
// same ID, below the cursor), so the same replay does not pick it up again.
func (s *Server) handleDLQReplay(c echo.Context) error {
	var req BulkRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if err := req.check(); err != nil {
		return err
	}
	ctx := c.Request().Context()
	done := 0
	var err error
	if req.IDs != nil {
		recs := make([]*store.Record, 0, len(req.IDs))
		for _, id := range req.IDs {
			r, gerr := s.store.Get(id)
			if gerr != nil {
				return s.notFound(gerr, id)
			}
			recs = append(recs, r)
		}
		for i := 0; i < len(recs) && err == nil; i += replayChunk {
			chunk := recs[i:min(i+replayChunk, len(recs))]
			err = s.replayChunk(ctx, chunk, req.Delete)
			if err == nil {
				done += len(chunk)
			}
		}
	} else {
		var f store.Filter
		if f, err = req.Filter.toStore(s.now()); err != nil {
			return err
		}
		if f.Until.IsZero() {
			f.Until = s.now()
		}
		f.Limit = replayChunk
		for {
			recs, next, lerr := s.store.List(f)
			if lerr != nil {
				err = lerr
				break
			}
			if len(recs) > 0 {
				if err = s.replayChunk(ctx, recs, req.Delete); err != nil {
					break
				}
				done += len(recs)
			}
			if next == "" {
				break
			}
			f.Cursor = next
		}
	}
	if done > 0 {
		s.audit(c, "dlq.replay", describeBulk(req, done))
	}
	if err != nil {
		return &APIError{Code: statusOf(err), Message: fmt.Sprintf("replayed %d records, then: %s", done, errorMessage(err)), Err: err}
	}
	return c.JSON(http.StatusOK, map[string]int{"replayed": done})
}

func (s *Server) replayChunk(ctx context.Context, recs []*store.Record, del bool) error {
	if err := s.backend.Replay(ctx, recs); err != nil {
		return err
	}
	ids := make([]string, len(recs))
	for i, r := range recs {
		ids[i] = r.ID
	}
	if del {
		_, err := s.store.Delete(ids...)
		return err
	}
	// A record deleted meanwhile (retention, another operator) is not a replay failure.
	if err := s.store.MarkReplayed(ids...); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return nil
}

// ReplayOneRequest is the optional body of POST dlq/{id}/replay: replace the value (the
// operator fixed the request), wait for the result, delete the record afterwards.
type ReplayOneRequest struct {
	Value       *string `json:"value,omitempty"`
	ValueBase64 *string `json:"value_base64,omitempty"`
	Wait        bool    `json:"wait,omitempty"`
	Delete      bool    `json:"delete,omitempty"`
}

func (s *Server) handleDLQReplayOne(c echo.Context) error {
	id := c.Param("id")
	var req ReplayOneRequest
	if c.Request().ContentLength != 0 {
		if err := decodeJSON(c, &req); err != nil {
			return err
		}
	}
	rec, err := s.store.Get(id)
	if err != nil {
		return s.notFound(err, id)
	}
	orig := *rec
	switch {
	case req.Value != nil && req.ValueBase64 != nil:
		return badRequest("give \"value\" or \"value_base64\", not both")
	case req.Value != nil:
		rec.Value = []byte(*req.Value)
	case req.ValueBase64 != nil:
		if rec.Value, err = base64.StdEncoding.DecodeString(*req.ValueBase64); err != nil {
			return badRequest("value_base64: %v", err)
		}
	}
	edited := string(orig.Value) != string(rec.Value)
	ctx := c.Request().Context()
	out := map[string]any{"replayed": 1, "edited": edited}
	if req.Wait {
		wctx, cancel := context.WithTimeout(ctx, s.cfg.TestTimeout)
		defer cancel()
		start := time.Now()
		res, err := s.backend.SendTestRequest(wctx, rec.Key, rec.Value, rec.Headers)
		// A request dead-lettered again was still replayed; anything else may not have left.
		if err != nil && !errors.Is(err, ErrInvalid) {
			return err
		}
		if merr := s.finishReplay(id, req.Delete); merr != nil {
			return merr
		}
		s.audit(c, "dlq.replay", fmt.Sprintf("%s (wait, edited=%t)", id, edited))
		if err != nil {
			return err
		}
		for k, v := range resultView(res, time.Since(start)) {
			out[k] = v
		}
		return c.JSON(http.StatusOK, out)
	}
	if err := s.backend.Replay(ctx, []*store.Record{rec}); err != nil {
		return err
	}
	if err := s.finishReplay(id, req.Delete); err != nil {
		return err
	}
	s.audit(c, "dlq.replay", fmt.Sprintf("%s (edited=%t)", id, edited))
	return c.JSON(http.StatusOK, out)
}

func (s *Server) finishReplay(id string, del bool) error {
	if del {
		_, err := s.store.Delete(id)
		return err
	}
	if err := s.store.MarkReplayed(id); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return nil
}
