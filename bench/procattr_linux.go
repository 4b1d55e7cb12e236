//go:build linux

package main

import "syscall"

// sysProcAttr puts redis-server in its own process group, so a Ctrl-C at the
// terminal reaches only the benchmark, which then stops the server itself,
// and makes the kernel SIGKILL the server if the benchmark dies without
// stopping it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
