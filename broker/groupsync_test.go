package broker

import (
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/infergate/infergate/internal/testutil"
)

// setSyncFn replaces the round function of e's group sync (fsync durability).
func setSyncFn(t *testing.T, e *Embedded, fn func(real func() error) error) {
	t.Helper()
	if e.gsync == nil {
		t.Fatal("durability fsync has no group sync")
	}
	s := e.gsync
	s.mu.Lock()
	s.syncFn = func() error { return fn(s.syncFiles) }
	s.mu.Unlock()
}

// With durability fsync a produce is acknowledged only after a round of
// fdatasync that began after its batch was written, while requests that
// change nothing (metadata, list offsets, fetch) are answered meanwhile.
func TestFsyncAckWaitsForGroupSync(t *testing.T) {
	dir := t.TempDir()
	e := startEmbedded(t, dir, DurabilityFsync)
	adm := newAdmin(t, e.Addr())
	if err := EnsureTopics(testCtx(t), adm, DefaultTopics("req", "res", "dlq", 2)...); err != nil {
		t.Fatal(err)
	}

	entered := make(chan struct{}, 16)
	release := make(chan struct{})
	var releaseOnce sync.Once
	unhold := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(unhold) // before the broker's Close, which waits for the round
	var synced []string
	var mu sync.Mutex
	setSyncFn(t, e, func(real func() error) error {
		entered <- struct{}{}
		<-release
		err := real()
		mu.Lock()
		for path := range e.gsync.files {
			synced = append(synced, path)
		}
		mu.Unlock()
		return err
	})

	// No idempotence: InitProducerID would be the first held request.
	prod := newClient(t, e.Addr(), kgo.DisableIdempotentWrite(), kgo.DefaultProduceTopic("req"))
	acked := make(chan error, 1)
	prod.Produce(testCtx(t), &kgo.Record{Key: []byte("k"), Value: []byte("held")}, func(_ *kgo.Record, err error) { acked <- err })

	select {
	case <-entered: // a round began: only the produce's response can have asked for it
	case err := <-acked:
		t.Fatalf("produce acknowledged (err %v) before any round", err)
	}
	// The record is in the log and readable requests are answered while the
	// round is held.
	offs, err := adm.ListEndOffsets(testCtx(t), "req")
	if err != nil {
		t.Fatal(err)
	}
	var end int64
	offs.Each(func(o kadm.ListedOffset) { end += o.Offset })
	if end != 1 {
		t.Fatalf("end offsets sum to %d while the ack is held, want 1", end)
	}
	select {
	case err := <-acked:
		t.Fatalf("produce acknowledged (err %v) while its round was held", err)
	default:
	}

	unhold()
	if err := <-acked; err != nil {
		t.Fatalf("produce after the round: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	var seg bool
	for _, p := range synced {
		if strings.HasPrefix(p, filepath.Join(dir, "partitions", "req-")) && strings.HasSuffix(p, ".dat") {
			seg = true
		}
	}
	if !seg {
		t.Fatalf("the round did not fdatasync a segment of topic req; synced %v", synced)
	}
	if e.gsync.rounds.Load() == 0 {
		t.Fatal("no round counted")
	}
}

// After a failed fsync nothing more is acknowledged, and Health says why.
func TestFsyncFailureStopsAcks(t *testing.T) {
	logs := &testutil.Buffer{}
	e, err := NewEmbedded(EmbeddedConfig{DataDir: t.TempDir(), Listen: "127.0.0.1:0", Durability: DurabilityFsync}, slog.New(slog.NewTextHandler(io.MultiWriter(logs, testutil.Writer(t)), nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	adm := newAdmin(t, e.Addr())
	if err := EnsureTopics(testCtx(t), adm, DefaultTopics("req", "res", "dlq", 1)...); err != nil {
		t.Fatal(err)
	}
	setSyncFn(t, e, func(func() error) error { return errors.New("input/output error (injected)") })

	prod := newClient(t, e.Addr(), kgo.DefaultProduceTopic("req"), kgo.RecordRetries(2))
	err = prod.ProduceSync(testCtx(t), &kgo.Record{Value: []byte("x")}).FirstErr()
	if err == nil {
		t.Fatal("produce acknowledged after the data dir's fsync failed")
	}
	h := e.Health()
	if h.SyncFailed == nil || !strings.Contains(h.SyncFailed.Error(), "injected") || !strings.Contains(h.SyncFailed.Error(), "restart") {
		t.Fatalf("Health().SyncFailed = %v, want the fsync error and what to do", h.SyncFailed)
	}
	if n := strings.Count(logs.String(), "fsync of the data dir failed"); n != 1 {
		t.Fatalf("fsync failure logged %d times, want once:\n%s", n, logs.String())
	}
}

// frame builds a Kafka request frame header followed by body bytes.
func requestFrame(key int16, corr int32, body int) []byte {
	b := make([]byte, 12+body)
	binary.BigEndian.PutUint32(b[0:4], uint32(8+body))
	binary.BigEndian.PutUint16(b[4:6], uint16(key))
	binary.BigEndian.PutUint16(b[6:8], 3)
	binary.BigEndian.PutUint32(b[8:12], uint32(corr))
	return b
}

func responseFrame(corr int32, body int) []byte {
	b := make([]byte, 8+body)
	binary.BigEndian.PutUint32(b[0:4], uint32(4+body))
	binary.BigEndian.PutUint32(b[4:8], uint32(corr))
	return b
}

// The connection follows request framing however the bytes are split, holds
// responses to writes and not to reads, and drops acks=0 produce requests
// (which get no response) from its queue.
func TestGatedConnFollowsFraming(t *testing.T) {
	var stream []byte
	type want struct {
		corr int32
		held bool
	}
	var wants []want
	add := func(key int16, corr int32, body int, answered, held bool) {
		stream = append(stream, requestFrame(key, corr, body)...)
		if answered {
			wants = append(wants, want{corr, held})
		}
	}
	add(int16(kmsg.ApiVersions), 1, 5, true, false)
	add(int16(kmsg.Metadata), 2, 40, true, false)
	add(int16(kmsg.Produce), 3, 300, false, true) // acks=0
	add(int16(kmsg.Produce), 4, 0, true, true)
	add(int16(kmsg.Fetch), 5, 70, true, false)
	add(int16(kmsg.OffsetCommit), 6, 33, true, true)
	add(999, 7, 1, true, true) // unknown key: held
	add(int16(kmsg.Heartbeat), 8, 9, true, false)

	for split := 1; split <= len(stream); split++ {
		c := &gatedConn{}
		for i := 0; i < len(stream); i += split {
			c.scan(stream[i:min(i+split, len(stream))])
		}
		for _, w := range wants {
			if got := c.held(responseFrame(w.corr, 10)); got != w.held {
				t.Fatalf("split %d: response %d held=%v, want %v", split, w.corr, got, w.held)
			}
		}
		if c.lost {
			t.Fatalf("split %d: framing lost", split)
		}
	}

	c := &gatedConn{}
	c.scan(requestFrame(int16(kmsg.Fetch), 1, 0))
	if !c.held(responseFrame(2, 0)) {
		t.Fatal("a response to an unknown correlation id was not held")
	}
	if !c.held(responseFrame(1, 0)[:6]) || !c.lost {
		t.Fatal("a response frame split across writes was not held, or framing not marked lost")
	}
	if !c.held(responseFrame(1, 0)) {
		t.Fatal("after framing was lost a response was not held")
	}
}

// FuzzGatedConnScan feeds a client's arbitrary bytes to the framing scanner:
// it must not panic, and a response is released unheld only for a
// correlation id that arrived with a read-only API key.
func FuzzGatedConnScan(f *testing.F) {
	f.Add(append(requestFrame(int16(kmsg.Fetch), 7, 3), requestFrame(int16(kmsg.Produce), 8, 0)...), int32(7), 5)
	f.Add([]byte{0, 0, 0, 1, 0}, int32(0), 1)
	f.Fuzz(func(t *testing.T, in []byte, corr int32, split int) {
		if split <= 0 {
			split = 1
		}
		c := &gatedConn{}
		readOnlyCorr := map[int32]bool{}
		for i := 0; i < len(in); i += split {
			c.scan(in[i:min(i+split, len(in))])
		}
		// Recompute which correlation ids came with read-only keys.
		for b := in; len(b) >= 12; {
			size := int64(binary.BigEndian.Uint32(b[0:4]))
			if size < 8 {
				break
			}
			key := int16(binary.BigEndian.Uint16(b[4:6]))
			cid := int32(binary.BigEndian.Uint32(b[8:12]))
			readOnlyCorr[cid] = readOnlyCorr[cid] || !heldAPI(key)
			if int64(len(b)) < 4+size {
				break
			}
			b = b[4+size:]
		}
		if !c.held(responseFrame(corr, 4)) && !readOnlyCorr[corr] {
			t.Fatalf("response %d released unheld but no read-only request had that id", corr)
		}
	})
}

// Every round syncs exactly what was written since the one before — a file
// appended to, a new segment and its directory, a new partition directory, a
// groups.log replaced by a rename (the new file, and the directory) — both
// with the watch (inotify) and with a scan of every directory; and with the
// watch, rounds after the first scan only when a directory appears.
func TestGroupSyncSeesEveryWrite(t *testing.T) {
	for _, mode := range []string{"watch", "scan"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			p0 := filepath.Join(dir, "partitions", "t-0")
			if err := os.MkdirAll(p0, 0o755); err != nil {
				t.Fatal(err)
			}
			write := func(path, data string, flag int) {
				t.Helper()
				f, err := os.OpenFile(path, flag|os.O_WRONLY|os.O_CREATE, 0o644)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := f.WriteString(data); err != nil {
					t.Fatal(err)
				}
				f.Close()
			}
			seg0 := filepath.Join(p0, "00000.log")
			write(seg0, "batch", os.O_APPEND)
			log := filepath.Join(dir, "groups.log")
			write(log, "commit", os.O_APPEND)

			s := newGroupSync(dir)
			defer s.Close()
			var got []string
			s.mu.Lock()
			s.synced = func(path string) { got = append(got, path) }
			if mode == "scan" {
				s.watch.close()
				s.watch = nil
			} else if s.watch == nil && runtime.GOOS == "linux" {
				t.Fatal("no inotify watch on linux")
			}
			s.mu.Unlock()
			round := func(what string, want ...string) {
				t.Helper()
				if err := s.Wait(); err != nil {
					t.Fatal(err)
				}
				s.mu.Lock()
				synced := slices.Clone(got)
				got = got[:0]
				s.mu.Unlock()
				slices.Sort(synced)
				slices.Sort(want)
				if !slices.Equal(synced, want) {
					t.Errorf("%s: synced %q, want %q", what, synced, want)
				}
			}
			round("first round", seg0, p0, log, dir, filepath.Join(dir, "partitions"))
			round("nothing written")
			write(seg0, "batch", os.O_APPEND)
			round("an append", seg0)

			seg1 := filepath.Join(p0, "00010.log")
			write(seg1, "batch", os.O_APPEND)
			round("a new segment", seg1, p0)

			p1 := filepath.Join(dir, "partitions", "t-1")
			if err := os.Mkdir(p1, 0o755); err != nil {
				t.Fatal(err)
			}
			seg2 := filepath.Join(p1, "00000.log")
			write(seg2, "batch", os.O_APPEND)
			write(seg0, "batch", os.O_APPEND)
			round("a new partition", seg2, p1, filepath.Join(dir, "partitions"), seg0)

			write(log+".tmp", "compacted", os.O_TRUNC)
			if err := os.Rename(log+".tmp", log); err != nil {
				t.Fatal(err)
			}
			write(filepath.Join(dir, "meta.json"), "{}", os.O_TRUNC)
			round("groups.log compacted", log, dir)
			s.mu.Lock()
			sf := s.files[log]
			s.mu.Unlock()
			info, err := os.Stat(log)
			if err != nil {
				t.Fatal(err)
			}
			if sf == nil || !os.SameFile(sf.info, info) {
				t.Errorf("after the rename the open groups.log is %+v, not the new file", sf)
			}

			if err := os.Remove(seg0); err != nil {
				t.Fatal(err)
			}
			write(seg1, "batch", os.O_APPEND)
			round("a segment removed, another appended to", seg1)
			s.mu.Lock()
			_, open := s.files[seg0]
			s.mu.Unlock()
			if open {
				t.Error("a removed segment is still held open")
			}
			if n := s.scans.Load(); mode == "watch" && s.watch != nil && n != 2 {
				t.Errorf("%d rounds scanned every directory, want 2 (the first, the new partition)", n)
			}
		})
	}
}
