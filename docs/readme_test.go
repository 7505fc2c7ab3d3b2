package docs_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
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

// section returns the text of README's "## title" section.
func section(t *testing.T, readme, title string) string {
	t.Helper()
	i := strings.Index(readme, "\n## "+title+"\n")
	if i < 0 {
		t.Fatalf("README has no section %q", title)
	}
	rest := readme[i+1:]
	if j := strings.Index(rest[3:], "\n## "); j >= 0 {
		rest = rest[:j+3]
	}
	return rest
}

// commands are the shell commands of a section's ```sh blocks, continuation
// lines (ending in | or \) joined, comments dropped.
func commands(text string) []string {
	var out []string
	in := false
	var cur strings.Builder
	for _, line := range strings.Split(text, "\n") {
		switch {
		case strings.HasPrefix(line, "```sh"):
			in = true
			continue
		case strings.HasPrefix(line, "```"):
			in = false
			continue
		}
		if !in {
			continue
		}
		if i := strings.Index(line, "  #"); i >= 0 {
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
		out = append(out, strings.TrimSpace(cur.String()))
		cur.Reset()
	}
	return out
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// readmeApp is an appliance a README test started: the binary built into
// dir, `infergate run` running there on free ports, and the environment the
// section's commands run with (the binary first on PATH).
type readmeApp struct {
	dir, broker, http string
	env               []string
	logs              *syncBuffer // what `infergate run` printed
}

// startReadmeApp builds infergate and runs `infergate run args...` in a
// temporary directory with its data dir at dataDir (relative to it), on
// free ports; extra are more environment entries. It returns once the
// broker accepts connections.
func startReadmeApp(t *testing.T, dataDir string, extra []string, args ...string) *readmeApp {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "infergate")
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if out, err := exec.Command(gobin, "build", "-o", bin, "../cmd/infergate").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	a := &readmeApp{dir: dir, broker: freeAddr(t), http: freeAddr(t)}
	a.env = append([]string{
		"PATH=" + dir + string(os.PathListSeparator) + os.Getenv("PATH"),
		"HOME=" + dir,
		"INFERGATE_DATA_DIR=" + filepath.Join(dir, dataDir),
		"INFERGATE_BROKER_LISTEN=" + a.broker,
		"INFERGATE_MODEL_SERVER_GRPC_LISTEN=" + freeAddr(t),
		"INFERGATE_MODEL_SERVER_REST_LISTEN=" + freeAddr(t),
		"INFERGATE_HTTP_LISTEN=" + a.http,
	}, extra...)
	ctx, cancel := context.WithCancel(context.Background())
	run := exec.CommandContext(ctx, bin, append([]string{"run"}, args...)...)
	run.Env, run.Dir = a.env, dir
	run.Cancel = func() error { return run.Process.Signal(os.Interrupt) }
	a.logs = &syncBuffer{}
	logs := io.MultiWriter(testutil.Writer(t), a.logs)
	run.Stdout, run.Stderr = logs, logs
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); run.Wait() })
	testutil.Eventually(t, 90*time.Second, func() error {
		c, err := net.Dial("tcp", a.broker)
		if err == nil {
			c.Close()
		}
		return err
	})
	return a
}

// The README's "Send requests" and "Read results" sections, run as written
// against a started appliance (on free ports instead of the defaults): the
// JSON example is requests.jsonl, every produce command succeeds, and the
// predictions the README shows are the ones that come back.
func TestReadmeSendAndReadResults(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the appliance")
	}
	if _, err := exec.LookPath("kcat"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("kcat is not installed (.ci/run installs it)")
		}
		t.Skip("kcat is not installed")
	}
	b, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	send, read := section(t, readme, "Send requests"), section(t, readme, "Read results")

	app := startReadmeApp(t, "data", nil)
	dir, env, brokerAddr := app.dir, app.env, app.broker

	// The JSON example of the section is the file the first command reads.
	var example string
	for _, line := range strings.Split(send, "\n") {
		if strings.HasPrefix(line, `{"request_id"`) {
			example = line
			break
		}
	}
	if example == "" {
		t.Fatal(`"Send requests" has no JSON request example`)
	}
	if err := os.WriteFile(filepath.Join(dir, "requests.jsonl"), []byte(example+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmds := commands(send)
	if len(cmds) < 3 {
		t.Fatalf("found only %d commands in \"Send requests\": %q", len(cmds), cmds)
	}
	for _, c := range cmds {
		c = strings.ReplaceAll(c, "127.0.0.1:9092", brokerAddr)
		sh := exec.Command("sh", "-c", c)
		sh.Env, sh.Dir = env, dir
		out, err := sh.CombinedOutput()
		if err != nil {
			t.Fatalf("README command %q: %v\n%s", c, err, out)
		}
		t.Logf("$ %s\n%s", c, out)
	}

	// Read results: the bounded consume command of the section, run as
	// written, brings one result per request sent.
	var consume string
	for _, c := range commands(read) {
		if strings.Contains(c, "infergate consume") && strings.Contains(c, "-n ") {
			consume = c
		}
	}
	if consume == "" {
		t.Fatal(`"Read results" has no bounded "infergate consume … -n N" command`)
	}
	consume = regexp.MustCompile(`-n \d+`).ReplaceAllString(consume, fmt.Sprintf("-n %d", len(cmds)))
	sh := exec.Command("sh", "-c", consume)
	sh.Env, sh.Dir = env, dir
	out, err := sh.Output()
	if err != nil {
		t.Fatalf("README command %q: %v\n%s", consume, err, out)
	}
	got := map[string][]string{} // request_id → predictions seen
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		var r struct {
			RequestID  string          `json:"request_id"`
			Prediction json.RawMessage `json:"prediction"`
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("consume printed a line that is not a result: %q", sc.Text())
		}
		got[r.RequestID] = append(got[r.RequestID], string(r.Prediction))
	}
	if len(got) == 0 {
		t.Fatalf("no results:\n%s", out)
	}

	// What the README claims: the table of readings, and the result example.
	row := regexp.MustCompile("^\\| `(r-\\d+)`[^|]*\\|[^|]*\\| `(\\[[^`]*\\])` \\|$")
	claims := 0
	for _, line := range strings.Split(send, "\n") {
		m := row.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		claims++
		for _, p := range got[m[1]] {
			if p != m[2] {
				t.Errorf("README says %s scores %s; it scored %s", m[1], m[2], p)
			}
		}
		if len(got[m[1]]) == 0 {
			t.Errorf("README shows %s's score, but no command of the section sent it (results: %v)", m[1], got)
		}
	}
	if claims == 0 {
		t.Fatal("the README's table of readings and their scores is gone")
	}
	var shown struct {
		RequestID  string          `json:"request_id"`
		Prediction json.RawMessage `json:"prediction"`
	}
	for _, line := range strings.Split(read, "\n") {
		if strings.HasPrefix(line, `{"request_id"`) {
			if err := json.Unmarshal([]byte(line), &shown); err != nil {
				t.Fatal(err)
			}
		}
	}
	if shown.RequestID == "" {
		t.Fatal(`"Read results" shows no result example`)
	}
	for _, p := range got[shown.RequestID] {
		if p != string(shown.Prediction) {
			t.Errorf("README's result example shows %s scoring %s; it scored %s", shown.RequestID, shown.Prediction, p)
		}
	}
}
