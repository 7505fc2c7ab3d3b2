//go:build unix

package bench

import (
	"fmt"
	"runtime"
	"syscall"
	"time"
)

func (selfProc) sample() (procSample, error) {
	s := procSample{at: time.Now()}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return s, fmt.Errorf("getrusage: %w", err)
	}
	s.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	if runtime.GOOS != "linux" {
		// No /proc: the peak is what getrusage knows (bytes on macOS,
		// kilobytes on the BSDs), reported as the current RSS as well.
		peak := int64(ru.Maxrss)
		if runtime.GOOS != "darwin" {
			peak *= 1024
		}
		s.rss, s.hwm = peak, peak
		return s, nil
	}
	var err error
	s.rss, s.hwm, err = readStatus("/proc/self/status")
	return s, err
}
