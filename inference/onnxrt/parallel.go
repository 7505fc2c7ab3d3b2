package onnxrt

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// rangeJob is work split into n items that any number of workers take in
// turn. Kernels keep their jobs in pools, so starting one allocates nothing.
type rangeJob interface {
	// do runs item i on worker w (0 ≤ w < the threads the job was given).
	do(w, i int)
}

// parallel runs items 0..n-1 of job on up to threads goroutines: the caller's
// and threads-1 from a process-wide pool. Items are taken from a shared
// counter, so uneven items balance themselves.
type parallel struct {
	job  rangeJob
	n    int64
	next atomic.Int64
	wg   sync.WaitGroup
}

type parallelTask struct {
	p *parallel
	w int
}

var (
	workerMu    sync.Mutex
	workerCount int
	workerCh    = make(chan parallelTask, 64)
)

// ensureWorkers starts pool goroutines until there are n. They live for the
// life of the process and only ever block on the task channel.
func ensureWorkers(n int) {
	workerMu.Lock()
	defer workerMu.Unlock()
	for ; workerCount < n; workerCount++ {
		go func() {
			for t := range workerCh {
				t.p.work(t.w)
				t.p.wg.Done()
			}
		}()
	}
}

func (p *parallel) work(w int) {
	for {
		i := p.next.Add(1) - 1
		if i >= p.n {
			return
		}
		p.job.do(w, int(i))
	}
}

// freeList keeps objects for reuse. Unlike sync.Pool, whose per-P private
// slot is not shared, it hands back what was put no matter which P the
// goroutine wakes up on after waiting for its helpers — so a steady stream of
// calls allocates nothing.
type freeList[T any] struct {
	mu    sync.Mutex
	items []*T
}

const freeListMax = 64

func (f *freeList[T]) get() *T {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n := len(f.items); n > 0 {
		it := f.items[n-1]
		f.items = f.items[:n-1]
		return it
	}
	return new(T)
}

func (f *freeList[T]) put(it *T) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.items) < freeListMax {
		f.items = append(f.items, it)
	}
}

var parallelPool freeList[parallel]

// runParallel runs job's n items with up to threads workers and returns when
// all are done.
func runParallel(job rangeJob, n, threads int) {
	threads = min(threads, n)
	if threads <= 1 {
		for i := range n {
			job.do(0, i)
		}
		return
	}
	ensureWorkers(threads - 1)
	p := parallelPool.get()
	p.job, p.n = job, int64(n)
	p.next.Store(0)
	for w := 1; w < threads; w++ {
		p.wg.Add(1)
		select {
		case workerCh <- parallelTask{p: p, w: w}:
		default:
			// Every pool goroutine is busy with other calls' work: this
			// call gets fewer helpers rather than waiting for them.
			p.wg.Done()
		}
	}
	p.work(0)
	p.wg.Wait()
	p.job = nil
	parallelPool.put(p)
}

// defaultThreads is the thread count a model gets unless Options says.
func defaultThreads() int { return runtime.GOMAXPROCS(0) }
