package modelserver

import (
	"context"
	"slices"
	"testing"

	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/tfserving"
)

// A held version (pinned, or in a rollout) stays loaded when latest:N would
// unload it as newer versions arrive, its status says why, and it goes when
// the hold ends; a held version the policy had unloaded is loaded again.
func TestHeldVersionsOutliveLatestPolicy(t *testing.T) {
	base := t.TempDir()
	writeVersion(t, base, 1, addModel(t, 1))
	writeVersion(t, base, 2, addModel(t, 2))
	s := startServer(t, testConfig(tfserving.ModelConfig{Name: "add", BasePath: base, Policy: tfserving.VersionPolicy{Latest: 2}}))
	want := func(versions ...int64) {
		t.Helper()
		if got := available(s, "add"); !slices.Equal(got, versions) {
			t.Fatalf("available = %v, want %v", got, versions)
		}
	}
	want(2, 1)

	s.SetHolds(map[string]map[int64]string{"add": {1: "pinned"}})
	for _, v := range []int64{3, 4} {
		if got, err := s.UploadVersion("add", 0, addModel(t, float32(v))); err != nil || got != v {
			t.Fatalf("upload: %d %v", got, err)
		}
	}
	want(4, 3, 1)
	if st, _ := stateOf(s, "add", 1); st.Held != "pinned" {
		t.Errorf("version 1's status %+v does not say it is pinned", st)
	}
	if st, _ := stateOf(s, "add", 4); st.Held != "" {
		t.Errorf("version 4 is kept by the policy, not held: %+v", st)
	}
	res, err := s.InProcess().Predict(context.Background(), model.Spec{Name: "add", Version: 1}, addInput(1))
	if err != nil || res.Version != 1 {
		t.Fatalf("the held version 1: %v %v", res, err)
	}
	checkAdd(t, res)

	s.SetHolds(nil)
	want(4, 3)
	if st, _ := stateOf(s, "add", 1); st.State != StateEnd || st.Held != "" {
		t.Errorf("version 1 no longer held: %+v, want END", st)
	}

	// Held again (a rollout back to it): loaded again from its directory.
	s.SetHolds(map[string]map[int64]string{"add": {1: "stable of rollout add-1"}, "other": {7: "pinned"}})
	want(4, 3, 1)
	if st, _ := stateOf(s, "add", 1); st.Held != "stable of rollout add-1" {
		t.Errorf("version 1's status %+v does not name the rollout", st)
	}
}
