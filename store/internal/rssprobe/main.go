// Command rssprobe measures the resident memory a store adds to a process, for the numbers
// in docs/store.md. It is a measuring aid, not part of infergate:
//
//	go run ./store/internal/rssprobe -records 100000            # store's tuned options
//	go run ./store/internal/rssprobe -records 100000 -badger-defaults
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/infergate/infergate/store"
)

func main() {
	records := flag.Int("records", 100_000, "1 KiB records written before measuring")
	defaults := flag.Bool("badger-defaults", false, "open with badger.DefaultOptions instead of the store")
	dir := flag.String("dir", "", "directory (default: a temp dir, removed afterwards)")
	reopen := flag.Bool("reopen", false, "only open the existing -dir and measure it idle (a fresh process, as after a restart)")
	flag.Parse()
	if *dir == "" {
		d, err := os.MkdirTemp("", "rssprobe-")
		if err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(d)
		*dir = d
	}
	base := rss("VmRSS")
	value := requestJSON()

	if *reopen {
		var closeFn func() error
		if *defaults {
			db, err := badger.Open(badger.DefaultOptions(*dir).WithLogger(nil))
			if err != nil {
				log.Fatal(err)
			}
			closeFn = db.Close
		} else {
			start := time.Now()
			s, err := store.Open(store.DefaultConfig(*dir), slog.New(slog.DiscardHandler))
			if err != nil {
				log.Fatal(err)
			}
			fmt.Printf("open took %s for %d records\n", time.Since(start).Round(time.Millisecond), s.Stats().Records)
			if _, _, err := s.List(store.Filter{Class: "validation", Limit: 100}); err != nil {
				log.Fatal(err)
			}
			closeFn = s.Close
		}
		idle()
		report(fmt.Sprintf("reopened %s, idle (defaults=%v)", *dir, *defaults), base)
		closeFn()
		return
	}
	if *defaults {
		opts := badger.DefaultOptions(*dir).WithLogger(nil)
		db, err := badger.Open(opts)
		if err != nil {
			log.Fatal(err)
		}
		report("badger defaults, empty, after open", base)
		for i := 0; i < *records; i += 100 {
			wb := db.NewWriteBatch()
			for j := 0; j < 100; j++ {
				if err := wb.Set([]byte(fmt.Sprintf("r/%012d", i+j)), value); err != nil {
					log.Fatal(err)
				}
			}
			if err := wb.Flush(); err != nil {
				log.Fatal(err)
			}
		}
		report(fmt.Sprintf("badger defaults, after writing %d records", *records), base)
		db.Close()
		db, err = badger.Open(opts)
		if err != nil {
			log.Fatal(err)
		}
		idle()
		report("badger defaults, reopened, idle", base)
		db.Close()
		return
	}

	cfg := store.DefaultConfig(*dir)
	s, err := store.Open(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		log.Fatal(err)
	}
	report("store, empty, after open", base)
	for i := 0; i < *records; i += 100 {
		batch := make([]*store.Record, 100)
		for j := range batch {
			batch[j] = &store.Record{Class: "validation", Model: "demo", Value: value, Key: []byte("k")}
		}
		if err := s.Put(context.Background(), batch...); err != nil {
			log.Fatal(err)
		}
	}
	report(fmt.Sprintf("store, after writing %d records", *records), base)
	runtime.GC()
	report(fmt.Sprintf("store, after writing %d records, GC", *records), base)
	if p := os.Getenv("RSSPROBE_HEAPPROFILE"); p != "" {
		f, _ := os.Create(p)
		pprof.WriteHeapProfile(f)
		f.Close()
	}
	s.Close()
	s, err = store.Open(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		log.Fatal(err)
	}
	idle()
	report("store, reopened, idle", base)
	if _, _, err := s.List(store.Filter{Class: "validation", Limit: 100}); err != nil {
		log.Fatal(err)
	}
	report("store, after listing a page", base)
	st := s.Stats()
	fmt.Printf("disk: lsm %.1f MiB, vlog %.1f MiB\n", float64(st.LSMBytes)/(1<<20), float64(st.VLogBytes)/(1<<20))
	s.Close()
}

// requestJSON is a realistic 1 KiB request: random sensor readings compress about as badly
// as real ones, where a repeated pattern would flatter Snappy.
func requestJSON() []byte {
	var b bytes.Buffer
	b.WriteString(`{"request_id":"r-1","features":[`)
	for b.Len() < 1020 {
		fmt.Fprintf(&b, "%.6f,", rand.Float64())
	}
	b.Truncate(1021)
	b.WriteString("]}")
	return b.Bytes()
}

func idle() {
	time.Sleep(2 * time.Second)
	runtime.GC()
}

func report(what string, base int64) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Printf("%-50s RSS %6.1f MiB (+%.1f over process start; anonymous %.1f, file-backed %.1f), Go heap in use %.1f MiB, idle not returned to the OS %.1f MiB\n",
		what, mib(rss("VmRSS")), mib(rss("VmRSS")-base), mib(rss("RssAnon")), mib(rss("RssFile")), mib(int64(ms.HeapInuse)), mib(int64(ms.HeapIdle-ms.HeapReleased)))
}

// rss reads a memory field (VmRSS, RssAnon, RssFile) from /proc (Linux only, which is all this probe is run on).
func mib(n int64) float64 { return float64(n) / (1 << 20) }

func rss(field string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			var kb int64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
			return kb << 10
		}
	}
	return 0
}
