//go:build !linux

package main

import "syscall"

// sysProcAttr returns nil: parent-death signals are Linux-only, so elsewhere
// the server is stopped only by the benchmark's own cleanup.
func sysProcAttr() *syscall.SysProcAttr { return nil }
