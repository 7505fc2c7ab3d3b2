package bytesize

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
	}{
		{"0", 0}, {"1048576", 1 << 20}, {"512MiB", 512 << 20}, {"512 MiB", 512 << 20}, {"512mib", 512 << 20},
		{"1.5GiB", 3 << 29}, {"10MB", 10_000_000}, {"4kB", 4000}, {"2KiB", 2048}, {"1TiB", 1 << 40}, {"100B", 100},
		{"-1", -1},
	} {
		got, err := Parse(c.in)
		if err != nil || got != c.want {
			t.Errorf("Parse(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "MiB", "12 apples", "1.3B", "0.1KiB", "9999999TiB", "1e30MB", "NaNMiB", "infMiB", "--1MiB"} {
		if n, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) = %d, want an error", bad, n)
		} else if !strings.Contains(err.Error(), bad) {
			t.Errorf("Parse(%q): error %q does not quote the input", bad, err)
		}
	}
}

func TestFormat(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 1 << 20: "1MiB", 256 << 20: "256MiB", 3 << 29: "1536MiB", 1000: "1000", 5 << 30: "5GiB", -2048: "-2KiB"} {
		if got := Format(n); got != want {
			t.Errorf("Format(%d) = %q, want %q", n, got, want)
		}
	}
}

// FuzzParse: Parse never panics, and whatever it accepts Format writes back to the same value.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"512MiB", "1.5 GiB", "10MB", "0", "-7", "1e3KiB", "9223372036854775807"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := Parse(s)
		if err != nil {
			return
		}
		back, err := Parse(Format(n))
		if err != nil || back != n {
			t.Fatalf("Parse(%q) = %d; Format gives %q which parses to %d, %v", s, n, Format(n), back, err)
		}
	})
}
