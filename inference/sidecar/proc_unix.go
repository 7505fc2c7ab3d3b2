//go:build unix && !linux

package sidecar

import "syscall"

// sysProcAttr puts the child in its own process group. Only Linux has a
// parent-death signal: elsewhere a SIGKILLed infergate leaves the child
// running until its ports are needed again.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

func signalGroup(pid int, sig syscall.Signal) error {
	return syscall.Kill(-pid, sig)
}
