package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/infergate/infergate/internal/testutil"
)

// TestGroupDLQFromAnyInstance: `infergate dlq` pointed at any instance of a
// group (by its data dir: the store is locked by the running instance, so the
// CLI turns to that instance's admin API) lists every dead letter of the
// group, whichever instance dead-lettered it, and a replay run against one
// instance of a record another instance dead-lettered shows on all three.
// Three `infergate run` processes on a three-broker kfake cluster with a
// data dir (issue 13, item 5, through the command line).
func TestGroupDLQFromAnyInstance(t *testing.T) {
	brokers := groupCluster(t)
	adm := kadm.NewClient(testutil.Client(t, brokers))
	ms := startStableGroup(t, brokers, adm)

	// Two undecodable requests on every partition: each instance
	// dead-letters those of the partitions it owns.
	cl := testutil.Client(t, brokers, kgo.DefaultProduceTopic(requestsTopic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	const perPartition = 2
	want := 0
	for p := range int32(groupPartitions) {
		for i := range perPartition {
			rec := &kgo.Record{Partition: p, Key: []byte(fmt.Sprintf("bad-%d-%d", p, i)), Value: []byte("not json")}
			if err := cl.ProduceSync(context.Background(), rec).FirstErr(); err != nil {
				t.Fatal(err)
			}
			want++
		}
	}

	type listed struct {
		ID              string `json:"id"`
		Class           string `json:"class"`
		SourcePartition int32  `json:"source_partition"`
		Replays         int    `json:"replays"`
	}
	list := func(m *member) (map[string]listed, error) {
		out, stderr, code := infergate(t, "", "dlq", "list", "--json", "--data-dir", m.dataDir)
		if code != 0 {
			return nil, fmt.Errorf("dlq list --data-dir (%s): exit %d: %s", m.id, code, stderr)
		}
		got := map[string]listed{}
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if l == "" {
				continue
			}
			var r listed
			if err := json.Unmarshal([]byte(l), &r); err != nil {
				return nil, fmt.Errorf("%s: %q: %w", m.id, l, err)
			}
			got[r.ID] = r
		}
		return got, nil
	}
	var all map[string]listed
	for _, m := range ms {
		testutil.Eventually(t, time.Minute, func() error {
			got, err := list(m)
			if err != nil {
				return err
			}
			if len(got) != want {
				return fmt.Errorf("%s lists %d dead letters, want %d", m.id, len(got), want)
			}
			if all == nil {
				all = got
			}
			for id := range all {
				if _, ok := got[id]; !ok {
					return fmt.Errorf("%s does not list %s", m.id, id)
				}
			}
			return nil
		})
	}

	// A record dead-lettered by instance 0, replayed through instance 2.
	owners, _, _ := assignment(t, adm, "infergate")
	var target listed
	for _, r := range all {
		if owners[r.SourcePartition] == ms[0].id {
			target = r
			break
		}
	}
	if target.ID == "" {
		t.Fatalf("no dead letter from %s's partitions %v", ms[0].id, partitionsOf(owners, ms[0].id))
	}
	if out, stderr, code := infergate(t, "", "dlq", "replay", target.ID, "--data-dir", ms[2].dataDir); code != 0 {
		t.Fatalf("dlq replay %s --data-dir (%s): exit %d: %s %s", target.ID, ms[2].id, code, out, stderr)
	}
	for _, m := range ms {
		testutil.Eventually(t, time.Minute, func() error {
			got, err := list(m)
			if err != nil {
				return err
			}
			if r := got[target.ID]; r.Replays != 1 {
				return fmt.Errorf("%s: %s shows %d replays", m.id, target.ID, r.Replays)
			}
			return nil
		})
	}
	t.Logf("each of the three lists the same %d dead letters; %s (partition %d, dead-lettered by %s) replayed through %s shows one replay on all three",
		len(all), target.ID, target.SourcePartition, ms[0].id, ms[2].id)
}
