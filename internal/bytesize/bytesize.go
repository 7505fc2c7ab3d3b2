// Package bytesize reads and writes byte sizes with units, so every size setting (config
// file, environment, flag, dashboard) and every CLI option takes "512MiB" as well as
// "536870912".
package bytesize

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// units are the suffixes Parse accepts, case-insensitively: binary (KiB = 1024) and
// decimal (kB = 1000), as Kubernetes and systemd write them.
var units = []struct {
	name string
	mult int64
}{
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40},
	{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12},
	{"b", 1},
}

// Parse reads a whole number of bytes, optionally with a unit and a fraction:
// "1048576", "512MiB", "1.5 GiB", "10MB", "0". Negative numbers are read too
// (callers' validation says what their setting allows); a result that is not a
// whole number of bytes, or does not fit an int64, is an error.
func Parse(s string) (int64, error) {
	in := strings.TrimSpace(s)
	if n, err := strconv.ParseInt(in, 10, 64); err == nil {
		return n, nil
	}
	lower := strings.ToLower(in)
	for _, u := range units {
		num, ok := strings.CutSuffix(lower, u.name)
		if !ok {
			continue
		}
		num = strings.TrimSpace(num)
		if n, err := strconv.ParseInt(num, 10, 64); err == nil {
			if n > math.MaxInt64/u.mult || n < math.MinInt64/u.mult {
				return 0, fmt.Errorf("%q is too large", s)
			}
			return n * u.mult, nil
		}
		f, err := strconv.ParseFloat(num, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || num == "" {
			break
		}
		v := f * float64(u.mult)
		if math.Abs(v) >= math.MaxInt64 {
			return 0, fmt.Errorf("%q is too large", s)
		}
		if v != math.Trunc(v) {
			return 0, fmt.Errorf("%q is not a whole number of bytes", s)
		}
		return int64(v), nil
	}
	return 0, fmt.Errorf("%q is not a size such as 1048576, 512KiB, 64MiB or 2GiB", s)
}

// Format writes n with the largest binary unit that divides it exactly ("512MiB",
// "1GiB"), else as a plain number, so Parse(Format(n)) == n.
func Format(n int64) string {
	if n != 0 {
		for _, u := range []struct {
			name string
			mult int64
		}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
			if n%u.mult == 0 {
				return strconv.FormatInt(n/u.mult, 10) + u.name
			}
		}
	}
	return strconv.FormatInt(n, 10)
}
