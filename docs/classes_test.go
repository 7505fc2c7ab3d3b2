package docs_test

import (
	"os"
	"regexp"
	"slices"
	"testing"

	"github.com/infergate/infergate/inference/pipeline"
)

// The error classes the docs list are the code's: docs/pipeline.md's "Errors"
// table has a row for each of pipeline.Classes and for ClassUnavailable (the
// one class never dead-lettered), and the README's `--class` sentence names
// exactly pipeline.Classes, in that order.
func TestDocsListEveryErrorClass(t *testing.T) {
	b, err := os.ReadFile("pipeline.md")
	if err != nil {
		t.Fatal(err)
	}
	table := regexp.MustCompile("(?s)\n## Errors\n\n(.*?)\n\n").FindSubmatch(b)
	if table == nil {
		t.Fatal(`pipeline.md has no "## Errors" table`)
	}
	var rows []string
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\|").FindAllSubmatch(table[1], -1) {
		rows = append(rows, string(m[1]))
	}
	want := append(slices.Clone(pipeline.Classes[:]), pipeline.ClassUnavailable)
	slices.Sort(rows)
	slices.Sort(want)
	if !slices.Equal(rows, want) {
		t.Errorf("pipeline.md's Errors table lists %q; the classes are %q", rows, want)
	}

	b, err = os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	sentence := regexp.MustCompile("(?s)`--class` must be one of (.*?) —").FindSubmatch(b)
	if sentence == nil {
		t.Fatal("README.md has no \"`--class` must be one of …\" sentence")
	}
	var named []string
	for _, m := range regexp.MustCompile("`([a-z_]+)`").FindAllSubmatch(sentence[1], -1) {
		named = append(named, string(m[1]))
	}
	if !slices.Equal(named, pipeline.Classes[:]) {
		t.Errorf("README's --class sentence names %q; pipeline.Classes is %q", named, pipeline.Classes)
	}
}
