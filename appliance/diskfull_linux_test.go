package appliance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/infergate/infergate/inference/demo"
	"github.com/infergate/infergate/internal/testutil"
	"github.com/infergate/infergate/internal/tmpfs"
	"github.com/infergate/infergate/store"
	"github.com/infergate/infergate/web"
)

// Issue 9 row 7: with the disk full under the data dir, the broker refused produce requests
// (good) and then Badger's value log SIGBUSed and the process died. Now, on a 64 MiB tmpfs
// holding the whole data dir (broker, store, models): below min_free_bytes the appliance
// reports "disk full" in /readyz, the status and a metric, stops consuming, and survives
// the file system being filled to the last byte; once space returns it resumes by itself,
// and every request — those produced during the episode too — is answered, each poison
// stored once.
func TestDiskFullPausesAndResumes(t *testing.T) {
	c := testConfig(t)
	c.DataDir = tmpfs.Mount(t, 64<<20)
	c.MinFreeBytes = 16 << 20
	// Small segments: the broker's files stay far below the tmpfs.
	c.Topics.RequestsBytes, c.Topics.ResultsBytes, c.Topics.DLQBytes = 8<<20, 8<<20, 8<<20
	a := start(t, c)
	api := newAPIClient(t, a)
	cl := producer(t, a)

	good, poison := 0, 0
	send := func(cl *kgo.Client, nGood, nPoison int) []*kgo.Record {
		var recs []*kgo.Record
		for range nGood {
			recs = append(recs, &kgo.Record{Key: []byte("s"), Value: requestValue(fmt.Sprintf("g-%d", good), features(16, 0.1))})
			good++
		}
		for range nPoison {
			recs = append(recs, &kgo.Record{Key: []byte("s"), Value: []byte(fmt.Sprintf("poison %d: not json", poison))})
			poison++
		}
		return recs
	}
	answered := func(wantGood, wantPoison int) func() error {
		return func() error {
			st := a.Pipeline().Status()
			var dlq uint64
			for _, n := range st.DLQ {
				dlq += n
			}
			if st.Results < uint64(wantGood) || dlq < uint64(wantPoison) {
				return fmt.Errorf("%d results, %d dead-lettered; want %d and %d", st.Results, dlq, wantGood, wantPoison)
			}
			return nil
		}
	}
	produce(t, cl, send(cl, 20, 2)...)
	testutil.Eventually(t, time.Minute, answered(20, 2))

	filler := tmpfs.Fill(t, c.DataDir, 8<<20)
	testutil.Eventually(t, 30*time.Second, func() error {
		if err := a.Ready(); err == nil || !strings.Contains(err.Error(), "disk full") {
			return fmt.Errorf("Ready: %v", err)
		}
		return nil
	})
	code, body := api.do("GET", "/readyz", nil)
	if code != 503 || !strings.Contains(string(body), "disk full") {
		t.Errorf("/readyz with the disk full: %d %s", code, body)
	}
	if _, m := api.do("GET", "/metrics", nil); !strings.Contains(string(m), "infergate_disk_full 1") {
		t.Errorf("/metrics has no infergate_disk_full 1")
	}
	var st web.Status
	api.json("GET", "/api/v1/status", nil, 200, &st)
	if st.Store.State != web.StateDegraded || !strings.Contains(st.Store.Detail, "DISK FULL") || st.Pipeline.State != web.StatePaused {
		t.Errorf("status with the disk full: store %+v, pipeline %+v", st.Store, st.Pipeline)
	}
	if err := a.Store().Put(context.Background(), &store.Record{Class: "decode"}); !errors.Is(err, store.ErrDiskFull) {
		t.Errorf("store Put with the disk full: %v", err)
	}

	// Requests produced now wait in the producer (the broker refuses them, retriably).
	late := producer(t, a)
	lateDone := make(chan error, 1)
	lateRecs := send(late, 10, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		lateDone <- late.ProduceSync(ctx, lateRecs...).FirstErr()
	}()
	// Filled to the last byte by someone else: nothing crashes.
	full := tmpfs.Fill(t, c.DataDir, 0)
	for range 3 {
		api.json("GET", "/api/v1/status", nil, 200, nil)
	}
	select {
	case <-a.done:
		t.Fatalf("the appliance stopped on a full disk: %v", a.err)
	default:
	}

	os.Remove(full)
	os.Remove(filler)
	testutil.Eventually(t, 30*time.Second, a.Ready)
	if err := <-lateDone; err != nil {
		t.Fatalf("requests produced during the episode: %v", err)
	}
	testutil.Eventually(t, time.Minute, answered(good, poison))
	if _, m := api.do("GET", "/metrics", nil); !strings.Contains(string(m), "infergate_disk_full 0") {
		t.Errorf("/metrics has no infergate_disk_full 0 after space returned")
	}
	if n := a.Store().Stats().Records; n != int64(poison) {
		t.Errorf("store holds %d records, want each of the %d poisons once", n, poison)
	}
}

// An upload into the model repository (in the data dir) used to stream until the file system
// was full — to the last byte, where Badger SIGBUSes — and only then fail with a write error.
// Now it stops before it would take the file system below min_free_bytes: 507 naming the
// setting, no temporary file left, the free space still above the floor, and the appliance
// neither disk-full nor unready because of it.
func TestUploadKeepsMinFreeBytes(t *testing.T) {
	c := testConfig(t)
	c.DataDir = tmpfs.Mount(t, 64<<20)
	c.MinFreeBytes = 16 << 20
	c.Topics.RequestsBytes, c.Topics.ResultsBytes, c.Topics.DLQBytes = 8<<20, 8<<20, 8<<20
	a := start(t, c)
	api := newAPIClient(t, a)
	const size = 60 << 20 // under http.max_upload_bytes, over what the tmpfs can spare
	req, err := http.NewRequest("POST", a.WebURL()+"/api/v1/models/demo/versions", io.LimitReader(zeros{}, size))
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Authorization", "Bearer "+a.AdminToken())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusInsufficientStorage || !strings.Contains(string(body), "min_free_bytes") {
		t.Fatalf("60 MiB upload onto a 64 MiB tmpfs: HTTP %d %s", resp.StatusCode, body)
	}
	if free := tmpfs.Free(t, c.DataDir); free < c.MinFreeBytes-(1<<20) {
		t.Errorf("%d MiB free after the refused upload, floor %d MiB", free>>20, c.MinFreeBytes>>20)
	}
	if left := leftoverUploads(t, filepath.Join(c.DataDir, ModelsDir)); len(left) > 0 {
		t.Fatalf("temporary files left in the model repository: %v", left)
	}
	if code, body := api.do("GET", "/readyz", nil); code != 200 {
		t.Errorf("/readyz after the refused upload: %d %s", code, body)
	}
	// A model that fits is still accepted.
	if code, body := api.do("POST", "/api/v1/models/demo/versions", demo.ONNX); code != http.StatusCreated {
		t.Errorf("small upload: %d %s", code, body)
	}
}
