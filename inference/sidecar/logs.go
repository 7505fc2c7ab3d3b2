package sidecar

import (
	"bytes"
	"fmt"
	"os"
	"sync"
)

// rotatingFile is an append-only log file that is renamed to .1 (replacing
// the previous .1) when it would grow past max bytes, so a chatty or
// crash-looping model server cannot fill the edge box's disk.
type rotatingFile struct {
	path string
	max  int64

	mu   sync.Mutex
	f    *os.File
	size int64
}

func openRotating(path string, max int64) (*rotatingFile, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &rotatingFile{path: path, max: max, f: f, size: st.Size()}, nil
}

func (r *rotatingFile) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return 0, os.ErrClosed
	}
	if r.size > 0 && r.size+int64(len(p)) > r.max {
		if err := r.rotate(); err != nil {
			return 0, err
		}
	}
	if int64(len(p)) > r.max {
		// One write larger than the bound keeps only its end.
		p = p[int64(len(p))-r.max:]
	}
	n, err := r.f.Write(p)
	r.size += int64(n)
	return n, err
}

func (r *rotatingFile) rotate() error {
	if err := r.f.Close(); err != nil {
		return err
	}
	if err := os.Rename(r.path, r.path+".1"); err != nil {
		return err
	}
	f, err := os.OpenFile(r.path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		r.f = nil
		return err
	}
	r.f, r.size = f, 0
	return nil
}

func (r *rotatingFile) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}

// tail keeps the last lines written to it by any of its streams.
type tail struct {
	mu    sync.Mutex
	lines []string
	next  int
	full  bool
}

func newTail(n int) *tail { return &tail{lines: make([]string, n)} }

func (t *tail) add(line string) {
	t.mu.Lock()
	t.lines[t.next] = line
	t.next++
	if t.next == len(t.lines) {
		t.next, t.full = 0, true
	}
	t.mu.Unlock()
}

// last returns up to n lines, oldest first.
func (t *tail) last(n int) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	count := t.next
	if t.full {
		count = len(t.lines)
	}
	if n <= 0 || n > count {
		n = count
	}
	out := make([]string, 0, n)
	for i := count - n; i < count; i++ {
		idx := i
		if t.full {
			idx = (t.next + i) % len(t.lines)
		}
		out = append(out, t.lines[idx])
	}
	return out
}

// maxLine bounds a line kept in the tail; a binary blob on stdout must not
// pin megabytes in memory.
const maxLine = 4096

// lineWriter splits a stream into lines for the tail and copies it
// unchanged to a file.
type lineWriter struct {
	prefix string
	file   *rotatingFile
	tail   *tail
	buf    []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	if w.file != nil {
		// A failing log file must not stall the child on a full pipe.
		_, _ = w.file.Write(p)
	}
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.emit(w.buf[:i])
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > maxLine {
		w.emit(w.buf)
		w.buf = w.buf[:0]
	}
	if len(w.buf) == 0 {
		w.buf = nil // release the backing array between bursts
	}
	return len(p), nil
}

func (w *lineWriter) emit(line []byte) {
	line = bytes.TrimRight(line, "\r")
	if len(line) > maxLine {
		line = line[:maxLine]
	}
	w.tail.add(fmt.Sprintf("%s%s", w.prefix, line))
}

// flush emits a last line without a newline (the child exited mid-line).
func (w *lineWriter) flush() {
	if len(w.buf) > 0 {
		w.emit(w.buf)
		w.buf = nil
	}
}
