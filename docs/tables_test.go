package docs_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// A settings table outside configuration.md with a flag column ("| key |
// flag | …") names each setting's flag as configuration.md does, and no
// flag for a setting that has none: broker.md once said broker.durability
// had no flag while `--broker-durability` existed.
func TestDocsSettingTablesNameTheFlag(t *testing.T) {
	ref, err := os.ReadFile("configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("^\\| `([a-z0-9_.]+)` \\|([^|]*)\\|")
	flagRe := regexp.MustCompile("`?(--[a-z0-9-]+)")
	flags := map[string]string{} // key → its flag, "" for none
	for _, line := range strings.Split(string(ref), "\n") {
		if m := row.FindStringSubmatch(line); m != nil {
			f := ""
			if fm := flagRe.FindStringSubmatch(m[2]); fm != nil {
				f = fm[1]
			}
			flags[m[1]] = f
		}
	}
	if len(flags) < 50 {
		t.Fatalf("read %d settings from configuration.md; did its table change?", len(flags))
	}
	checked := 0
	for _, f := range docFiles(t) {
		if filepath.Base(f) == "configuration.md" {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		inTable := false
		for n, line := range strings.Split(string(b), "\n") {
			switch {
			case strings.HasPrefix(line, "| key | flag |"):
				inTable = true
				continue
			case !strings.HasPrefix(line, "|"):
				inTable = false
			}
			m := row.FindStringSubmatch(line)
			if !inTable || m == nil {
				continue
			}
			want, ok := flags[m[1]]
			if !ok {
				continue // TestDocsNameOnlyExistingSettings reports unknown keys
			}
			checked++
			got := ""
			if fm := flagRe.FindStringSubmatch(m[2]); fm != nil {
				got = fm[1]
			}
			if got != want && !strings.HasPrefix(strings.TrimSpace(m[2]), "(from ") {
				t.Errorf("%s:%d: %s's flag is %q here, %q in configuration.md", f, n+1, m[1], got, want)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no settings table with a flag column found outside configuration.md; did broker.md's change?")
	}
}
