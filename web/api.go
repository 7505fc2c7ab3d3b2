package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/infergate/infergate/internal/diskfree"
	"github.com/infergate/infergate/store"
)

// maxJSONBody bounds JSON request bodies (id lists included: 1 MiB is ~35,000 ids).
const maxJSONBody = 1 << 20

var (
	// Model names become directory names in the model repository, so no slashes or dots
	// at the start; TF Serving itself is more lenient, but an operator typo should not
	// create "../x".
	modelNameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
	labelRE     = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$`)
)

// decodeJSON reads a JSON body into v, rejecting unknown fields (a misspelled "ids" must not
// turn into "replay everything") and trailing data.
func decodeJSON(c echo.Context, v any) error {
	r := c.Request()
	body := http.MaxBytesReader(c.Response(), r.Body, maxJSONBody)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &APIError{Code: http.StatusRequestEntityTooLarge, Message: fmt.Sprintf("JSON body larger than %d bytes", maxJSONBody), Err: err}
		}
		if errors.Is(err, io.EOF) {
			return badRequest("empty body: a JSON object is required")
		}
		return badRequest("invalid JSON body: %v", err)
	}
	if dec.More() {
		return badRequest("invalid JSON body: trailing data after the object")
	}
	return nil
}

func (s *Server) handleStatus(c echo.Context) error {
	st, err := s.backend.Status(c.Request().Context())
	if err != nil {
		return err
	}
	if st == nil {
		st = &Status{}
	}
	out := *st
	if out.Version == "" {
		out.Version = s.cfg.Version
	}
	out.GoVersion = runtime.Version()
	if out.StartedAt.IsZero() {
		out.StartedAt = s.started.UTC()
	}
	out.Store = s.storeComponent()
	return c.JSON(http.StatusOK, out)
}

func (s *Server) storeComponent() Component {
	if _, err := s.store.GetSetting("web.readyz"); err != nil && !errors.Is(err, store.ErrNotFound) {
		return Component{Mode: "badger", State: StateDown, Detail: err.Error()}
	}
	st := s.store.Stats()
	c := Component{Mode: "badger", State: StateOK,
		Detail: fmt.Sprintf("%d DLQ records, %s on disk", st.Records, humanBytes(st.LSMBytes+st.VLogBytes))}
	h := s.store.Health()
	if len(h.Corrupt) > 0 {
		c.State = StateDegraded
		c.Detail = fmt.Sprintf("DATA CORRUPTION: %d damaged tables, %d records lost; %s", len(h.Corrupt), h.LostRecords, c.Detail)
	}
	if h.DiskFull {
		c.State = StateDegraded
		c.Detail = fmt.Sprintf("DISK FULL: %s free, below %s: writes refused; %s", humanBytes(h.FreeBytes), humanBytes(h.MinFreeBytes), c.Detail)
	}
	return c
}

func (s *Server) handlePause(c echo.Context) error {
	if err := s.backend.PausePipeline(c.Request().Context()); err != nil {
		return err
	}
	s.audit(c, "pipeline.pause", "")
	return c.JSON(http.StatusOK, map[string]string{"pipeline": StatePaused})
}

func (s *Server) handleResume(c echo.Context) error {
	if err := s.backend.ResumePipeline(c.Request().Context()); err != nil {
		return err
	}
	s.audit(c, "pipeline.resume", "")
	return c.JSON(http.StatusOK, map[string]string{"pipeline": "running"})
}

func (s *Server) handleTopics(c echo.Context) error {
	topics, err := s.backend.Topics(c.Request().Context())
	if err != nil {
		return err
	}
	if topics == nil {
		topics = []Topic{}
	}
	return c.JSON(http.StatusOK, map[string]any{"topics": topics})
}

// handleTestRequest produces the request body verbatim as one request and waits for its
// result. Query parameters: key (record key), header (repeatable "name:value").
func (s *Server) handleTestRequest(c echo.Context) error {
	r := c.Request()
	value, err := io.ReadAll(http.MaxBytesReader(c.Response(), r.Body, maxJSONBody))
	if err != nil {
		return &APIError{Code: statusOf(err), Message: "reading request body: " + err.Error(), Err: err}
	}
	if len(bytes.TrimSpace(value)) == 0 {
		return badRequest("empty body: send the request value, e.g. {\"request_id\": \"t-1\", \"features\": [...]}")
	}
	var key []byte
	if k := c.QueryParam("key"); k != "" {
		key = []byte(k)
	}
	var headers []store.Header
	for _, h := range c.QueryParams()["header"] {
		k, v, ok := strings.Cut(h, ":")
		if !ok || strings.TrimSpace(k) == "" {
			return badRequest("header %q: want name:value", h)
		}
		headers = append(headers, store.Header{Key: strings.TrimSpace(k), Value: []byte(strings.TrimSpace(v))})
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.TestTimeout)
	defer cancel()
	start := time.Now()
	res, err := s.backend.SendTestRequest(ctx, key, value, headers)
	// A test request goes into the requests topic like any other: who
	// sent which, and what became of it, is in the audit log.
	outcome := "answered"
	if err != nil {
		outcome = err.Error()
	}
	s.audit(c, "pipeline.test_request", fmt.Sprintf("key %q, %d bytes: %s", key, len(value), outcome))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, resultView(res, time.Since(start)))
}

func resultView(res []byte, took time.Duration) map[string]any {
	out := map[string]any{"latency_ms": round(float64(took) / float64(time.Millisecond))}
	if json.Valid(res) {
		out["result"] = json.RawMessage(res)
	} else {
		text, b64, _ := bytesView(res, 0)
		out["result_text"], out["result_base64"] = text, b64
	}
	return out
}

func (s *Server) handleModels(c echo.Context) error {
	models, err := s.backend.Models(c.Request().Context())
	if err != nil {
		return err
	}
	if models == nil {
		models = []Model{}
	}
	return c.JSON(http.StatusOK, map[string]any{"models": models})
}

func (s *Server) handleReload(c echo.Context) error {
	if err := s.backend.ReloadModels(c.Request().Context()); err != nil {
		return err
	}
	s.audit(c, "models.reload", "")
	return c.JSON(http.StatusOK, map[string]bool{"reloaded": true})
}

// handleUpload accepts an ONNX file as multipart/form-data (field "file", optional field
// "version", before or after the file) or as the raw body (optional query parameter version).
// Version 0 or absent means one above the highest. The file is streamed to a temporary file in
// Config.UploadDir, never held in memory, and http.max_upload_bytes is enforced while it
// streams.
func (s *Server) handleUpload(c echo.Context) error {
	name := c.Param("name")
	if !modelNameRE.MatchString(name) {
		return badRequest("model name %q: use letters, digits, '_', '.', '-' (at most 128, not starting with '.' or '-')", name)
	}
	version, err := parseVersion(c.QueryParam("version"), "version")
	if err != nil {
		return err
	}
	r := c.Request()
	f, err := os.CreateTemp(s.cfg.UploadDir, ".upload-*.onnx")
	if err != nil {
		return fmt.Errorf("creating a temporary file for the upload: %w", err)
	}
	defer os.Remove(f.Name()) // gone already when the backend moved it into place
	body := http.MaxBytesReader(c.Response(), r.Body, s.cfg.MaxUploadBytes)
	var n int64
	var w io.Writer = f
	if s.cfg.UploadMinFree > 0 {
		w = &roomWriter{w: f, dir: filepath.Dir(f.Name()), min: s.cfg.UploadMinFree}
	}
	mt, params, _ := mime.ParseMediaType(r.Header.Get(echo.HeaderContentType))
	if mt == "multipart/form-data" {
		n, version, err = spoolMultipartModel(body, params["boundary"], version, w)
	} else {
		n, err = io.Copy(w, body)
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &APIError{Code: http.StatusRequestEntityTooLarge, Message: fmt.Sprintf("model file larger than http.max_upload_bytes (%d bytes)", s.cfg.MaxUploadBytes), Err: err}
		}
		var ae *APIError
		if errors.As(err, &ae) {
			return err
		}
		var nr *noRoomError
		if errors.As(err, &nr) {
			return &APIError{Code: http.StatusInsufficientStorage, Message: nr.Error(), Err: err}
		}
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return fmt.Errorf("writing the upload to %s: %w", s.cfg.UploadDir, err)
		}
		return badRequest("reading upload: %v", err)
	}
	if n == 0 {
		return badRequest("empty model file")
	}
	v, err := s.backend.UploadModel(r.Context(), name, version, f.Name(), n)
	if err != nil {
		return err
	}
	s.audit(c, "models.upload", fmt.Sprintf("%s version %d (%d bytes)", name, v, n))
	return c.JSON(http.StatusCreated, map[string]any{"name": name, "version": v, "bytes": n})
}

// roomWriter refuses a write that would leave less than min bytes free in dir's file
// system. Without it an upload into the data dir could fill the disk to the last byte, which
// the store's and the broker's own floors exist to prevent (Badger SIGBUSes when a page of a
// file it mmaps cannot be allocated).
type roomWriter struct {
	w   io.Writer
	dir string
	min int64
}

type noRoomError struct {
	dir       string
	free, min int64
}

func (e *noRoomError) Error() string {
	return fmt.Sprintf("model upload refused: %s has %d bytes free; the upload would take it below min_free_bytes (%d bytes)", e.dir, e.free, e.min)
}

func (rw *roomWriter) Write(p []byte) (int, error) {
	if free, ok := diskfree.Free(rw.dir); ok && free-int64(len(p)) < rw.min {
		return 0, &noRoomError{dir: rw.dir, free: free, min: rw.min}
	}
	return rw.w.Write(p)
}

// spoolMultipartModel copies the file part into f and reads the version field.
func spoolMultipartModel(body io.Reader, boundary string, version int64, f io.Writer) (int64, int64, error) {
	if boundary == "" {
		return 0, 0, badRequest("multipart body without boundary")
	}
	mr := newMultipartReader(body, boundary)
	var n int64
	found := false
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, 0, err
		}
		switch {
		case p.FormName() == "version":
			b, err := io.ReadAll(io.LimitReader(p, 32))
			if err != nil {
				return 0, 0, err
			}
			if v := strings.TrimSpace(string(b)); v != "" {
				if version, err = parseVersion(v, "version"); err != nil {
					return 0, 0, err
				}
			}
		case !found && (p.FormName() == "file" || p.FileName() != ""):
			if n, err = io.Copy(f, p); err != nil {
				return 0, 0, err
			}
			found = true
		}
		_ = p.Close()
	}
	if !found {
		return 0, 0, badRequest("multipart upload without a \"file\" part")
	}
	return n, version, nil
}

func parseVersion(s, what string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 {
		return 0, badRequest("%s %q: want an integer from 1 to %d (0 or none: one above the highest version)", what, s, int64(math.MaxInt64))
	}
	return v, nil
}

type labelRequest struct {
	Version *int64 `json:"version"`
}

func (s *Server) handleSetLabel(c echo.Context) error {
	name, label := c.Param("name"), c.Param("label")
	if !modelNameRE.MatchString(name) {
		return badRequest("model name %q is not valid", name)
	}
	if !labelRE.MatchString(label) {
		return badRequest("label %q: use letters, digits, '_', '.', '-' (at most 64)", label)
	}
	var req labelRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if req.Version == nil || *req.Version <= 0 {
		return badRequest("body must be {\"version\": N} with N >= 1")
	}
	if err := s.backend.SetLabel(c.Request().Context(), name, label, *req.Version); err != nil {
		return err
	}
	s.audit(c, "models.label", fmt.Sprintf("%s label %s -> version %d", name, label, *req.Version))
	return c.JSON(http.StatusOK, map[string]any{"name": name, "label": label, "version": *req.Version})
}

func (s *Server) handleSidecar(c echo.Context) error {
	st, ok := s.backend.Sidecar(c.Request().Context())
	if !ok || st == nil {
		return c.JSON(http.StatusOK, map[string]any{"enabled": false})
	}
	return c.JSON(http.StatusOK, struct {
		Enabled bool `json:"enabled"`
		*SidecarStatus
	}{true, st})
}

func (s *Server) handleIngress(c echo.Context) error {
	st, ok := s.backend.Ingress(c.Request().Context())
	if !ok || st == nil {
		return c.JSON(http.StatusOK, map[string]any{"enabled": false})
	}
	if st.Rejects == nil {
		st.Rejects = []IngressReject{}
	}
	return c.JSON(http.StatusOK, struct {
		Enabled bool `json:"enabled"`
		*IngressStatus
	}{true, st})
}

func (s *Server) handleSettings(c echo.Context) error {
	return c.JSON(http.StatusOK, s.backend.Settings())
}

func (s *Server) handleAudit(c echo.Context) error {
	limit := 100
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return badRequest("limit %q: want 1..1000", v)
		}
		limit = n
	}
	entries, err := s.store.AuditLog(limit)
	if err != nil {
		return err
	}
	if entries == nil {
		entries = []store.AuditEntry{}
	}
	return c.JSON(http.StatusOK, map[string]any{"entries": entries})
}

// bytesView renders b for JSON: as text when it is UTF-8, else base64. limit > 0 truncates
// (to a rune boundary) for list views.
func bytesView(b []byte, limit int) (text, b64 string, truncated bool) {
	if limit > 0 && len(b) > limit {
		b, truncated = b[:limit], true
		for len(b) > 0 && !utf8.Valid(b) && len(b) > limit-utf8.UTFMax {
			b = b[:len(b)-1]
		}
	}
	if utf8.Valid(b) {
		return string(b), "", truncated
	}
	return "", base64Std(b), truncated
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
