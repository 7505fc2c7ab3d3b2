package notices

import (
	"bufio"
	"debug/buildinfo"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// index parses the module list at the top of the notices into path →
// version; the standard library is "std".
func index(t *testing.T, notices string) map[string]string {
	t.Helper()
	idx := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(notices))
	inList := false
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "Go standard library ") {
			inList = true
			idx["std"] = ""
			continue
		}
		if !inList {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 3 {
			break
		}
		idx[f[0]] = f[1]
	}
	if len(idx) < 2 {
		t.Fatalf("no module list in the notices:\n%.2000s", notices)
	}
	return idx
}

// hasText tells whether the notices hold a license text for path@version
// (a section headed "path version: LICENSE…" or "…: COPYING…").
func hasText(notices, path, version string) bool {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(path+" "+version) + `: (\S+/)?(?i:licen[cs]e|copying)`)
	return re.MatchString(notices)
}

func releaseTargets(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../scripts/release.sh")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^ALL_TARGETS="([^"]+)"$`).FindSubmatch(b)
	if m == nil {
		t.Fatal("scripts/release.sh has no ALL_TARGETS line")
	}
	return strings.Fields(string(m[1]))
}

func goEnv(target string) []string {
	goos, arch, _ := strings.Cut(target, "/")
	goarm := ""
	if v, ok := strings.CutPrefix(arch, "armv"); ok {
		arch, goarm = "arm", v
	}
	return append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+arch, "GOARM="+goarm)
}

// TestCoversEveryLinkedModule checks the embedded notices against what is
// linked, found without the generator: every module in the package graph of
// ./cmd/infergate for every release target, and every module recorded in a
// built binary's module list (what `go version -m` prints), must be listed
// at its version and have its license text.
func TestCoversEveryLinkedModule(t *testing.T) {
	text := Text()
	idx := index(t, text)
	check := func(where, path, version string) {
		t.Helper()
		got, ok := idx[path]
		switch {
		case !ok:
			t.Errorf("%s: %s %s is linked but not in the notices (go generate ./notices)", where, path, version)
		case got != version:
			t.Errorf("%s: %s is linked at %s, the notices name %s (go generate ./notices)", where, path, version, got)
		case !hasText(text, path, version):
			t.Errorf("%s: %s %s has no license text in the notices", where, path, version)
		}
	}

	for _, target := range releaseTargets(t) {
		cmd := exec.Command("go", "list", "-deps", "-f", "{{with .Module}}{{if not .Main}}{{.Path}} {{.Version}}{{end}}{{end}}", "./cmd/infergate")
		cmd.Dir, cmd.Env = "..", goEnv(target)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list for %s: %v", target, err)
		}
		n := 0
		for line := range strings.Lines(string(out)) {
			if f := strings.Fields(line); len(f) == 2 {
				check(target, f[0], f[1])
				n++
			}
		}
		if n < 10 {
			t.Errorf("%s: only %d modules in the package graph; the listing is broken", target, n)
		}
	}

	bin := filepath.Join(t.TempDir(), "infergate")
	build := exec.Command("go", "build", "-trimpath", "-o", bin, "./cmd/infergate")
	build.Dir, build.Env = "..", append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	bi, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if len(bi.Deps) < 10 {
		t.Fatalf("the binary records only %d modules", len(bi.Deps))
	}
	for _, d := range bi.Deps {
		check("the binary's module list", d.Path, d.Version)
	}
	if !strings.Contains(text, "Go standard library: LICENSE") {
		t.Error("no Go LICENSE for the standard library and runtime")
	}
}

// TestUpToDate regenerates the notices and compares them with the
// committed file, so a dependency added, removed or upgraded without
// `go generate ./notices` fails here.
func TestUpToDate(t *testing.T) {
	out, err := exec.Command("go", "run", "./gen").Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("notices/gen: %v\n%s", err, ee.Stderr)
		}
		t.Fatal(err)
	}
	if string(out) != Text() {
		t.Errorf("THIRD_PARTY_NOTICES.txt is stale: run `go generate ./notices` and commit it\n%s", firstDiff(Text(), string(out)))
	}
}

func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < len(al) || i < len(bl); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			return "first difference at line " + strconv.Itoa(i+1) + ":\n  committed: " + x + "\n  generated: " + y
		}
	}
	return ""
}
