package docs_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/infergate/infergate/internal/testutil"
)

// The docs' shell examples are ```sh blocks. Each one is run by a test
// against a started appliance, or listed here with the reason it cannot be:
// TestDocsEveryShellBlockIsRun fails on a block that is neither, so a new
// example is run from the day it is written.

// runElsewhere are the README sections whose commands a test of their own
// runs, comparing what the section shows.
var runElsewhere = map[string]string{
	"Send requests":                "TestReadmeSendAndReadResults",
	"Read results":                 "TestReadmeSendAndReadResults",
	"Roll out a new model version": "TestReadmeRollout",
	"Devices (MQTT / NATS)":        "TestReadmeDevices",
}

// notRun are the blocks no test runs, by file and the start of their first
// command, each with why.
var notRun = []struct{ file, first, why string }{
	{"README.md", "go run ./cmd/infergate run --demo", "runs the appliance until Ctrl-C; every test here starts it so (`infergate run --demo` from a built binary)"},
	{"README.md", "sudo apt install ./infergate_", "installs the .deb as root; packaging's TestDeb does under CI"},
	{"README.md", ".ci/run", "is CI itself, which runs this test"},
	{"README.md", "sudo apt-get install tensorflow-model-server", "installs TF Serving from Google's APT repository (not on this machine)"},
	{"README.md", "sudo apt-get install protobuf-compiler", "installs packages as root; proto's generated code is checked against proto/gen.sh by its own test"},
	{"install.md", "scripts/release.sh", "cross-builds every target (minutes); .ci/run runs `scripts/release.sh --check`"},
	{"install.md", "sudo ", "installs, upgrades or removes the package as root with systemd; packaging's TestDeb does under CI"},
	{"install.md", "systemctl status infergate", "needs the systemd service of an installed package; packaging's TestDeb under CI"},
	{"install.md", "VERSION=v1.2.0 scripts/release.sh", "cross-builds release targets (minutes)"},
	{"install.md", "infergate.exe service install", "Windows only"},
	{"sidecar.md", "echo \"deb [arch=amd64] http://storage.googleapis.com/tensorflow-serving-apt", "adds Google's APT repository as root"},
	{"scaling.md", "infergate run --broker external --brokers kafka-1:9092", "needs a Kafka cluster at those names; TestGroup* in cmd/infergate run instances attached to a kfake cluster"},
	{"scaling.md", "INFERGATE_MEASURE=1", "a measurement of minutes, opt-in"},
	{"performance.md", "go build -o infergate ./cmd/infergate", "the benchmark table: about 30 minutes"},
	{"models.md", "go build -o infergate ./cmd/infergate", "three rounds of 60 s benchmarks; bench's TestShadowRun runs a short one"},
	{"dashboard.md", "go test ./appliance -run 'TestBrowserDashboard", "rewrites docs/screenshots (the browser tests themselves run in CI)"},
}

// docCmd is one command of a block: continuation lines joined, and what a
// trailing "# → TEXT" comment says it prints.
type docCmd struct {
	line, shows string
}

// shellCommands are a ```sh block's commands. Comments are dropped except
// "# → TEXT", a claim that the command's output contains TEXT.
func shellCommands(text string) []docCmd {
	var out []docCmd
	var cur strings.Builder
	shows := ""
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		if i := strings.Index(line, "  #"); i >= 0 {
			if c := strings.TrimSpace(line[i+3:]); strings.HasPrefix(c, "→ ") {
				shows = strings.TrimPrefix(c, "→ ")
			}
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		cur.WriteString(strings.TrimSuffix(line, "\\"))
		cur.WriteByte(' ')
		if strings.HasSuffix(line, "|") || strings.HasSuffix(line, "\\") {
			continue
		}
		out = append(out, docCmd{strings.TrimSpace(cur.String()), shows})
		cur.Reset()
		shows = ""
	}
	return out
}

// readmeSection is the "## " section of README.md a line is in.
func readmeSection(readme string, line int) string {
	sec := ""
	for i, l := range strings.Split(readme, "\n") {
		if i+1 >= line {
			break
		}
		if strings.HasPrefix(l, "## ") {
			sec = strings.TrimPrefix(l, "## ")
		}
	}
	return sec
}

// looksLikeCommands: an unlabeled block that starts with a command, which
// must be a ```sh block so that it is run (output, like
// "infergate run: topics.partitions …", is not).
func looksLikeCommands(text string) bool {
	f := strings.Fields(text)
	if len(f) < 2 {
		return false
	}
	switch f[0] {
	case "infergate", "curl", "go", "sudo", "echo", "kcat", "cp", "TOKEN=", "scripts/release.sh":
		return !strings.HasSuffix(f[1], ":")
	}
	return false
}

// runnableBlocks are the ```sh blocks this file runs, by doc: those neither
// run elsewhere nor listed in notRun. It fails on an unlabeled block of
// commands.
func runnableBlocks(t *testing.T) map[string][]block {
	t.Helper()
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]block{}
	for _, f := range docFiles(t) {
		name := filepath.Base(f)
	blocks:
		for _, b := range fenced(t, f) {
			if b.lang == "" && looksLikeCommands(b.text) {
				t.Errorf("%s:%d: a block of commands without a language; make it ```sh so that it is run", b.file, b.line)
				continue
			}
			if b.lang != "sh" && b.lang != "powershell" {
				continue
			}
			cmds := shellCommands(b.text)
			if len(cmds) == 0 {
				continue
			}
			if name == "README.md" {
				if _, ok := runElsewhere[readmeSection(string(readme), b.line)]; ok {
					continue
				}
			}
			for _, n := range notRun {
				if n.file == name && strings.HasPrefix(cmds[0].line, n.first) {
					continue blocks
				}
			}
			out[name] = append(out[name], b)
		}
	}
	return out
}

// runHere are the docs whose remaining blocks TestDocsShellBlocksRun runs.
var runHere = []string{"README.md", "dashboard.md", "models.md", "performance.md"}

func TestDocsEveryShellBlockIsRun(t *testing.T) {
	blocks := runnableBlocks(t)
	for name, bs := range blocks {
		found := false
		for _, r := range runHere {
			found = found || r == name
		}
		if !found {
			for _, b := range bs {
				t.Errorf("%s:%d: no test runs this block (%q): run it in TestDocsShellBlocksRun, or add it to notRun with the reason",
					b.file, b.line, shellCommands(b.text)[0].line)
			}
		}
	}
	for _, n := range notRun {
		ok := false
		for _, f := range docFiles(t) {
			if filepath.Base(f) != n.file {
				continue
			}
			for _, b := range fenced(t, f) {
				if cmds := shellCommands(b.text); len(cmds) > 0 && (b.lang == "sh" || b.lang == "powershell") && strings.HasPrefix(cmds[0].line, n.first) {
					ok = true
				}
			}
		}
		if !ok {
			t.Errorf("notRun lists %s %q, which is no longer a block there: remove it", n.file, n.first)
		}
	}
}

// synopsis turns a synopsis line into a command: optional parts ([--flag
// V]) are kept, placeholders replaced by values.
func synopsis(line string, values map[string]string) string {
	opt := regexp.MustCompile(`\[(--[^\[\]]*)\]`)
	for opt.MatchString(line) {
		line = opt.ReplaceAllString(line, "$1")
	}
	f := strings.Fields(line)
	for i, w := range f {
		if v, ok := values[w]; ok {
			f[i] = v
		}
	}
	return strings.Join(f, " ")
}

// TestDocsShellBlocksRun runs, for each doc of runHere, its ```sh blocks
// that no other test runs, in order, against a fresh `infergate run --demo`
// (free ports instead of the defaults, data dir ./infergate-data as the
// docs say): every command must succeed, and a "# → TEXT" comment must be
// in what it printed. The working directory has model.onnx and demo-v2.onnx
// (copies of the demo model, as the docs' uploads name them) and one
// dead-lettered request, whose id stands for the synopses' ID.
func TestDocsShellBlocksRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the appliance")
	}
	for _, tool := range []string{"curl", "bash"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is not installed", tool)
			}
			t.Skipf("%s is not installed", tool)
		}
	}
	blocks := runnableBlocks(t)
	for _, name := range runHere {
		t.Run(name, func(t *testing.T) {
			if len(blocks[name]) == 0 {
				t.Fatalf("%s has no block left to run here; remove it from runHere", name)
			}
			runDocBlocks(t, name, blocks[name])
		})
	}
}

func runDocBlocks(t *testing.T, name string, blocks []block) {
	app := startReadmeApp(t, "infergate-data", nil, "--demo")
	base := "http://" + app.http
	token := func() string {
		b, err := os.ReadFile(filepath.Join(app.dir, "infergate-data", "admin-token"))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	api := func(method, path string, body []byte, out any) error {
		req, _ := http.NewRequest(method, base+path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("%s %s: %s", method, path, resp.Status)
		}
		if out == nil {
			return nil
		}
		return json.NewDecoder(resp.Body).Decode(out)
	}
	run := func(c string) (string, error) {
		sh := exec.Command("bash", "-c", c)
		sh.Env, sh.Dir = app.env, app.dir
		out, err := sh.CombinedOutput()
		return string(out), err
	}

	testutil.Eventually(t, 2*time.Minute, func() error {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz: %s", resp.Status)
		}
		return nil
	})
	model, err := os.ReadFile(filepath.Join(app.dir, "infergate-data", "models", "demo", "1", "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"model.onnx", "demo-v2.onnx"} {
		if err := os.WriteFile(filepath.Join(app.dir, f), model, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// One dead letter (a request of the wrong shape) and some demo traffic
	// for the examples that capture requests.
	if out, err := run(`echo '{"request_id":"bad-1","features":[1,2]}' | infergate produce --no-validate`); err != nil {
		t.Fatalf("producing a bad request: %v\n%s", err, out)
	}
	var id string
	testutil.Eventually(t, 2*time.Minute, func() error {
		var l struct {
			Records []struct {
				ID string `json:"id"`
			} `json:"records"`
		}
		if err := api("GET", "/api/v1/dlq?class=validation", nil, &l); err != nil {
			return err
		}
		if len(l.Records) == 0 {
			return fmt.Errorf("no dead letter yet")
		}
		id = l.Records[0].ID
		return nil
	})
	testutil.Eventually(t, 2*time.Minute, func() error {
		if n := strings.Count(app.logs.String(), `msg=demo sent=`); n == 0 {
			return fmt.Errorf("no demo summary yet")
		}
		return nil
	})
	values := map[string]string{"ID": id, "ID...": id, "C": "validation", "M": "demo", "AGE": "1d"}

	for _, b := range blocks {
		var vars []string // VAR=... lines of the block, for its later commands
		for _, c := range shellCommands(b.text) {
			line := synopsis(c.line, values)
			line = strings.ReplaceAll(line, "http://127.0.0.1:8080", base)
			line = strings.ReplaceAll(line, "127.0.0.1:9092", app.broker)
			line = strings.ReplaceAll(line, "go run ./cmd/infergate", "infergate")
			if regexp.MustCompile(`^[A-Z_]+=\$\(`).MatchString(line) {
				vars = append(vars, line)
				continue
			}
			full := strings.Join(append(append([]string(nil), vars...), line), "\n")
			out, err := run(full)
			t.Logf("%s:%d $ %s\n%s", b.file, b.line, line, out)
			if err != nil {
				t.Fatalf("%s:%d: %q: %v\n%s", b.file, b.line, c.line, err, out)
			}
			if c.shows != "" && !strings.Contains(out, c.shows) {
				t.Errorf("%s:%d: %q: the doc says it prints %q; it printed:\n%s", b.file, b.line, c.line, c.shows, out)
			}
			if strings.HasPrefix(line, "curl ") && strings.Contains(line, "/versions") {
				// A person types the next command once the upload loaded.
				waitVersions(t, api, 2)
			}
		}
	}

	// The request bodies the doc shows for an API call ("The same over the
	// API"), sent where the doc's commands left the appliance.
	for path, body := range apiBodies(t, name) {
		if path == "/api/v1/rollouts" {
			// The commands above started the same rollout; a model has
			// one at a time.
			if err := api("POST", "/api/v1/rollouts/demo/abort", []byte(`{"reason": "the API example next"}`), nil); err != nil {
				t.Fatal(err)
			}
		}
		var out map[string]any
		if err := api("POST", path, []byte(body), &out); err != nil {
			t.Errorf("%s: the body the doc shows for POST %s is refused: %v\n%s", name, path, err, body)
			continue
		}
		t.Logf("%s: POST %s with the doc's body: %v", name, path, out)
	}
}

// apiBodies are a doc's ```json blocks followed by a line naming the call
// they are the body of, "(`POST /api/v1/…`)": path → body.
func apiBodies(t *testing.T, name string) map[string]string {
	t.Helper()
	file := name
	if name == "README.md" {
		file = filepath.Join("..", name)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	call := regexp.MustCompile("^\\(`POST (/api/v1/[a-z/]+)`\\)")
	out := map[string]string{}
	for _, bl := range fenced(t, file) {
		if bl.lang != "json" {
			continue
		}
		after := bl.line + strings.Count(bl.text, "\n") + 1 // the closing fence, 1-based
		for i := after; i < len(lines); i++ {
			if strings.TrimSpace(lines[i]) == "" {
				continue
			}
			if m := call.FindStringSubmatch(lines[i]); m != nil {
				out[m[1]] = bl.text
			}
			break
		}
	}
	return out
}

// waitVersions waits until the demo model has n versions available.
func waitVersions(t *testing.T, api func(method, path string, body []byte, out any) error, n int) {
	t.Helper()
	testutil.Eventually(t, time.Minute, func() error {
		var ms struct {
			Models []struct {
				Name     string `json:"name"`
				Versions []struct {
					State string `json:"state"`
				} `json:"versions"`
			} `json:"models"`
		}
		if err := api("GET", "/api/v1/models", nil, &ms); err != nil {
			return err
		}
		for _, m := range ms.Models {
			avail := 0
			for _, v := range m.Versions {
				if v.State == "AVAILABLE" {
					avail++
				}
			}
			if m.Name == "demo" && avail >= n {
				return nil
			}
		}
		return fmt.Errorf("demo has fewer than %d versions available: %+v", n, ms.Models)
	})
}

// The README's examples of what infergate prints — the log lines, a refused
// produce, a consume that gave up, a refused setting and the help excerpt —
// are what it prints.
func TestReadmeShowsWhatItPrints(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the appliance")
	}
	b, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	var texts []block
	for _, bl := range fenced(t, filepath.Join("..", "README.md")) {
		if bl.lang == "" || bl.lang == "text" {
			texts = append(texts, bl)
		}
	}
	find := func(prefix string) string {
		t.Helper()
		for _, bl := range texts {
			if strings.HasPrefix(strings.TrimSpace(bl.text), prefix) {
				return bl.text
			}
		}
		t.Fatalf("README has no output block starting %q any more", prefix)
		return ""
	}
	app := startReadmeApp(t, "infergate-data", nil, "--demo")
	run := func(stdin, c string) (string, int) {
		sh := exec.Command("bash", "-c", c)
		sh.Env, sh.Dir, sh.Stdin = app.env, app.dir, strings.NewReader(stdin)
		var out bytes.Buffer
		sh.Stdout, sh.Stderr = &out, &out
		err := sh.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return out.String(), code
	}

	// The demo's log lines: the ready line as shown, the summary's fields
	// in the order shown (numbers vary).
	logs := find(`level=INFO msg="infergate is ready"`)
	for _, want := range strings.Split(strings.TrimSpace(logs), "\n") {
		re := regexp.QuoteMeta(want)
		re = regexp.MustCompile(`=[0-9.]+`).ReplaceAllString(strings.ReplaceAll(re, `\.`, "."), `=[0-9.e-]+`)
		testutil.Eventually(t, time.Minute, func() error {
			if !regexp.MustCompile(re).MatchString(app.logs.String()) {
				return fmt.Errorf("the log has no line like %q (pattern %s)", want, re)
			}
			return nil
		})
	}

	// A refused produce: README's normal reading, then a short one.
	refused := find("stdin line 2:")
	var normal string
	for _, l := range strings.Split(section(t, readme, "Send requests"), "\n") {
		if strings.HasPrefix(l, "echo '{") {
			normal = strings.TrimSuffix(strings.TrimPrefix(l, "echo '"), "' | infergate produce")
		}
	}
	if normal == "" {
		t.Fatal(`"Send requests" no longer pipes a request into infergate produce`)
	}
	out, code := run(normal+"\n"+`{"request_id":"r-3","features":[1,2]}`+"\n", "infergate produce")
	if code != 2 || out != refused {
		t.Errorf("README shows (exit 2)\n%s\ninfergate produce printed (exit %d)\n%s", refused, code, out)
	}

	// A consume that gave up: the address is one that accepts and never
	// answers, as an unreachable host's would time out.
	gaveUp := strings.TrimSpace(find("infergate consume: gave up after"))
	addr := regexp.MustCompile(`broker at (\S+) \(address from --brokers\)`).FindStringSubmatch(gaveUp)
	if addr == nil {
		t.Fatalf("the consume example changed shape: %s", gaveUp)
	}
	hole := testutil.SilentListener(t)
	out, code = run("", "infergate consume --brokers "+hole)
	if want := strings.ReplaceAll(gaveUp, addr[1], hole); code != 1 || strings.TrimSpace(out) != want {
		t.Errorf("README shows (exit 1)\n%s\ninfergate consume --brokers %s printed (exit %d)\n%s", gaveUp, hole, code, out)
	}

	// A refused setting.
	bad := strings.TrimSpace(find("infergate run: topics.partitions"))
	if out, code = run("", "infergate run --topic-partitions 0"); code != 2 || strings.TrimSpace(out) != bad {
		t.Errorf("README shows (exit 2)\n%s\ninfergate run --topic-partitions 0 printed (exit %d)\n%s", bad, code, out)
	}

	// The help excerpt: each flag's paragraph is in `infergate run --help`.
	help, _ := run("", "infergate run --help")
	for _, para := range strings.Split(strings.Trim(find("--data-dir DIR"), "\n"), "\n\n") {
		if !strings.Contains(help, para) {
			t.Errorf("README's help excerpt has\n%s\nwhich infergate run --help does not print", para)
		}
	}
}

// Every result example in the docs for the README's readings of the demo
// model (r-1, r-2) shows the score the README's table shows, which
// TestReadmeSendAndReadResults checks against the running model.
func TestDocsResultExamplesAgree(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `(r-\\d+)`[^|]*\\|[^|]*\\| `(\\[[^`]*\\])` \\|$")
	scores := map[string]string{}
	for _, m := range row.FindAllStringSubmatch(section(t, string(b), "Send requests"), -1) {
		scores[m[1]] = m[2]
	}
	if len(scores) == 0 {
		t.Fatal("the README's table of readings is gone")
	}
	result := regexp.MustCompile(`"request_id":\s*"(r-\d+)",\s*"model":\s*"demo",\s*"model_version":\s*1,\s*"prediction":\s*(\[[^\]]*\])`)
	n := 0
	for _, f := range docFiles(t) {
		text, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range result.FindAllStringSubmatch(string(text), -1) {
			n++
			if want, ok := scores[m[1]]; ok && m[2] != want {
				t.Errorf("%s shows %s scoring %s; the README's table (checked against the model) says %s", f, m[1], m[2], want)
			}
		}
	}
	if n < 2 {
		t.Fatalf("found %d result examples; did their format change?", n)
	}
}

// Every flag an inline `infergate CMD … --flag` of the docs names is one
// that CMD's --help lists (the ```sh blocks are run; these are not).
func TestDocsInlineCommandsUseRealFlags(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "infergate")
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if out, err := exec.Command(gobin, "build", "-o", bin, "../cmd/infergate").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	helps := map[string]string{}
	help := func(args ...string) string {
		k := strings.Join(args, " ")
		if h, ok := helps[k]; ok {
			return h
		}
		out, _ := exec.Command(bin, append(args, "--help")...).CombinedOutput()
		helps[k] = string(out)
		return string(out)
	}
	span := regexp.MustCompile("`(infergate [a-z][^`]*)`")
	flag := regexp.MustCompile(`(?:^|[\s\[])(--[a-z][a-z0-9_-]*)`)
	n := 0
	for _, f := range docFiles(t) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			for _, m := range span.FindAllStringSubmatch(line, -1) {
				words := strings.Fields(m[1])
				if len(words) < 2 {
					continue
				}
				cmd := []string{words[1]}
				if len(words) > 2 && regexp.MustCompile(`^[a-z][a-z-]*$`).MatchString(words[2]) &&
					(words[1] == "dlq" || words[1] == "model" || words[1] == "rollout" || words[1] == "service" || words[1] == "completion") {
					cmd = append(cmd, words[2])
				}
				text := help(cmd...) + help(cmd[0])
				for _, fm := range flag.FindAllStringSubmatch(m[1], -1) {
					if fm[1] == "--help" {
						continue
					}
					n++
					if !strings.Contains(text, fm[1]) {
						t.Errorf("%s:%d: `%s` names %s, which `infergate %s --help` does not list", f, i+1, m[1], fm[1], strings.Join(cmd, " "))
					}
				}
			}
		}
	}
	if n < 10 {
		t.Fatalf("checked only %d flags; did the docs' inline commands change?", n)
	}
}
