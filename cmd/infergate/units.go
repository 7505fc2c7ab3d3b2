package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// parseAge reads a duration as Go does (90s, 1h30m) plus days and weeks,
// which time.ParseDuration lacks and which are what one asks of a DLQ:
// 1d, 2w, 1w3d, 1d12h.
func parseAge(s string) (time.Duration, error) {
	in := strings.TrimSpace(s)
	if in == "" {
		return 0, errors.New("empty duration")
	}
	var total time.Duration
	rest := in
	for rest != "" {
		i := 0
		for i < len(rest) && (rest[i] >= '0' && rest[i] <= '9' || rest[i] == '.') {
			i++
		}
		j := i
		for j < len(rest) && (rest[j] < '0' || rest[j] > '9') && rest[j] != '.' {
			j++
		}
		num, unit := rest[:i], rest[i:j]
		rest = rest[j:]
		if num == "" || unit == "" {
			return 0, fmt.Errorf("%q is not a duration (e.g. 30m, 12h, 1d, 2w, 1d12h)", in)
		}
		var d time.Duration
		switch unit {
		case "d", "w":
			n, err := strconv.ParseFloat(num, 64)
			if err != nil {
				return 0, fmt.Errorf("%q is not a duration (e.g. 30m, 12h, 1d, 2w, 1d12h)", in)
			}
			day := 24 * time.Hour
			if unit == "w" {
				day *= 7
			}
			d = time.Duration(n * float64(day))
		default:
			var err error
			if d, err = time.ParseDuration(num + unit); err != nil {
				return 0, fmt.Errorf("%q is not a duration (e.g. 30m, 12h, 1d, 2w, 1d12h)", in)
			}
		}
		total += d
	}
	if total <= 0 {
		return 0, fmt.Errorf("%q: the duration must be positive", in)
	}
	return total, nil
}

// ageFlag is a flag.Value for parseAge.
type ageFlag struct{ d *time.Duration }

func (f ageFlag) String() string {
	if f.d == nil || *f.d == 0 {
		return ""
	}
	return formatAge(*f.d)
}

func (f ageFlag) Set(s string) error {
	d, err := parseAge(s)
	if err != nil {
		return err
	}
	*f.d = d
	return nil
}

// formatAge prints a duration the way parseAge reads it, with days for long ones.
func formatAge(d time.Duration) string {
	const day = 24 * time.Hour
	if d < day {
		return d.Round(time.Second).String()
	}
	days := d / day
	rest := (d - days*day).Round(time.Second)
	if rest == 0 {
		return fmt.Sprintf("%dd", days)
	}
	return fmt.Sprintf("%dd%s", days, rest)
}

// formatBytes prints a size with a binary unit: 312 B, 1.5 KiB, 20 MiB.
func formatBytes(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	f := float64(n)
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB"} {
		f /= 1024
		if f < 1024 || u == "TiB" {
			if f < 10 {
				return strings.TrimSuffix(fmt.Sprintf("%.1f", f), ".0") + " " + u
			}
			return fmt.Sprintf("%.0f %s", f, u)
		}
	}
	return ""
}
