package main

// Many instances, one group (issue 13): three `infergate run` subprocesses
// attached to a three-broker kfake cluster (in this test process, with a
// data dir), one of them killed with SIGKILL mid-stream and restarted.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/infergate/infergate/appliance"
	"github.com/infergate/infergate/inference/demo"
	"github.com/infergate/infergate/internal/testutil"
)

const groupPartitions = 6

// groupCluster is a three-broker kfake cluster with a data dir and the
// appliance's topics; it returns the seed brokers.
func groupCluster(t *testing.T) []string {
	t.Helper()
	c := testutil.Cluster(t, groupPartitions, []string{requestsTopic, resultsTopic, dlqTopic},
		kfake.NumBrokers(3), kfake.DataDir(t.TempDir()))
	return c.ListenAddrs()
}

// member is one instance of the group: its data dir and static member id
// survive a kill and a restart.
type member struct {
	id      string
	dataDir string
	args    []string
	p       *proc
}

func newMember(t *testing.T, brokers []string, n int, extra ...string) *member {
	m := &member{id: fmt.Sprintf("infergate-%d", n), dataDir: filepath.Join(t.TempDir(), "data")}
	m.args = append([]string{"run",
		"--data-dir", m.dataDir,
		"--broker", "external", "--brokers", strings.Join(brokers, ","),
		"--grpc-listen", "127.0.0.1:0", "--rest-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
		"--topic-partitions", strconv.Itoa(groupPartitions),
		"--instance-id", m.id,
	}, extra...)
	return m
}

// start runs the member's process until the test ends and waits for "ready".
func (m *member) start(t *testing.T) {
	t.Helper()
	m.p = startProcess(t, m.args)
}

// startProcess runs `infergate` with args and waits until it logs that it is
// ready (startAppliance's harness without the embedded-broker flags).
func startProcess(t *testing.T, args []string) *proc {
	t.Helper()
	a := spawnProcess(t, args)
	testutil.WaitFor(t, 2*time.Minute, "infergate is ready", func() bool {
		select {
		case <-a.done:
			t.Fatalf("infergate exited during start (%v):\n%s", a.waitErr, a.logs.String())
		default:
		}
		return strings.Contains(a.logs.String(), "infergate is ready")
	})
	return a
}

// spawnProcess runs `infergate` with args until the test ends, without
// waiting for it to be ready.
func spawnProcess(t *testing.T, args []string) *proc {
	t.Helper()
	a := &proc{t: t, logs: &syncBuffer{}, done: make(chan struct{}), args: args}
	a.cmd = exec.Command(binary, args...)
	a.cmd.Dir = t.TempDir() // no ./infergate.yaml from the repository
	a.cmd.Env = cleanEnv()
	a.cmd.Stdout, a.cmd.Stderr = a.logs, a.logs
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { a.waitErr = a.cmd.Wait(); close(a.done) }()
	t.Cleanup(func() {
		a.kill()
		if t.Failed() {
			t.Logf("logs of %s:\n%s", strings.Join(args, " "), tail(a.logs.String(), 80))
		}
	})
	return a
}

// pacedProducer sends requests r-<i> at a fixed rate (open loop) with keys,
// and remembers which ones the cluster acknowledged.
type pacedProducer struct {
	mu    sync.Mutex
	acked []string
	sent  int
	stop  chan struct{}
	done  chan struct{}
}

func startPacedProducer(t *testing.T, brokers []string, perSecond int) *pacedProducer {
	t.Helper()
	cl := testutil.Client(t, brokers, kgo.DefaultProduceTopic(requestsTopic))
	p := &pacedProducer{stop: make(chan struct{}), done: make(chan struct{})}
	gen := demo.NewGenerator(13)
	var wg sync.WaitGroup
	go func() {
		defer close(p.done)
		defer wg.Wait()
		tick := time.NewTicker(time.Second / time.Duration(perSecond))
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			features, _ := gen.Reading()
			id := fmt.Sprintf("r-%d", i)
			v, _ := json.Marshal(map[string]any{"request_id": id, "features": features})
			p.mu.Lock()
			p.sent++
			p.mu.Unlock()
			wg.Add(1)
			cl.Produce(context.Background(), &kgo.Record{Key: []byte(id), Value: v}, func(_ *kgo.Record, err error) {
				defer wg.Done()
				if err == nil {
					p.mu.Lock()
					p.acked = append(p.acked, id)
					p.mu.Unlock()
				}
			})
		}
	}()
	return p
}

func (p *pacedProducer) finish() (acked []string, sent int) {
	close(p.stop)
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.acked...), p.sent
}

// assignment is the group's current owner (instance id) of each requests
// partition, and the group's generation.
func assignment(t *testing.T, adm *kadm.Client, group string) (owners map[int32]string, members int, state string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	gs, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		return nil, 0, err.Error()
	}
	g := gs[group]
	owners = map[int32]string{}
	for _, m := range g.Members {
		ca, ok := m.Assigned.AsConsumer()
		if !ok {
			continue
		}
		id := m.MemberID
		if m.InstanceID != nil {
			id = *m.InstanceID
		}
		for _, tp := range ca.Topics {
			if tp.Topic == requestsTopic {
				for _, pt := range tp.Partitions {
					owners[pt] = id
				}
			}
		}
	}
	return owners, len(g.Members), g.State
}

func partitionsOf(owners map[int32]string, id string) []int32 {
	var ps []int32
	for p, o := range owners {
		if o == id {
			ps = append(ps, p)
		}
	}
	slices.Sort(ps)
	return ps
}

// TestGroupKillOneOfThree: three instances (static members) share the
// requests topic of a three-broker cluster. One is killed with SIGKILL while
// requests flow at a fixed rate and restarted 2 s later on the same data dir
// and instance id. It takes the same partitions back, nothing acknowledged
// is lost, no instance exits, and in exactly-once mode a read_committed
// consumer sees every result once; at-least-once duplicates are counted.
// The times the test logs (resume after restart, longest gap in the healthy
// members' results) are the figures of docs/scaling.md.
func TestGroupKillOneOfThree(t *testing.T) {
	for _, mode := range []string{"at-least-once", "exactly-once"} {
		t.Run(mode, func(t *testing.T) { groupKillOneOfThree(t, mode) })
	}
}

func groupKillOneOfThree(t *testing.T, mode string) {
	brokers := groupCluster(t)
	adm := kadm.NewClient(testutil.Client(t, brokers))
	var ms []*member
	for i := range 3 {
		m := newMember(t, brokers, i, "--delivery", mode)
		m.start(t)
		ms = append(ms, m)
	}
	var before map[int32]string
	testutil.Eventually(t, time.Minute, func() error {
		owners, n, state := assignment(t, adm, "infergate")
		if n != 3 || len(owners) != groupPartitions || state != "Stable" {
			return fmt.Errorf("group: %d members, %d partitions assigned, state %s", n, len(owners), state)
		}
		for _, m := range ms {
			if len(partitionsOf(owners, m.id)) == 0 {
				return fmt.Errorf("%s owns no partition: %v", m.id, owners)
			}
		}
		before = owners
		return nil
	})
	t.Logf("assignment: %v", before)

	const rate = 150
	prod := startPacedProducer(t, brokers, rate)
	firstResults(t, brokers, 300)
	// A window as long as the one measured after the kill, with nothing
	// happening: the longest gap between results there is what the request
	// keys' spread over the partitions gives by itself (requests are keyed by
	// unique ids, so each partition's arrivals are irregular), the yardstick
	// for the gap around the kill.
	baselineFrom := time.Now()
	time.Sleep(gapWindow)

	victim := ms[2]
	victimParts := partitionsOf(before, victim.id)
	victim.p.kill()
	killedAt := time.Now()
	time.Sleep(2 * time.Second) // the instance is down; systemd or Kubernetes restarts it
	restartAt := time.Now()
	victim.start(t)
	readyAfter := time.Since(restartAt)

	// Its partitions resume: their committed offsets pass the end offsets
	// they had when the process started again.
	ends := endOffsets(t, adm, victimParts)
	var resumedAfter time.Duration
	testutil.Eventually(t, 2*time.Minute, func() error {
		committed := committedOffsets(t, adm)
		for _, p := range victimParts {
			if committed[p] < ends[p] {
				return fmt.Errorf("partition %d: committed %d, end at restart %d", p, committed[p], ends[p])
			}
		}
		resumedAfter = time.Since(restartAt)
		return nil
	})
	after, n, _ := assignment(t, adm, "infergate")
	if n != 3 || !slices.Equal(partitionsOf(after, victim.id), victimParts) {
		t.Errorf("after the restart: %d members, %s owns %v, owned %v before (assignment %v)",
			n, victim.id, partitionsOf(after, victim.id), victimParts, after)
	}

	time.Sleep(time.Until(killedAt.Add(gapWindow))) // requests flow through the whole window watched for gaps
	acked, sent := prod.finish()
	counts := collectResults(t, brokers, acked)
	for _, m := range ms {
		select {
		case <-m.p.done:
			t.Errorf("%s exited: %v\n%s", m.id, m.p.waitErr, tail(m.p.logs.String(), 40))
		default:
		}
	}
	lost, dups := lostAndDuplicates(acked, counts)
	if lost > 0 {
		t.Errorf("%d of %d acknowledged requests have no result", lost, len(acked))
	}
	if mode == "exactly-once" && dups > 0 {
		t.Errorf("exactly-once: %d duplicate results read_committed", dups)
	}
	// At-least-once redelivers what the killed instance had consumed but
	// not committed: bounded by its share of the requests sent while it
	// was down, far below everything.
	if dups > len(acked)/3 {
		t.Errorf("%d duplicates of %d requests", dups, len(acked))
	}
	baseline := longestGap(t, brokers, victimParts, baselineFrom, killedAt)
	gap := longestGap(t, brokers, victimParts, killedAt, killedAt.Add(gapWindow))
	t.Logf("%s: sent %d, acknowledged %d, lost %d, duplicates %d; killed %s owning %v; restarted process ready after %s, "+
		"its partitions caught up %s after the restart; longest gap between results on the other members' partitions "+
		"in the %s after the kill: %s (in the %s before it: %s)",
		mode, sent, len(acked), lost, dups, victim.id, victimParts, readyAfter.Round(10*time.Millisecond),
		resumedAfter.Round(10*time.Millisecond), gapWindow, gap.Round(time.Millisecond), killedAt.Sub(baselineFrom).Round(time.Second),
		baseline.Round(time.Millisecond))
}

// gapWindow is how long the results of the members that were not killed
// are watched for gaps, after the kill and, as the yardstick, before it.
const gapWindow = 10 * time.Second

// firstResults waits until n results are in the results topic.
func firstResults(t *testing.T, brokers []string, n int) {
	t.Helper()
	cl := testutil.Client(t, brokers, kgo.ConsumeTopics(resultsTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	got := 0
	testutil.WaitFor(t, 2*time.Minute, fmt.Sprintf("%d results", n), func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		got += cl.PollFetches(ctx).NumRecords()
		return got >= n
	})
}

func endOffsets(t *testing.T, adm *kadm.Client, parts []int32) map[int32]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lo, err := adm.ListEndOffsets(ctx, requestsTopic)
	if err != nil {
		t.Fatal(err)
	}
	ends := map[int32]int64{}
	for _, p := range parts {
		o, _ := lo.Lookup(requestsTopic, p)
		ends[p] = o.Offset
	}
	return ends
}

func committedOffsets(t *testing.T, adm *kadm.Client) map[int32]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := adm.FetchOffsets(ctx, "infergate")
	if err != nil {
		return nil
	}
	out := map[int32]int64{}
	resp.Each(func(o kadm.OffsetResponse) {
		if o.Topic == requestsTopic && o.Err == nil {
			out[o.Partition] = o.At
		}
	})
	return out
}

// collectResults reads the results topic read_committed until every acked
// request has a result and nothing new arrived for 3 s, counting results per
// request id.
// lostAndDuplicates counts the acknowledged requests with no result and
// the results beyond the first of each.
func lostAndDuplicates(acked []string, counts map[string]int) (lost, dups int) {
	for _, id := range acked {
		switch c := counts[id]; {
		case c == 0:
			lost++
		case c > 1:
			dups += c - 1
		}
	}
	return lost, dups
}

// startStableGroup starts three members (newMember's args) and waits until
// the group is Stable with every partition assigned.
func startStableGroup(t *testing.T, brokers []string, adm *kadm.Client, args ...string) []*member {
	t.Helper()
	var ms []*member
	for i := range 3 {
		m := newMember(t, brokers, i, args...)
		m.start(t)
		ms = append(ms, m)
	}
	testutil.Eventually(t, time.Minute, func() error {
		owners, n, state := assignment(t, adm, "infergate")
		if n != 3 || len(owners) != groupPartitions || state != "Stable" {
			return fmt.Errorf("group: %d members, %d partitions assigned, state %s", n, len(owners), state)
		}
		return nil
	})
	return ms
}

func collectResults(t *testing.T, brokers []string, acked []string) map[string]int {
	t.Helper()
	cl := testutil.Client(t, brokers, kgo.ConsumeTopics(resultsTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	counts := map[string]int{}
	missing := len(acked)
	quietSince := time.Now()
	deadline := time.Now().Add(3 * time.Minute)
	for missing > 0 || time.Since(quietSince) < 3*time.Second {
		if time.Now().After(deadline) {
			t.Errorf("after 3m: %d of %d acknowledged requests without a result", missing, len(acked))
			break
		}
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		fs := cl.PollFetches(ctx)
		cancel()
		if fs.NumRecords() > 0 {
			quietSince = time.Now()
		}
		fs.EachRecord(func(r *kgo.Record) {
			var res result
			if err := json.Unmarshal(r.Value, &res); err == nil {
				counts[res.RequestID]++
			}
		})
		missing = 0
		for _, id := range acked {
			if counts[id] == 0 {
				missing++
			}
		}
	}
	return counts
}

// longestGap is the longest time between consecutive results (by record
// timestamp) on the results partitions not in skip, between from and until:
// how long the members that were not killed stalled, if at all.
func longestGap(t *testing.T, brokers []string, skip []int32, from, until time.Time) time.Duration {
	t.Helper()
	cl := testutil.Client(t, brokers, kgo.ConsumeTopics(resultsTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	stamps := map[int32][]time.Time{}
	for idle := 0; idle < 3; {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		fs := cl.PollFetches(ctx)
		cancel()
		if fs.NumRecords() == 0 {
			idle++
		}
		fs.EachRecord(func(r *kgo.Record) {
			if !slices.Contains(skip, r.Partition) && r.Timestamp.After(from) && r.Timestamp.Before(until) {
				stamps[r.Partition] = append(stamps[r.Partition], r.Timestamp)
			}
		})
	}
	var gap time.Duration
	for _, ts := range stamps {
		sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
		for i := 1; i < len(ts); i++ {
			gap = max(gap, ts[i].Sub(ts[i-1]))
		}
	}
	return gap
}

// get fetches url and returns the status code and body ("" on error).
func get(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// lagPartitions are the requests partitions whose infergate_consumer_lag
// an instance's /metrics exports, and the group label they carry.
func lagPartitions(t *testing.T, adminURL string) (parts []int32, groups []string) {
	t.Helper()
	_, body := get(adminURL + "/metrics")
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, "infergate_consumer_lag{") {
			continue
		}
		labels := line[strings.Index(line, "{")+1 : strings.Index(line, "}")]
		for _, kv := range strings.Split(labels, ",") {
			k, v, _ := strings.Cut(kv, "=")
			v = strings.Trim(v, `"`)
			switch k {
			case "partition":
				n, _ := strconv.Atoi(v)
				parts = append(parts, int32(n))
			case "group":
				groups = append(groups, v)
			}
		}
	}
	slices.Sort(parts)
	return parts, groups
}

// TestGroupHealthAndOwnerLag: three instances attached to a three-broker
// cluster. Each exports on /metrics the lag of the partitions it owns, with
// the group label, so a sum over the three counts each partition once. When
// every broker is down for 10 s, each instance's /readyz answers 503 with the
// reason; after the brokers return they are ready again and requests sent
// since get their results.
func TestGroupHealthAndOwnerLag(t *testing.T) {
	ports := []int{freePort(t), freePort(t), freePort(t)}
	dir := t.TempDir()
	opts := []kfake.Opt{kfake.NumBrokers(3), kfake.Ports(ports...), kfake.DataDir(dir),
		kfake.SeedTopics(groupPartitions, requestsTopic, resultsTopic, dlqTopic)}
	cluster, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cluster.Close() })
	brokers := cluster.ListenAddrs()
	adm := kadm.NewClient(testutil.Client(t, brokers))

	var ms []*member
	var urls []string
	for i := range 3 {
		m := newMember(t, brokers, i)
		m.start(t)
		ms = append(ms, m)
		u, err := appliance.ReadAdminURL(m.dataDir)
		if err != nil {
			t.Fatal(err)
		}
		urls = append(urls, u)
	}
	testutil.Eventually(t, time.Minute, func() error {
		owners, n, state := assignment(t, adm, "infergate")
		if n != 3 || len(owners) != groupPartitions || state != "Stable" {
			return fmt.Errorf("group: %d members, %d partitions assigned, state %s", n, len(owners), state)
		}
		var all []int32
		for i, m := range ms {
			parts, groups := lagPartitions(t, urls[i])
			if want := partitionsOf(owners, m.id); !slices.Equal(parts, want) {
				return fmt.Errorf("%s exports the lag of partitions %v, owns %v", m.id, parts, want)
			}
			for _, g := range groups {
				if g != "infergate" {
					return fmt.Errorf("%s: lag labelled group=%q", m.id, g)
				}
			}
			all = append(all, parts...)
		}
		if slices.Sort(all); len(all) != groupPartitions {
			return fmt.Errorf("the three export partitions %v together", all)
		}
		return nil
	})

	// Requests flow before, during and after the outage: the producer keeps
	// what it could not send and retries; everything acknowledged, before
	// the stop or after the return, must get its result.
	prod := startPacedProducer(t, brokers, 100)
	firstResults(t, brokers, 200)

	// Every broker down.
	cluster.Close()
	downAt := time.Now()
	for i, u := range urls {
		testutil.Eventually(t, time.Minute, func() error {
			code, body := get(u + "/readyz")
			if code != http.StatusServiceUnavailable || !strings.Contains(body, "broker unreachable") {
				return fmt.Errorf("%s /readyz: %d %s", ms[i].id, code, body)
			}
			// The status API says so too, with the member's identity.
			st := apiStatus(t, u, ms[i].dataDir)
			if st.Broker.State != "down" || !strings.Contains(st.Member.NotReady, "broker unreachable") ||
				st.Member.InstanceID != ms[i].id || st.Member.MemberID == "" {
				return fmt.Errorf("%s status: broker %+v member %+v", ms[i].id, st.Broker, st.Member)
			}
			return nil
		})
	}
	t.Logf("all three instances unready (broker unreachable) %s after the brokers stopped", time.Since(downAt).Round(100*time.Millisecond))
	time.Sleep(time.Until(downAt.Add(10 * time.Second))) // the outage lasts 10 s
	cluster, err = kfake.NewCluster(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cluster.Close() })
	upAt := time.Now()
	for i, u := range urls {
		testutil.Eventually(t, 2*time.Minute, func() error {
			if code, body := get(u + "/readyz"); code != http.StatusOK {
				return fmt.Errorf("%s /readyz: %d %s", ms[i].id, code, body)
			}
			return nil
		})
	}
	t.Logf("all three ready again %s after the brokers returned", time.Since(upAt).Round(100*time.Millisecond))
	time.Sleep(5 * time.Second) // requests flow a while through the recovered cluster
	acked, sent := prod.finish()
	counts := collectResults(t, brokers, acked)
	lost, dups := lostAndDuplicates(acked, counts)
	if lost > 0 {
		t.Errorf("%d of %d acknowledged requests (sent before, during and after the outage) have no result", lost, len(acked))
	}
	t.Logf("sent %d, acknowledged %d, lost %d, duplicates %d", sent, len(acked), lost, dups)
	for _, m := range ms {
		select {
		case <-m.p.done:
			t.Errorf("%s exited: %v", m.id, m.p.waitErr)
		default:
		}
	}
}

// apiStatus is GET /api/v1/status of the instance on dataDir.
func apiStatus(t *testing.T, adminURL, dataDir string) (st struct {
	Broker struct{ State, Detail string }
	Member struct {
		MemberID   string `json:"member_id"`
		InstanceID string `json:"instance_id"`
		NotReady   string `json:"not_ready"`
	}
}) {
	t.Helper()
	tok, err := appliance.ReadAdminToken(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, adminURL+"/api/v1/status", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st
	}
	defer resp.Body.Close()
	_ = json.NewDecoder(resp.Body).Decode(&st)
	return st
}
