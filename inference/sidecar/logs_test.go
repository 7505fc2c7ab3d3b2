package sidecar

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestRotatingFileStaysBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stderr.log")
	f, err := openRotating(path, 1024)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	line := strings.Repeat("x", 99) + "\n"
	for range 100 {
		if _, err := f.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{path, path + ".1"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > 1024 || fi.Size() == 0 {
			t.Fatalf("%s has %d bytes, bound 1024", p, fi.Size())
		}
	}
	// One write above the bound keeps its end.
	if _, err := f.Write([]byte(strings.Repeat("y", 5000))); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Size() != 1024 {
		t.Fatalf("oversized write: %d bytes", fi.Size())
	}
}

func TestTailAndLineSplitting(t *testing.T) {
	tl := newTail(3)
	w := &lineWriter{tail: tl}
	w.Write([]byte("one\ntw"))
	w.Write([]byte("o\r\nthree\nfour\nfive-without-newline"))
	if got := tl.last(0); !slices.Equal(got, []string{"two", "three", "four"}) {
		t.Fatalf("tail: %q", got)
	}
	w.flush()
	if got := tl.last(2); !slices.Equal(got, []string{"four", "five-without-newline"}) {
		t.Fatalf("tail after flush: %q", got)
	}
	w.Write([]byte(strings.Repeat("z", 3*maxLine)))
	if got := tl.last(1); len(got[0]) != maxLine {
		t.Fatalf("long line kept %d bytes", len(got[0]))
	}
	small := newTail(10)
	for i := range 4 {
		small.add(strconv.Itoa(i))
	}
	if got := small.last(10); !slices.Equal(got, []string{"0", "1", "2", "3"}) {
		t.Fatalf("partial ring: %q", got)
	}
}
