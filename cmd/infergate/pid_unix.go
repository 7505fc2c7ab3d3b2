//go:build unix

package main

import (
	"errors"
	"syscall"
)

// processAlive says whether a process with this PID exists (EPERM: it
// exists, owned by another user, as an appliance running as a service is).
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
