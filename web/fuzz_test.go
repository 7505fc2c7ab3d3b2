package web

import (
	"bytes"
	"encoding/json"
	"mime/multipart"
	"strings"
	"testing"
	"time"
)

// FuzzParseTime: the DLQ filters' time parameters come from the query string.
func FuzzParseTime(f *testing.F) {
	for _, s := range []string{"", "15m", "2025-01-02T15:04:05Z", "1735830245", "-5m", "yesterday", "9999999999999999999", "1h30m", "2025-01-02T15:04:05.123+02:00"} {
		f.Add(s)
	}
	now := time.Unix(1_750_000_000, 0)
	f.Fuzz(func(t *testing.T, s string) {
		tm, err := parseTime(s, "since", now)
		// Only an empty (or blank) value means "no bound".
		if err == nil && strings.TrimSpace(s) != "" && tm.IsZero() {
			t.Fatalf("parseTime(%q) = zero time without error", s)
		}
		if err != nil && statusOf(err) != 400 {
			t.Fatalf("parseTime(%q) error maps to %d", s, statusOf(err))
		}
	})
}

// FuzzBulkRequest: replay and delete bodies are JSON from the client; decoding, checking
// and turning the filter into a store filter must never panic, and a request that passes
// check names ids or a filter.
func FuzzBulkRequest(f *testing.F) {
	for _, s := range []string{`{}`, `{"ids": ["01ARZ3NDEKTSV4RRFFQ69G5FAV"]}`, `{"filter": {}}`, `{"filter": {"class": "decode", "since": "1h"}}`,
		`{"ids": [], "filter": null}`, `{"filter": {"until": "2025-01-02T15:04:05Z"}, "delete": true}`, `null`, `[]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var req BulkRequest
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if dec.Decode(&req) != nil {
			return
		}
		if err := req.check(); err != nil {
			if statusOf(err) != 400 {
				t.Fatalf("check error maps to %d", statusOf(err))
			}
			return
		}
		if req.IDs == nil && req.Filter == nil {
			t.Fatalf("%s passed check without ids or filter", b)
		}
		if req.Filter != nil {
			_, _ = req.Filter.toStore(time.Now())
		}
	})
}

// FuzzMultipartModel: an uploaded model arrives as multipart/form-data.
func FuzzMultipartModel(f *testing.F) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	_ = mw.SetBoundary("b0undary")
	_ = mw.WriteField("version", "3")
	fw, _ := mw.CreateFormFile("file", "m.onnx")
	_, _ = fw.Write([]byte("onnx"))
	_ = mw.Close()
	f.Add(buf.Bytes())
	f.Add([]byte("--b0undary\r\nContent-Disposition: form-data; name=\"version\"\r\n\r\n-1\r\n--b0undary--\r\n"))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var out bytes.Buffer
		n, v, err := spoolMultipartModel(bytes.NewReader(b), "b0undary", 0, &out)
		if err == nil && (v < 0 || n != int64(out.Len())) {
			t.Fatalf("accepted version %d, %d bytes counted, %d written", v, n, out.Len())
		}
	})
}
