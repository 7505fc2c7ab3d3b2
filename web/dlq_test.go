package web

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/infergate/infergate/store"
)

// seedDLQ puts n records: classes alternate decode/validation, models alternate demo/fraud,
// failure times one minute apart ending now.
func seedDLQ(t *testing.T, st *store.Store, n int) []*store.Record {
	t.Helper()
	now := time.Now()
	var recs []*store.Record
	for i := range n {
		class, model := "decode", "demo"
		if i%2 == 1 {
			class, model = "validation", "fraud"
		}
		recs = append(recs, &store.Record{
			Key:     []byte(fmt.Sprintf("key-%d", i)),
			Value:   []byte(fmt.Sprintf(`{"request_id": "r-%d", "features": [1, 2]}`, i)),
			Headers: []store.Header{{Key: "model", Value: []byte(model)}, {Key: "bin", Value: []byte{0xff, 0x00}}},
			Class:   class, Message: "input shape [1,2] does not match [-1,16]", Model: model,
			SourceTopic: "inference_requests", SourcePartition: int32(i % 3), SourceOffset: int64(100 + i), Attempts: 1,
			FailedAt: now.Add(-time.Duration(n-i) * time.Minute),
		})
	}
	putRecords(t, st, recs...)
	return recs
}

type listResp struct {
	Records    []RecordView `json:"records"`
	NextCursor string       `json:"next_cursor"`
	Total      int          `json:"total"`
}

func TestDLQListAndShow(t *testing.T) {
	env := newEnv(t)
	recs := seedDLQ(t, env.store, 10)

	var l listResp
	env.api("GET", "/api/v1/dlq", nil).json(t, &l)
	if len(l.Records) != 10 || l.Total != 10 {
		t.Fatalf("list: %d records, total %d", len(l.Records), l.Total)
	}
	if l.Records[0].ID != recs[9].ID {
		t.Fatalf("not newest first: %s, want %s", l.Records[0].ID, recs[9].ID)
	}
	first := l.Records[0]
	if first.Key == nil || *first.Key != "key-9" || first.SourceOffset != 109 || first.Class != "validation" ||
		!strings.Contains(first.Value, `"r-9"`) || len(first.Headers) != 2 || first.Headers[1].ValueBase64 != "/wA=" {
		t.Fatalf("record view %+v", first)
	}

	// Filters.
	env.api("GET", "/api/v1/dlq?class=decode", nil).json(t, &l)
	if len(l.Records) != 5 || l.Total != 5 {
		t.Fatalf("class filter: %d, total %d", len(l.Records), l.Total)
	}
	env.api("GET", "/api/v1/dlq?model=fraud&class=validation", nil).json(t, &l)
	if len(l.Records) != 5 || l.Total != 5 || l.Records[0].Model != "fraud" {
		t.Fatalf("model filter: %d, total %d", len(l.Records), l.Total)
	}
	env.api("GET", "/api/v1/dlq?since=3m30s", nil).json(t, &l)
	if len(l.Records) != 3 || l.Total != 3 {
		t.Fatalf("since 3m30s: %d records, total %d", len(l.Records), l.Total)
	}
	until := url.QueryEscape(recs[2].FailedAt.Format(time.RFC3339Nano))
	env.api("GET", "/api/v1/dlq?until="+until, nil).json(t, &l)
	if len(l.Records) != 2 {
		t.Fatalf("until: %d records", len(l.Records))
	}
	// Paging.
	var seen []string
	cursor := ""
	for page := 0; ; page++ {
		env.api("GET", "/api/v1/dlq?limit=4&cursor="+cursor, nil).json(t, &l)
		for _, r := range l.Records {
			seen = append(seen, r.ID)
		}
		if l.NextCursor == "" {
			break
		}
		cursor = l.NextCursor
		if page > 5 {
			t.Fatal("paging does not end")
		}
	}
	if len(seen) != 10 || seen[9] != recs[0].ID {
		t.Fatalf("paged %d records", len(seen))
	}
	// Bad input.
	for _, q := range []string{"since=yesterday", "until=-5m", "limit=0", "limit=5000", "limit=x", "cursor=not-a-ulid"} {
		r := env.api("GET", "/api/v1/dlq?"+q, nil)
		if r.code != 400 {
			t.Errorf("?%s: %d %s, want 400", q, r.code, r.body)
		}
	}

	// Show: the whole value, binary as base64.
	big := &store.Record{Class: "decode", Message: "not JSON", Value: append([]byte(strings.Repeat("a", 1000)), 0xff)}
	putRecords(t, env.store, big)
	env.api("GET", "/api/v1/dlq?class=decode&limit=1", nil).json(t, &l)
	if !l.Records[0].ValueTruncated || len(l.Records[0].Value) != listPreview || l.Records[0].ValueSize != 1001 {
		t.Fatalf("list preview not truncated: %+v", l.Records[0])
	}
	var one RecordView
	env.api("GET", "/api/v1/dlq/"+strings.ToLower(big.ID), nil).json(t, &one)
	if one.ID != big.ID || one.ValueBase64 == "" || one.Value != "" || one.Key != nil {
		t.Fatalf("show binary record: %+v", one)
	}
	r := env.api("GET", "/api/v1/dlq/01ARZ3NDEKTSV4RRFFQ69G5FAV", nil)
	expectCode(t, r, 404)
	if !strings.Contains(r.errMsg(t), "01ARZ3NDEKTSV4RRFFQ69G5FAV") {
		t.Fatalf("404 does not name the id: %s", r.body)
	}
	expectCode(t, env.api("GET", "/api/v1/dlq/garbage", nil), 404)
}

func TestDLQDelete(t *testing.T) {
	env := newEnv(t)
	recs := seedDLQ(t, env.store, 10)
	expectCode(t, env.api("DELETE", "/api/v1/dlq/"+recs[0].ID, nil), http.StatusNoContent)
	expectCode(t, env.api("DELETE", "/api/v1/dlq/"+recs[0].ID, nil), http.StatusNotFound)
	if _, err := env.store.Get(recs[0].ID); err == nil {
		t.Fatal("record still there")
	}

	var d map[string]int
	env.api("POST", "/api/v1/dlq/delete", BulkRequest{IDs: []string{recs[1].ID, recs[2].ID, "01ARZ3NDEKTSV4RRFFQ69G5FAV"}}).json(t, &d)
	if d["deleted"] != 2 {
		t.Fatalf("bulk delete by ids: %v", d)
	}
	env.api("POST", "/api/v1/dlq/delete", BulkRequest{Filter: &FilterJSON{Class: "validation"}}).json(t, &d)
	if d["deleted"] != 4 { // 3, 5, 7, 9 (1 went by id)
		t.Fatalf("bulk delete by filter: %v", d)
	}
	if n := env.store.Stats().ByClass["validation"]; n != 0 {
		t.Fatalf("%d validation records left", n)
	}
	for _, body := range []string{`{}`, `{"ids": []}`, `{"ids": ["x"], "filter": {}}`, `{"idz": ["x"]}`, `not json`, `{"filter": {"since": "soon"}}`, `{"filter": {}, "delete": true}`} {
		r := env.api("POST", "/api/v1/dlq/delete", body, "Content-Type", "application/json")
		if r.code != 400 {
			t.Errorf("bulk delete %s: %d %s, want 400", body, r.code, r.body)
		}
	}
	env.api("POST", "/api/v1/dlq/delete", BulkRequest{Filter: &FilterJSON{}}).json(t, &d)
	if env.store.Stats().Records != 0 {
		t.Fatalf("delete all left %d records", env.store.Stats().Records)
	}
}

func TestDLQReplay(t *testing.T) {
	env := newEnv(t)
	recs := seedDLQ(t, env.store, 10)

	// By ids: all or nothing.
	r := env.api("POST", "/api/v1/dlq/replay", BulkRequest{IDs: []string{recs[0].ID, "01ARZ3NDEKTSV4RRFFQ69G5FAV"}})
	expectCode(t, r, 404)
	if len(env.backend.replayedIDs()) != 0 {
		t.Fatal("replayed despite an unknown id")
	}
	var out map[string]int
	env.api("POST", "/api/v1/dlq/replay", BulkRequest{IDs: []string{recs[0].ID, recs[1].ID}}).json(t, &out)
	if out["replayed"] != 2 || len(env.backend.replayedIDs()) != 2 {
		t.Fatalf("replay by ids: %v, backend saw %v", out, env.backend.replayedIDs())
	}
	got, err := env.store.Get(recs[0].ID)
	if err != nil || got.Replays != 1 || got.LastReplayAt.IsZero() {
		t.Fatalf("record not marked replayed: %+v %v", got, err)
	}
	// The backend got the original bytes.
	if rp := env.backend.replayed[0]; string(rp.Value) != string(recs[0].Value) || string(rp.Key) != "key-0" || len(rp.Headers) != 2 {
		t.Fatalf("backend got %+v", rp)
	}

	// By filter, deleting afterwards.
	env.api("POST", "/api/v1/dlq/replay", BulkRequest{Filter: &FilterJSON{Class: "decode"}, Delete: true}).json(t, &out)
	if out["replayed"] != 5 {
		t.Fatalf("replay by filter: %v", out)
	}
	if n := env.store.Stats().ByClass["decode"]; n != 0 {
		t.Fatalf("%d decode records left after replay with delete", n)
	}
	// All (filter {}), in more than one chunk.
	more := make([]*store.Record, 0, replayChunk+20)
	for i := range replayChunk + 20 {
		more = append(more, &store.Record{Class: "model", Value: []byte(fmt.Sprint(i))})
	}
	putRecords(t, env.store, more...)
	before := len(env.backend.replayedIDs())
	env.api("POST", "/api/v1/dlq/replay", BulkRequest{Filter: &FilterJSON{}}).json(t, &out)
	if want := 5 + replayChunk + 20; out["replayed"] != want || len(env.backend.replayedIDs())-before != want {
		t.Fatalf("replay all: %v, want %d", out, want)
	}

	for _, body := range []string{`{}`, `{"ids": []}`, `{"ids": ["x"], "filter": {}}`, `{"filter": {"clas": "x"}}`, `[1]`, `{"filter": {"until": "later"}}`} {
		r := env.api("POST", "/api/v1/dlq/replay", body, "Content-Type", "application/json")
		if r.code != 400 {
			t.Errorf("replay %s: %d %s, want 400", body, r.code, r.body)
		}
	}
}

func TestDLQReplayOneEditedAndWait(t *testing.T) {
	env := newEnv(t)
	// A poisoned request goes to the DLQ the way the pipeline would put it there.
	r := env.api("POST", "/api/v1/test-request?key=dev-7", `{"request_id": "p-1", "features": [0.5, 0.5]}`)
	expectCode(t, r, 400)
	var l listResp
	env.api("GET", "/api/v1/dlq?class=validation", nil).json(t, &l)
	if len(l.Records) != 1 {
		t.Fatalf("poisoned record not in the DLQ: %s", r.body)
	}
	id := l.Records[0].ID

	// Replaying it unchanged and waiting fails again, but counts as a replay.
	r = env.api("POST", "/api/v1/dlq/"+id+"/replay", map[string]any{"wait": true})
	expectCode(t, r, 400)
	if got, _ := env.store.Get(id); got.Replays != 1 {
		t.Fatalf("replays %d after a failed replay-and-wait", got.Replays)
	}
	// Fixed: sixteen features.
	fixed := `{"request_id": "p-1", "features": [0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5]}`
	r = env.api("POST", "/api/v1/dlq/"+id+"/replay", map[string]any{"value": fixed, "wait": true, "delete": true})
	expectCode(t, r, 200)
	var res struct {
		Replayed int  `json:"replayed"`
		Edited   bool `json:"edited"`
		Result   struct {
			RequestID  string    `json:"request_id"`
			Prediction []float64 `json:"prediction"`
		} `json:"result"`
	}
	r.json(t, &res)
	if res.Replayed != 1 || !res.Edited || res.Result.RequestID != "p-1" || res.Result.Prediction[0] != 0.5 {
		t.Fatalf("replay-and-wait answered %s", r.body)
	}
	if _, err := env.store.Get(id); err == nil {
		t.Fatal("record not deleted after a successful replay with delete")
	}

	// Without wait: produced through Replay with the original key.
	recs := seedDLQ(t, env.store, 1)
	expectCode(t, env.api("POST", "/api/v1/dlq/"+recs[0].ID+"/replay", nil), 200)
	ids := env.backend.replayedIDs()
	if len(ids) != 1 || ids[0] != recs[0].ID {
		t.Fatalf("backend replayed %v", ids)
	}
	expectCode(t, env.api("POST", "/api/v1/dlq/01ARZ3NDEKTSV4RRFFQ69G5FAV/replay", nil), 404)
	expectCode(t, env.api("POST", "/api/v1/dlq/"+recs[0].ID+"/replay", `{"value": "a", "value_base64": "YQ=="}`, "Content-Type", "application/json"), 400)
	expectCode(t, env.api("POST", "/api/v1/dlq/"+recs[0].ID+"/replay", `{"value_base64": "!!"}`, "Content-Type", "application/json"), 400)
}
