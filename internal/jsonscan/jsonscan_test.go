package jsonscan_test

import (
	"encoding/json"
	"testing"
	"unicode/utf8"

	"github.com/infergate/infergate/internal/jsonscan"
)

func TestFaults(t *testing.T) {
	for _, c := range []struct {
		in    string
		fault jsonscan.Fault
		at    int
	}{
		{`"abc"`, jsonscan.OK, 5},
		{`"a\"b"`, jsonscan.OK, 6},
		{`"abc`, jsonscan.Unterminated, 4},
		{"\"a\x01\"", jsonscan.Control, 2},
		{`"a\x"`, jsonscan.BadEscape, 3},
		{`"a\`, jsonscan.BadEscape, 3},
		{`"\u12"`, jsonscan.ShortHex, 3},
		{`"\u12g4"`, jsonscan.BadHex, 3},
		{`"\ud83d\u12"`, jsonscan.ShortHex, 9},
		{`"\ud83dx"`, jsonscan.OK, 9},
	} {
		_, end, f := jsonscan.String([]byte(c.in), 0)
		if f != c.fault || end != c.at {
			t.Errorf("String(%s) = fault %d at %d, want %d at %d", c.in, f, end, c.fault, c.at)
		}
	}
	for _, c := range []struct {
		in    string
		fault jsonscan.Fault
		at    int
	}{
		{`0`, jsonscan.OK, 1}, {`01`, jsonscan.OK, 1}, {`-12.5e+3,`, jsonscan.OK, 8},
		{`-`, jsonscan.NoDigits, 1}, {`x`, jsonscan.NoDigits, 0}, {`1.`, jsonscan.NoFraction, 2},
		{`1.5e`, jsonscan.NoExponent, 4}, {`1e-x`, jsonscan.NoExponent, 3},
	} {
		end, f := jsonscan.Number([]byte(c.in), 0)
		if f != c.fault || end != c.at {
			t.Errorf("Number(%s) = fault %d at %d, want %d at %d", c.in, f, end, c.fault, c.at)
		}
	}
}

// FuzzString: what String accepts, encoding/json accepts as the same
// string, and AppendString writes it back as JSON that reads the same.
func FuzzString(f *testing.F) {
	for _, s := range []string{`"plain"`, `"\ud83d\ude00\u00e9\n\t\\\/"`, `"\ud800x"`, `"\ud800\ud800"`, `"\x"`, "\"\x7f\xff\""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 || b[0] != '"' {
			return
		}
		s, end, fault := jsonscan.String(b, 0)
		var std string
		stdErr := json.Unmarshal(b[:end], &std)
		if fault != jsonscan.OK {
			if end <= len(b) && json.Valid(b[:end]) && fault != jsonscan.Unterminated {
				t.Fatalf("%q: fault %d at %d, but encoding/json reads %q", b, fault, end, b[:end])
			}
			return
		}
		if utf8.Valid(s) && (stdErr != nil || std != string(s)) {
			t.Fatalf("%q: read %q, encoding/json %q (%v)", b, s, std, stdErr)
		}
		out := jsonscan.AppendString(nil, s)
		var back string
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatalf("%q -> %s: %v", s, out, err)
		}
		if utf8.Valid(s) && back != string(s) {
			t.Fatalf("%q -> %s -> %q", s, out, back)
		}
		if string(jsonscan.AppendString(nil, string(s))) != string(out) {
			t.Fatalf("%q: string and []byte forms differ", s)
		}
	})
}
