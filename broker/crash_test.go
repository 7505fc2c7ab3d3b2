package broker

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/infergate/infergate/internal/testutil"
)

// The test binary re-executes itself as a child broker process when this
// variable names a child mode, so a test can SIGKILL a real broker.
const childEnv = "INFERGATE_BROKER_TEST_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		if err := runChild(mode); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func runChild(mode string) error {
	switch mode {
	case "produce":
		return childProduce(os.Getenv(childEnv+"_DIR"), Durability(os.Getenv(childEnv+"_DURABILITY")))
	case "measure-fill", "measure-open":
		return childMeasure(mode)
	}
	return fmt.Errorf("unknown child mode %q", mode)
}

const crashCommitted = 5

// childProduce runs a broker, commits a group offset, then produces until it
// is killed, printing "acked N" after each acknowledged batch: every record
// below N was acknowledged.
func childProduce(dir string, d Durability) error {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	e, err := NewEmbedded(EmbeddedConfig{DataDir: dir, Listen: "127.0.0.1:0", Durability: d}, logger)
	if err != nil {
		return err
	}
	ctx := context.Background()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.Addr()), kgo.ProducerLinger(0))
	if err != nil {
		return err
	}
	adm := kadm.NewClient(cl)
	if err := EnsureTopics(ctx, adm, TopicSpec{Name: "req", Partitions: 3}); err != nil {
		return err
	}
	offs := make(kadm.Offsets)
	for p := range int32(3) {
		offs.Add(kadm.Offset{Topic: "req", Partition: p, At: crashCommitted, LeaderEpoch: -1})
	}
	if resp, err := adm.CommitOffsets(ctx, "g", offs); err != nil || resp.Error() != nil {
		return fmt.Errorf("commit: %v %v", err, resp.Error())
	}
	fmt.Println("committed")
	for n := 0; ; n += 50 {
		recs := make([]*kgo.Record, 50)
		for i := range recs {
			recs[i] = &kgo.Record{Topic: "req", Key: []byte(strconv.Itoa(n + i)), Value: []byte("v" + strconv.Itoa(n+i))}
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			return err
		}
		fmt.Printf("acked %d\n", n+50)
	}
}

// TestSIGKILLKeepsAcknowledgedRecords kills a producing broker process with
// SIGKILL and restarts on its data dir: every acknowledged record and the
// committed group offsets must be there, with either durability setting (the
// page cache survives the death of a process; fsync matters for power loss).
func TestSIGKILLKeepsAcknowledgedRecords(t *testing.T) {
	for _, d := range []Durability{DurabilityOS, DurabilityFsync} {
		t.Run(string(d), func(t *testing.T) {
			dir := t.TempDir()
			acked := runAndKill(t, dir, d, 3000)
			t.Logf("child acknowledged %d records before SIGKILL", acked)

			start := time.Now()
			e := startEmbedded(t, dir, d)
			t.Logf("restart after SIGKILL took %s", time.Since(start))
			adm := newAdmin(t, e.Addr())
			sum, _ := endOffsets(t, adm, "req")
			if sum < int64(acked) {
				t.Fatalf("after SIGKILL the topic holds %d records, %d were acknowledged", sum, acked)
			}
			fetched, err := adm.FetchOffsets(testCtx(t), "g")
			if err != nil {
				t.Fatal(err)
			}
			for p := range int32(3) {
				if o, ok := fetched.Lookup("req", p); !ok || o.At != crashCommitted {
					t.Fatalf("committed offset of req/%d after SIGKILL: %+v, want %d", p, o, crashCommitted)
				}
			}
			cons := newClient(t, e.Addr(), kgo.ConsumeTopics("req"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
			seen := make(map[string]bool, sum)
			for _, r := range pollUntil(t, cons, int(sum)) {
				seen[string(r.Value)] = true
			}
			for i := range acked {
				if !seen["v"+strconv.Itoa(i)] {
					t.Fatalf("acknowledged record v%d lost", i)
				}
			}
			// The broker keeps working on the recovered data.
			produceValues(t, newClient(t, e.Addr()), "req", acked+1_000_000, acked+1_000_010)
		})
	}
}

// runAndKill starts the producing child and SIGKILLs it once at least min
// records were acknowledged; it returns the last acknowledged count it read.
func runAndKill(t *testing.T, dir string, d Durability, min int) int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=produce", childEnv+"_DIR="+dir, childEnv+"_DURABILITY="+string(d))
	cmd.Stderr = testutil.Writer(t)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	t.Cleanup(func() {
		if !killed {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	deadline := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
	defer deadline.Stop()
	acked := 0
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if n, ok := strings.CutPrefix(sc.Text(), "acked "); ok {
			acked, _ = strconv.Atoi(n)
			if acked >= min {
				break
			}
		}
	}
	if acked < min {
		t.Fatalf("child stopped after %d acknowledged records: %v", acked, sc.Err())
	}
	// SIGKILL while the child keeps producing: no chance to flush or close.
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed = true
	go func() { _, _ = bufio.NewReader(out).WriteTo(discard{}) }()
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != -1 {
		t.Fatalf("child did not die by the signal: %v", err)
	}
	return acked
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
