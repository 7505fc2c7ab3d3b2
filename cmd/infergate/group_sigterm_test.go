package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/infergate/infergate/appliance"
	"github.com/infergate/infergate/internal/testutil"
)

// TestGroupSigtermDuringStuckRebalance: three static members share the
// requests topic of a three-broker cluster while requests flow. One is
// killed with SIGKILL and a fourth instance joins at once, so the group
// rebalances and waits for the dead member until its session times out
// (pipeline.session_timeout). A SIGTERM to a healthy member during that wait
// must not wait with it: the member drains and exits 0 well before the
// rebalance ends (the table: 28 s), and nothing acknowledged is lost;
// in exactly-once mode no result is seen twice read_committed. The time to
// exit is a figure of docs/scaling.md.
func TestGroupSigtermDuringStuckRebalance(t *testing.T) {
	for _, mode := range []string{"at-least-once", "exactly-once"} {
		t.Run(mode, func(t *testing.T) { groupSigtermDuringStuckRebalance(t, mode) })
	}
}

func groupSigtermDuringStuckRebalance(t *testing.T, mode string) {
	brokers := groupCluster(t)
	adm := kadm.NewClient(testutil.Client(t, brokers))
	ms := startStableGroup(t, brokers, adm, "--delivery", mode)
	prod := startPacedProducer(t, brokers, 150)
	firstResults(t, brokers, 300)

	// One member dies; a new one joins before the group noticed. The
	// rebalance the join starts waits for the dead member to rejoin, which
	// it never does: the group stays in PreparingRebalance until the dead
	// member's session times out.
	ms[2].p.kill()
	killedAt := time.Now()
	joiner := newMember(t, brokers, 3, "--delivery", mode)
	joiner.p = spawnProcess(t, joiner.args)
	testutil.Eventually(t, time.Minute, func() error {
		if _, _, state := assignment(t, adm, "infergate"); state != "PreparingRebalance" {
			return fmt.Errorf("group state %s", state)
		}
		return nil
	})
	// The survivors learn of the rebalance from their next heartbeat
	// (pipeline.heartbeat_interval, 2 s) and then wait in it.
	time.Sleep(3 * time.Second)

	victim := ms[0]
	termAt := time.Now()
	_ = victim.p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-victim.p.done:
	case <-time.After(time.Minute):
		t.Fatalf("%s did not exit within a minute of SIGTERM", victim.id)
	}
	exitAfter := time.Since(termAt)
	if victim.p.waitErr != nil {
		t.Errorf("%s exited with %v after SIGTERM:\n%s", victim.id, victim.p.waitErr, tail(victim.p.logs.String(), 40))
	}
	// It did not wait for the dead member: the rebalance is still going on.
	// And it left the group, so the rebalance does not wait for it too.
	if _, _, state := assignment(t, adm, "infergate"); state == "Stable" {
		t.Errorf("%s exited %s after SIGTERM, when the group was stable again: it waited for the rebalance", victim.id, exitAfter)
	}
	if ids := memberIDs(t, adm, "infergate"); slices.Contains(ids, victim.id) {
		t.Errorf("%s exited and is still a member of the group: %v", victim.id, ids)
	}

	// A survivor says why it cannot make progress while the rebalance waits:
	// nothing it does is committed meanwhile.
	survivorURL, err := appliance.ReadAdminURL(ms[1].dataDir)
	if err != nil {
		t.Fatal(err)
	}
	var heldUp string
	testutil.Eventually(t, 30*time.Second, func() error {
		code, body := get(survivorURL + "/readyz")
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "held up") {
			return fmt.Errorf("%s /readyz: %d %s", ms[1].id, code, body)
		}
		heldUp = fmt.Sprintf("%s after the kill: %s", time.Since(killedAt).Round(100*time.Millisecond), body)
		return nil
	})

	// The group settles without the two that are gone (each static member's
	// session times out), and every request gets its result.
	testutil.Eventually(t, 2*time.Minute, func() error {
		owners, n, state := assignment(t, adm, "infergate")
		if n != 2 || len(owners) != groupPartitions || state != "Stable" {
			return fmt.Errorf("group: %d members, %d partitions assigned, state %s", n, len(owners), state)
		}
		return nil
	})
	settledAfter := time.Since(killedAt)
	testutil.Eventually(t, time.Minute, func() error {
		if code, body := get(survivorURL + "/readyz"); code != http.StatusOK {
			return fmt.Errorf("%s /readyz: %d %s", ms[1].id, code, body)
		}
		return nil
	})
	time.Sleep(3 * time.Second) // requests flow a moment through the settled group
	acked, sent := prod.finish()
	counts := collectResults(t, brokers, acked)
	lost, dups := lostAndDuplicates(acked, counts)
	if lost > 0 {
		t.Errorf("%d of %d acknowledged requests have no result", lost, len(acked))
	}
	if mode == "exactly-once" && dups > 0 {
		t.Errorf("exactly-once: %d duplicate results read_committed", dups)
	}
	// At-least-once redelivers what the stopped member produced while its
	// commits waited for the rebalance: a share of a few seconds' requests.
	if dups > len(acked)/3 {
		t.Errorf("%d duplicates of %d requests", dups, len(acked))
	}
	for _, m := range []*member{ms[1], joiner} {
		select {
		case <-m.p.done:
			t.Errorf("%s exited: %v\n%s", m.id, m.p.waitErr, tail(m.p.logs.String(), 40))
		default:
		}
	}
	t.Logf("%s: a survivor unready %s", mode, heldUp)
	t.Logf("%s: SIGTERM %s after the kill, during the rebalance; exited (%v) %s after SIGTERM, "+
		"group stable again %s after the kill; sent %d, acknowledged %d, lost %d, duplicates %d",
		mode, termAt.Sub(killedAt).Round(100*time.Millisecond), victim.p.waitErr, exitAfter.Round(10*time.Millisecond),
		settledAfter.Round(100*time.Millisecond), sent, len(acked), lost, dups)
}

// memberIDs are the instance ids (else member ids) of the group's members.
func memberIDs(t *testing.T, adm *kadm.Client, group string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	gs, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range gs[group].Members {
		id := m.MemberID
		if m.InstanceID != nil {
			id = *m.InstanceID
		}
		ids = append(ids, id)
	}
	return ids
}

// TestGroupInstanceIDInUse: a second instance started with the
// pipeline.instance_id of a running one (another data dir) refuses to start,
// naming the setting, instead of fencing the running instance out of the
// group; the running one keeps its membership. Its own restart on the same
// data dir is let through (TestGroupKillOneOfThree).
func TestGroupInstanceIDInUse(t *testing.T) {
	brokers := groupCluster(t)
	adm := kadm.NewClient(testutil.Client(t, brokers))
	first := newMember(t, brokers, 0)
	first.start(t)
	testutil.Eventually(t, time.Minute, func() error {
		if owners, n, state := assignment(t, adm, "infergate"); n != 1 || len(owners) != groupPartitions || state != "Stable" {
			return fmt.Errorf("group: %d members, %d partitions assigned, state %s", n, len(owners), state)
		}
		return nil
	})

	second := newMember(t, brokers, 0) // same instance id, its own data dir
	second.p = spawnProcess(t, second.args)
	select {
	case <-second.p.done:
	case <-time.After(time.Minute):
		t.Fatalf("the second instance with instance id %s did not exit:\n%s", second.id, tail(second.p.logs.String(), 40))
	}
	logs := second.p.logs.String()
	if second.p.waitErr == nil || !strings.Contains(logs, "pipeline.instance_id (--instance-id, INFERGATE_PIPELINE_INSTANCE_ID)") ||
		!strings.Contains(logs, `"infergate-0" is already used by a member of consumer group "infergate"`) {
		t.Errorf("second instance: exit %v, logs:\n%s", second.p.waitErr, tail(logs, 20))
	}
	// The first is still the member, and was not fenced.
	time.Sleep(3 * time.Second) // a heartbeat interval and more: a fence would have reached it
	select {
	case <-first.p.done:
		t.Fatalf("the running instance exited: %v\n%s", first.p.waitErr, tail(first.p.logs.String(), 30))
	default:
	}
	if ids := memberIDs(t, adm, "infergate"); !slices.Equal(ids, []string{first.id}) {
		t.Errorf("group members %v, want [%s]", ids, first.id)
	}
	t.Logf("refused: %s", lineWith(logs, "already used"))
}

// lineWith is the first line of s containing sub.
func lineWith(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return l
		}
	}
	return ""
}
