//go:build unix

package store

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/infergate/infergate/internal/testutil"
)

// TestSurvivesSIGKILL puts records in a child process, kills it with SIGKILL without Close,
// and checks every record whose Put returned is there after reopening: without SyncWrites a
// commit is in the OS page cache, which a process crash does not lose.
func TestSurvivesSIGKILL(t *testing.T) {
	if dir := os.Getenv("STORE_CRASH_CHILD"); dir != "" {
		crashChild(dir)
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSurvivesSIGKILL$")
	cmd.Env = append(os.Environ(), "STORE_CRASH_CHILD="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var acked []string
	sc := bufio.NewScanner(out)
	for sc.Scan() && len(acked) < 2000 {
		if id, ok := strings.CutPrefix(sc.Text(), "put "); ok {
			acked = append(acked, id)
		}
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if len(acked) < 2000 {
		t.Fatalf("child acknowledged only %d records", len(acked))
	}

	s, err := Open(DefaultConfig(dir), testutil.Logger(t))
	if err != nil {
		t.Fatalf("reopen after SIGKILL: %v", err)
	}
	defer s.Close()
	for _, id := range acked {
		if _, err := s.Get(id); err != nil {
			t.Fatalf("acknowledged record %s lost: %v", id, err)
		}
	}
	checkConsistent(t, s)
}

func crashChild(dir string) {
	s, err := Open(DefaultConfig(dir), slog.New(slog.DiscardHandler))
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	for {
		r := rec("decode", "demo", time.Time{})
		if err := s.Put(context.Background(), r); err != nil {
			fmt.Println("put:", err)
			os.Exit(1)
		}
		fmt.Println("put", r.ID)
	}
}
