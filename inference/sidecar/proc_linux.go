package sidecar

import "syscall"

// sysProcAttr puts the child in its own process group, so stopping it also
// stops anything it started, and asks the kernel to SIGKILL it when its
// parent thread dies: that is what keeps a SIGKILLed infergate from leaving
// an orphaned tensorflow_model_server holding the ports and the GPU/RAM.
// Pdeathsig fires when the forking *thread* exits, so starts happen on one
// locked, long-lived thread (see starter).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

func signalGroup(pid int, sig syscall.Signal) error {
	return syscall.Kill(-pid, sig)
}
