package bench

import (
	"fmt"
	"time"
	"unsafe"

	"golang.org/x/sys/windows"
)

// processMemoryCounters is PROCESS_MEMORY_COUNTERS (psapi.h).
type processMemoryCounters struct {
	cb                         uint32
	pageFaultCount             uint32
	peakWorkingSetSize         uintptr
	workingSetSize             uintptr
	quotaPeakPagedPoolUsage    uintptr
	quotaPagedPoolUsage        uintptr
	quotaPeakNonPagedPoolUsage uintptr
	quotaNonPagedPoolUsage     uintptr
	pagefileUsage              uintptr
	peakPagefileUsage          uintptr
}

// K32GetProcessMemoryInfo is kernel32's export of psapi's GetProcessMemoryInfo
// (Windows 7 and later); x/sys/windows does not wrap it.
var procGetProcessMemoryInfo = windows.NewLazySystemDLL("kernel32.dll").NewProc("K32GetProcessMemoryInfo")

// sample reads CPU times and the working set, Windows' resident set.
func (selfProc) sample() (procSample, error) {
	s := procSample{at: time.Now()}
	h := windows.CurrentProcess()
	var created, exited, kernel, user windows.Filetime
	if err := windows.GetProcessTimes(h, &created, &exited, &kernel, &user); err != nil {
		return s, fmt.Errorf("GetProcessTimes: %w", err)
	}
	// FILETIME durations count 100 ns units.
	ticks := func(f windows.Filetime) int64 { return int64(f.HighDateTime)<<32 | int64(f.LowDateTime) }
	s.cpu = time.Duration((ticks(kernel) + ticks(user)) * 100)
	var mc processMemoryCounters
	mc.cb = uint32(unsafe.Sizeof(mc))
	if ok, _, err := procGetProcessMemoryInfo.Call(uintptr(h), uintptr(unsafe.Pointer(&mc)), uintptr(mc.cb)); ok == 0 {
		return s, fmt.Errorf("GetProcessMemoryInfo: %w", err)
	}
	s.rss, s.hwm = int64(mc.workingSetSize), int64(mc.peakWorkingSetSize)
	return s, nil
}
