//go:build !linux

package redistest

import "syscall"

// sysProcAttr returns nil: parent-death signals are Linux-only, so elsewhere
// the server is stopped only by Main and test cleanups.
func sysProcAttr() *syscall.SysProcAttr { return nil }
