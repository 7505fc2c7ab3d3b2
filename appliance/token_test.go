package appliance

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/infergate/infergate/internal/testutil"
)

// Issue 9 row 8: an empty admin-token file (a crash between create and write, or an operator
// "clearing" it) made New recurse until the stack overflowed. It is now replaced by a new
// token, told in the log like at the first start (the token itself only by
// GeneratedToken, for a terminal — never in the log stream); a file holding something that is not
// a token is refused with a message naming the file.
func TestEmptyAdminTokenFileIsReplaced(t *testing.T) {
	for _, content := range []string{"", "\n", "  \t\n"} {
		c := testConfig(t)
		p := DataPaths(c.DataDir)
		if err := os.WriteFile(p.AdminToken, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		var logs bytes.Buffer
		a, err := New(c, slog.New(slog.NewTextHandler(&logs, nil)))
		if err != nil {
			t.Fatalf("file %q: %v", content, err)
		}
		tok := a.AdminToken()
		if len(tok) < 32 {
			t.Fatalf("file %q: token %q", content, tok)
		}
		if got, err := ReadAdminToken(c.DataDir); err != nil || got != tok {
			t.Errorf("file %q: file now holds %q (%v), appliance uses %q", content, got, err, tok)
		}
		if fi, err := os.Stat(p.AdminToken); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("file %q: token file mode %v (%v)", content, fi.Mode(), err)
		}
		if !strings.Contains(logs.String(), "admin token file was empty") || !strings.Contains(logs.String(), p.AdminToken) {
			t.Errorf("file %q: no log line naming the new token's file:\n%s", content, logs.String())
		}
		if strings.Contains(logs.String(), tok) {
			t.Errorf("file %q: the token is in the log stream:\n%s", content, logs.String())
		}
		if a.GeneratedToken() != tok {
			t.Errorf("file %q: GeneratedToken %q, want the new token", content, a.GeneratedToken())
		}
		// The next start keeps the token and does not offer it again.
		logs.Reset()
		b, err := New(c, slog.New(slog.NewTextHandler(&logs, nil)))
		if err != nil || b.AdminToken() != tok || strings.Contains(logs.String(), tok) || b.GeneratedToken() != "" {
			t.Errorf("file %q: second start: token %q (%v), generated %q, logs %s", content, b.AdminToken(), err, b.GeneratedToken(), logs.String())
		}
	}
}

func TestBrokenAdminTokenFileIsRefused(t *testing.T) {
	for _, content := range []string{"short\n", "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", "first-line-0123456789\nsecond-line-0123456789\n"} {
		c := testConfig(t)
		p := DataPaths(c.DataDir)
		if err := os.WriteFile(p.AdminToken, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := New(c, testutil.Logger(t))
		if err == nil || !strings.Contains(err.Error(), p.AdminToken) || !strings.Contains(err.Error(), "delete it") {
			t.Errorf("file %q: want a refusal naming %s, got %v", content, p.AdminToken, err)
		}
		if _, err := ReadAdminToken(c.DataDir); err == nil {
			t.Errorf("file %q: ReadAdminToken accepted it", content)
		}
		if got, _ := os.ReadFile(p.AdminToken); string(got) != content {
			t.Errorf("file %q: changed to %q", content, got)
		}
	}
}

// The first start generates the token and says where it is; the token
// itself is never written into the (JSON) log stream.
func TestFirstTokenNotLogged(t *testing.T) {
	c := testConfig(t)
	c.Log.Format = "json"
	var logs bytes.Buffer
	a, err := New(c, NewLogger(c.Log, &logs))
	if err != nil {
		t.Fatal(err)
	}
	if a.GeneratedToken() == "" || a.GeneratedToken() != a.AdminToken() {
		t.Fatalf("GeneratedToken %q, AdminToken %q", a.GeneratedToken(), a.AdminToken())
	}
	if strings.Contains(logs.String(), a.AdminToken()) {
		t.Fatalf("token in the log stream:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "generated the admin token") {
		t.Fatalf("no log line about the generated token:\n%s", logs.String())
	}
}

// JSON logs write durations as Go duration strings, like the text format,
// not as integer nanoseconds.
func TestJSONLogDurations(t *testing.T) {
	var buf bytes.Buffer
	l := NewLogger(LogConfig{Level: "info", Format: "json"}, &buf)
	l.Info("x", "took", 1500*time.Millisecond, slog.Group("g", "wait", 250*time.Microsecond))
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatalf("%v: %s", err, buf.String())
	}
	if m["took"] != "1.5s" {
		t.Errorf("took = %#v, want \"1.5s\" (%s)", m["took"], buf.String())
	}
	if g, _ := m["g"].(map[string]any); g == nil || g["wait"] != "250µs" {
		t.Errorf("g.wait = %#v, want \"250µs\" (%s)", m["g"], buf.String())
	}
}
