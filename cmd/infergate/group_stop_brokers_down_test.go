package main

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// TestStopWhileBrokersDown: an attached instance stopped (SIGTERM) while no
// broker of its cluster answers, with requests in flight, exits 0 without
// waiting for the brokers: what it has not committed is redelivered, an open
// transaction is aborted by the broker (or fenced by the restarted
// producer). Both delivery modes; the time to exit is logged.
func TestStopWhileBrokersDown(t *testing.T) {
	for _, mode := range []string{"at-least-once", "exactly-once"} {
		t.Run(mode, func(t *testing.T) {
			ports := []int{freePort(t), freePort(t), freePort(t)}
			cluster, err := kfake.NewCluster(kfake.NumBrokers(3), kfake.Ports(ports...), kfake.DataDir(t.TempDir()),
				kfake.SeedTopics(groupPartitions, requestsTopic, resultsTopic, dlqTopic))
			if err != nil {
				t.Fatal(err)
			}
			brokers := cluster.ListenAddrs()
			m := newMember(t, brokers, 0, "--delivery", mode)
			m.start(t)
			prod := startPacedProducer(t, brokers, 150)
			firstResults(t, brokers, 150)
			cluster.Close()
			time.Sleep(time.Second) // in-flight outputs and commits now fail
			termAt := time.Now()
			_ = m.p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-m.p.done:
			case <-time.After(2 * time.Minute):
				t.Fatalf("did not exit within 2 minutes of SIGTERM:\n%s", tail(m.p.logs.String(), 30))
			}
			exitAfter := time.Since(termAt)
			close(prod.stop)
			if m.p.waitErr != nil {
				t.Errorf("exit %v after SIGTERM:\n%s", m.p.waitErr, tail(m.p.logs.String(), 30))
			}
			var warns []string
			for _, l := range strings.Split(m.p.logs.String(), "\n") {
				if strings.Contains(l, "level=WARN") && strings.Contains(l, "component=pipeline") {
					warns = append(warns, l)
				}
			}
			t.Logf("%s: exited (%v) %s after SIGTERM with every broker down; pipeline warnings:\n%s", mode, m.p.waitErr,
				exitAfter.Round(10*time.Millisecond), fmt.Sprint(strings.Join(tail2(warns, 6), "\n")))
		})
	}
}

func tail2(s []string, n int) []string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
