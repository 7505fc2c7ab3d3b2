package bench

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// procSample is one reading of a process's resource use.
type procSample struct {
	at  time.Time
	cpu time.Duration // user + system CPU time since the process started
	rss int64         // resident set size, bytes (VmRSS)
	hwm int64         // peak resident set size, bytes (VmHWM)
}

// procSource reads a process's resource use.
type procSource interface {
	sample() (procSample, error)
}

// selfProc is this process: the self-contained appliance runs here. Its
// figures include the load generator and the collector (documented in
// docs/performance.md): they share the same two cores. Its sample method is
// per platform (procstat_unix.go, procstat_windows.go).
type selfProc struct{}

// pidProc is another process (an appliance started by `infergate run`),
// read from /proc, so Linux only.
type pidProc int

// clockTick is USER_HZ, the unit of utime and stime in /proc/PID/stat: 100
// on every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

func (p pidProc) sample() (procSample, error) {
	s := procSample{at: time.Now()}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", int(p)))
	if err != nil {
		return s, fmt.Errorf("--pid %d: %w", int(p), err)
	}
	s.cpu, err = parseStatCPU(stat)
	if err != nil {
		return s, fmt.Errorf("--pid %d: %w", int(p), err)
	}
	s.rss, s.hwm, err = readStatus(fmt.Sprintf("/proc/%d/status", int(p)))
	return s, err
}

// parseStatCPU returns utime+stime of a /proc/PID/stat line. The command
// name (field 2) may hold spaces and parentheses, so fields are counted
// after its closing parenthesis.
func parseStatCPU(stat []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed stat %q", stat)
	}
	f := bytes.Fields(stat[i+1:])
	// After ")": state(3) ppid(4) ... utime(14) stime(15); f[0] is field 3.
	if len(f) < 13 {
		return 0, fmt.Errorf("malformed stat %q", stat)
	}
	ut, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	st, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("malformed stat %q", stat)
	}
	return time.Duration(ut+st) * clockTick, nil
}

func readStatus(path string) (rss, hwm int64, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	return parseStatus(b)
}

// parseStatus reads VmRSS and VmHWM (kB) out of /proc/PID/status.
func parseStatus(b []byte) (rss, hwm int64, err error) {
	for line := range bytes.Lines(b) {
		var dst *int64
		switch {
		case bytes.HasPrefix(line, []byte("VmRSS:")):
			dst = &rss
		case bytes.HasPrefix(line, []byte("VmHWM:")):
			dst = &hwm
		default:
			continue
		}
		f := bytes.Fields(line)
		if len(f) < 2 {
			return 0, 0, fmt.Errorf("malformed status line %q", line)
		}
		kb, err := strconv.ParseInt(string(f[1]), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("malformed status line %q", line)
		}
		*dst = kb * 1024
	}
	if rss == 0 {
		return 0, 0, fmt.Errorf("no VmRSS in status")
	}
	return rss, hwm, nil
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }
