package appliance

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/infergate/infergate/internal/testutil"
	"github.com/infergate/infergate/web"
)

// startGroup runs n appliances attached to a three-broker kfake cluster (with a data dir)
// in one consumer group, instance ids infergate-0 …, and waits until the group's n members
// own every partition.
func startGroup(t *testing.T, n, partitions int) ([]*running, []*apiClient) {
	t.Helper()
	cluster := testutil.Cluster(t, partitions, nil, kfake.NumBrokers(3), kfake.DataDir(t.TempDir()))
	var as []*running
	var apis []*apiClient
	for i := range n {
		c := testConfig(t)
		c.Broker.Mode = BrokerExternal
		c.Broker.Brokers = cluster.ListenAddrs()
		c.Topics.Partitions = partitions
		c.Pipeline.InstanceID = fmt.Sprintf("infergate-%d", i)
		a := start(t, c)
		as, apis = append(as, a), append(apis, newAPIClient(t, a))
	}
	testutil.Eventually(t, 2*time.Minute, func() error {
		g, err := groupOf(apis[0])
		if err != nil {
			return err
		}
		owned := 0
		for _, m := range g.Members {
			owned += len(m.Partitions)
		}
		if len(g.Members) != n || owned != partitions {
			return fmt.Errorf("%d members owning %d partitions, want %d owning %d", len(g.Members), owned, n, partitions)
		}
		return nil
	})
	return as, apis
}

// groupOf is GET /api/v1/group; an answer other than 200 (the coordinator still loading)
// is an error for the caller's Eventually.
func groupOf(api *apiClient) (web.Group, error) {
	api.t.Helper()
	var g web.Group
	code, body := api.do("GET", "/api/v1/group", nil)
	if code != http.StatusOK {
		return g, fmt.Errorf("GET /api/v1/group: %d %s", code, body)
	}
	if err := json.Unmarshal(body, &g); err != nil {
		api.t.Fatalf("GET /api/v1/group: %v: %s", err, body)
	}
	return g, nil
}

func memberOf(g web.Group, name string) *web.GroupMember {
	for i := range g.Members {
		if g.Members[i].Name == name {
			return &g.Members[i]
		}
	}
	return nil
}

// dlqIDs lists the ids of every dead letter an instance's API shows.
func dlqIDs(api *apiClient) []string {
	api.t.Helper()
	var list dlqList
	api.json("GET", "/api/v1/dlq?limit=1000", nil, 200, &list)
	ids := make([]string, 0, len(list.Records))
	for _, r := range list.Records {
		ids = append(ids, r.ID)
	}
	slices.Sort(ids)
	return ids
}

// TestGroupSharedDLQ: three appliances attached to a three-broker cluster in one group share
// one DLQ. Bad requests on every partition are dead-lettered by the instance owning it; every
// instance's DLQ API lists all of them under the same ids. A delete on instance 0 disappears
// from 1 and 2; a record dead-lettered by instance 0, fixed and replayed from instance 2,
// gets its result and shows replayed on all three. Pausing instance 0 shows on the others'
// group view, with the lag of its partitions in its row and in the group's total. A fourth
// instance started last shows the same dead letters, the deleted one not among them.
func TestGroupSharedDLQ(t *testing.T) {
	const partitions = 6
	as, apis := startGroup(t, 3, partitions)
	g, err := groupOf(apis[0])
	if err != nil {
		t.Fatal(err)
	}
	owner := map[int32]string{}
	for _, m := range g.Members {
		for _, p := range m.Partitions {
			owner[p.Partition] = m.Name
		}
	}

	cl := testutil.Client(t, as[0].Config().Broker.Brokers, kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.DefaultProduceTopic(as[0].Config().Pipeline.RequestsTopic))
	var bad []*kgo.Record
	for p := range int32(partitions) {
		for i := range 2 {
			bad = append(bad, &kgo.Record{Partition: p, Key: []byte(fmt.Sprintf("bad-%d-%d", p, i)),
				Value: requestValue(fmt.Sprintf("bad-%d-%d", p, i), features(3, 0.5))})
		}
	}
	produce(t, cl, bad...)

	// Every instance lists every dead letter, under the same ids.
	var ids []string
	testutil.Eventually(t, time.Minute, func() error {
		ids = dlqIDs(apis[0])
		for i, api := range apis {
			got := dlqIDs(api)
			if len(got) != len(bad) || !slices.Equal(got, ids) {
				return fmt.Errorf("instance %d lists %d dead letters (%v), instance 0 %d (%v); want %d, the same", i, len(got), got, len(ids), ids, len(bad))
			}
		}
		return nil
	})
	// Each was dead-lettered by the owner of its partition; each instance dead-lettered some.
	byOwner := map[string][]web.RecordView{}
	for _, id := range ids {
		var r web.RecordView
		apis[1].json("GET", "/api/v1/dlq/"+id, nil, 200, &r)
		if r.Class != "validation" || r.Model != "demo" || r.SourcePartition < 0 {
			t.Errorf("dead letter %s on instance 1: class %q model %q partition %d", id, r.Class, r.Model, r.SourcePartition)
		}
		byOwner[owner[r.SourcePartition]] = append(byOwner[owner[r.SourcePartition]], r)
	}
	for i := range as {
		if len(byOwner[fmt.Sprintf("infergate-%d", i)]) == 0 {
			t.Fatalf("instance %d dead-lettered nothing: %v", i, byOwner)
		}
		if st := as[i].Pipeline().Status(); st.DLQ["validation"] == 0 {
			t.Errorf("instance %d's pipeline counts no dead letter", i)
		}
	}

	// Deleted on instance 0 (a record instance 1 dead-lettered): gone everywhere.
	gone := byOwner["infergate-1"][0].ID
	if code, body := apis[0].do("DELETE", "/api/v1/dlq/"+gone, nil); code != http.StatusNoContent {
		t.Fatalf("delete on instance 0: %d %s", code, body)
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		for i, api := range apis {
			if code, _ := api.do("GET", "/api/v1/dlq/"+gone, nil); code != http.StatusNotFound {
				return fmt.Errorf("instance %d still shows %s (%d)", i, gone, code)
			}
		}
		return nil
	})

	// Dead-lettered by instance 0, fixed and replayed from instance 2: the result comes back
	// and every instance shows the record replayed.
	x := byOwner["infergate-0"][0]
	var fixed struct {
		Result map[string]any `json:"result"`
	}
	var req struct {
		ID string `json:"request_id"`
	}
	if err := json.Unmarshal([]byte(x.Value), &req); err != nil || req.ID == "" {
		t.Fatalf("dead letter %s: value %s: %v", x.ID, x.Value, err)
	}
	id := req.ID
	apis[2].json("POST", "/api/v1/dlq/"+x.ID+"/replay", map[string]any{"value": string(requestValue(id, features(16, 0.5))), "wait": true}, 200, &fixed)
	if fixed.Result["request_id"] != id {
		t.Fatalf("replay from instance 2: %+v", fixed)
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		for i, api := range apis {
			var r web.RecordView
			api.json("GET", "/api/v1/dlq/"+x.ID, nil, 200, &r)
			if r.Replays != 1 || r.LastReplayAt.IsZero() {
				return fmt.Errorf("instance %d: %s replayed %d times (at %v), want 1", i, x.ID, r.Replays, r.LastReplayAt)
			}
		}
		return nil
	})
	for i, api := range apis {
		if got := dlqIDs(api); len(got) != len(bad)-1 {
			t.Errorf("instance %d lists %d dead letters at the end, want %d", i, len(got), len(bad)-1)
		}
	}

	// Instance 0 paused: the others' group view says so, and requests to its partitions
	// are its lag and the group's.
	apis[0].json("POST", "/api/v1/pipeline/pause", nil, 200, nil)
	var waiting []*kgo.Record
	for p, name := range owner {
		if name == "infergate-0" {
			waiting = append(waiting, &kgo.Record{Partition: p, Value: requestValue(fmt.Sprintf("wait-%d", p), features(16, 0.1))})
		}
	}
	produce(t, cl, waiting...)
	for i := 1; i < 3; i++ {
		testutil.Eventually(t, 30*time.Second, func() error {
			g, err := groupOf(apis[i])
			if err != nil {
				return err
			}
			m := memberOf(g, "infergate-0")
			switch {
			case m == nil:
				return fmt.Errorf("instance %d: no member infergate-0 in %+v", i, g)
			case m.State != web.StatePaused || !m.Paused || m.LastHeartbeat.IsZero():
				return fmt.Errorf("instance %d: infergate-0 is %q (paused %t, heartbeat %v)", i, m.State, m.Paused, m.LastHeartbeat)
			case m.Lag != int64(len(waiting)) || g.TotalLag != m.Lag:
				return fmt.Errorf("instance %d: infergate-0's lag %d, total %d, want %d", i, m.Lag, g.TotalLag, len(waiting))
			}
			if self := memberOf(g, fmt.Sprintf("infergate-%d", i)); self == nil || !self.Self || self.State != web.StateOK {
				return fmt.Errorf("instance %d: itself %+v", i, self)
			}
			return nil
		})
	}
	apis[0].json("POST", "/api/v1/pipeline/resume", nil, 200, nil)
	testutil.Eventually(t, 30*time.Second, func() error {
		g, err := groupOf(apis[1])
		if err != nil {
			return err
		}
		if m := memberOf(g, "infergate-0"); m == nil || m.State != web.StateOK || g.TotalLag != 0 {
			return fmt.Errorf("after resume: infergate-0 %+v, total lag %d", m, g.TotalLag)
		}
		return nil
	})

	// An instance started now reads both topics from their start: it lists the group's dead
	// letters without the deleted one (a tombstone from the control topic), the replayed one
	// with its replay, whichever of the two topics it happens to read first.
	c := testConfig(t)
	c.Broker.Mode = BrokerExternal
	c.Broker.Brokers = as[0].Config().Broker.Brokers
	c.Topics.Partitions = partitions
	c.Pipeline.InstanceID = "infergate-3"
	late := newAPIClient(t, start(t, c))
	want := slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return id == gone })
	testutil.Eventually(t, time.Minute, func() error {
		if got := dlqIDs(late); !slices.Equal(got, want) {
			return fmt.Errorf("the late instance lists %v, want %v", got, want)
		}
		var r web.RecordView
		late.json("GET", "/api/v1/dlq/"+x.ID, nil, 200, &r)
		if r.Replays != 1 {
			return fmt.Errorf("the late instance: %s replayed %d times, want 1", x.ID, r.Replays)
		}
		return nil
	})
}
