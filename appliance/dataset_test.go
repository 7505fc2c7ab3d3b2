package appliance

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/infergate/infergate/inference/rollout"
	"github.com/infergate/infergate/internal/testutil"
	"github.com/infergate/infergate/store"
)

// TestCaptureAndReplay is issue 14's item 6 with real components: a window
// of live requests saved as a dataset and replayed against two versions
// gives the same report a shadow does, with the known share of differing
// inputs; a DLQ selection is a dataset too; every action is audited.
func TestCaptureAndReplay(t *testing.T) {
	a, api := startTwoVersions(t, testConfig(t))
	prod := producer(t, a)
	res := followResults(t, a)

	// Dead letters first, so the newest requests are the wave below.
	const bad = 6
	for i := range bad {
		produce(t, prod, &kgo.Record{Key: fmt.Appendf(nil, "bad-%d", i), Value: []byte(`{"request_id": "bad", "features": [1, `)})
	}
	var dl struct {
		Total int `json:"total"`
	}
	testutil.Eventually(t, time.Minute, func() error {
		api.json("GET", "/api/v1/dlq", nil, 200, &dl)
		if dl.Total != bad {
			return fmt.Errorf("%d dead letters", dl.Total)
		}
		return nil
	})
	since := time.Now().Add(-time.Millisecond)
	const devices = 200
	x := func(d int) float32 {
		if d%4 == 0 {
			return -float32(d%5 + 1)
		}
		return 0.5
	}
	wave(t, a, prod, res, "live", devices, x)

	// The newest 200 requests of model demo, and the same by time window.
	var ds store.Dataset
	api.json("POST", "/api/v1/datasets", map[string]any{"name": "live", "last": devices, "model": "demo"}, 201, &ds)
	if ds.Records != devices || ds.Source != rollout.SourceRequests || ds.Model != "demo" {
		t.Fatalf("captured %+v", ds)
	}
	api.json("POST", "/api/v1/datasets", map[string]any{"name": "window", "since": since.UTC().Format(time.RFC3339Nano)}, 201, &ds)
	if ds.Records != devices {
		t.Errorf("the window since the wave holds %d records, want %d", ds.Records, devices)
	}
	if code, body := api.do("POST", "/api/v1/datasets", map[string]any{"name": "live"}); code != 409 {
		t.Errorf("capturing over an existing dataset: %d %s", code, body)
	}
	if code, body := api.do("POST", "/api/v1/datasets", map[string]any{"name": "x", "class": "decode"}); code != 400 {
		t.Errorf("a DLQ filter on the requests topic: %d %s", code, body)
	}

	// Replay: v2 against v1 differs on the quarter with a negative feature 0.
	var rep rollout.Report
	api.json("POST", "/api/v1/datasets/live/replay", map[string]any{"stable": 1, "candidate": 2}, 200, &rep)
	st := rep.Rollout.Replay
	if st == nil || st.Records != devices || st.Scored != devices || st.Undecodable != 0 || st.OtherModel != 0 {
		t.Fatalf("replay stats %+v", st)
	}
	if rep.Compared != devices || rep.Rollout.Mode != rollout.ModeReplay || rep.Stable.Version != 1 || rep.Candidate.Version != 2 {
		t.Fatalf("report: compared %d, rollout %+v", rep.Compared, rep.Rollout)
	}
	if share := 1 - rep.Agreement; math.Abs(share-0.25) > 1e-9 {
		t.Errorf("the replay shows %.3f differing, want exactly 0.25", share)
	}
	if rep.Difference == nil || rep.Difference.Max != 5 || len(rep.Top) == 0 || rep.Top[0].Diff != 5 {
		t.Errorf("difference %+v top %+v", rep.Difference, rep.Top)
	}
	for _, cmp := range rep.Top {
		var d int
		fmt.Sscanf(cmp.Key, "dev-%d", &d)
		if d%4 != 0 || cmp.Topic != a.Config().Pipeline.RequestsTopic || cmp.Stable[0] != float64(x(d)) || cmp.Candidate[0] != 0 {
			t.Errorf("top difference %+v is not one of the differing inputs", cmp)
		}
	}
	// With no versions named: the serving version (2, the latest) against
	// the highest other (1); the last report is kept.
	api.json("POST", "/api/v1/datasets/window/replay", nil, 200, &rep)
	if rep.Stable.Version != 2 || rep.Candidate.Version != 1 || rep.Compared != devices || math.Abs(rep.Agreement-0.75) > 1e-9 {
		t.Errorf("default replay: stable %d candidate %d compared %d agreement %v", rep.Stable.Version, rep.Candidate.Version, rep.Compared, rep.Agreement)
	}
	var again rollout.Report
	api.json("GET", "/api/v1/datasets/live/report", nil, 200, &again)
	if again.Compared != devices || again.Rollout.Candidate != 2 || again.Rollout.Replay == nil {
		t.Errorf("the last report of live: %+v", again.Rollout)
	}

	// A DLQ selection: the requests the pipeline could not read stay
	// unreadable, and the replay says so.
	api.json("POST", "/api/v1/datasets", map[string]any{"name": "dead", "source": "dlq", "class": "decode"}, 201, &ds)
	if ds.Records != bad || ds.Source != rollout.SourceDLQ {
		t.Fatalf("captured %+v", ds)
	}
	api.json("POST", "/api/v1/datasets/dead/replay", map[string]any{"candidate": 1}, 200, &rep)
	if st := rep.Rollout.Replay; st == nil || st.Undecodable != bad || rep.Compared != 0 {
		t.Errorf("replay of the dead letters: %+v, compared %d", rep.Rollout.Replay, rep.Compared)
	}

	var list struct {
		Datasets []store.Dataset `json:"datasets"`
	}
	api.json("GET", "/api/v1/datasets", nil, 200, &list)
	if len(list.Datasets) != 3 || list.Datasets[0].Name != "dead" || list.Datasets[1].Name != "live" {
		t.Errorf("datasets %+v", list.Datasets)
	}
	api.json("DELETE", "/api/v1/datasets/live", nil, 200, nil)
	if code, _ := api.do("GET", "/api/v1/datasets/live/report", nil); code != 404 {
		t.Errorf("the report of a deleted dataset: %d", code)
	}
	if code, _ := api.do("DELETE", "/api/v1/datasets/live", nil); code != 404 {
		t.Errorf("deleting a deleted dataset: %d", code)
	}
	if code, _ := api.do("POST", "/api/v1/datasets/nope/replay", nil); code != 404 {
		t.Errorf("replaying a missing dataset: %d", code)
	}

	var audit struct {
		Entries []struct {
			Action string `json:"action"`
		} `json:"entries"`
	}
	api.json("GET", "/api/v1/audit?limit=1000", nil, 200, &audit)
	actions := map[string]int{}
	for _, e := range audit.Entries {
		actions[e.Action]++
	}
	if actions["datasets.capture"] != 3 || actions["datasets.replay"] != 3 || actions["datasets.delete"] != 1 {
		t.Errorf("audit log: %v", actions)
	}
}
