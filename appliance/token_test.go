package appliance

import (
	"bytes"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/infergate/infergate/internal/testutil"
)

// Issue 9 row 8: an empty admin-token file (a crash between create and write, or an operator
// "clearing" it) made New recurse until the stack overflowed. It is now replaced by a new
// token, shown once in the log like at the first start; a file holding something that is not
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
		if !strings.Contains(logs.String(), "admin token file was empty") || !strings.Contains(logs.String(), tok) {
			t.Errorf("file %q: no log line showing the new token:\n%s", content, logs.String())
		}
		// The next start keeps the token and does not print it again.
		logs.Reset()
		b, err := New(c, slog.New(slog.NewTextHandler(&logs, nil)))
		if err != nil || b.AdminToken() != tok || strings.Contains(logs.String(), tok) {
			t.Errorf("file %q: second start: token %q (%v), logs %s", content, b.AdminToken(), err, logs.String())
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
