//go:build unix

package redistest

import (
	"errors"
	"os"
	"syscall"
)

var errUnsupported = errors.New("process signals are not supported here")

func pauseProcess(p *os.Process) error  { return p.Signal(syscall.SIGSTOP) }
func resumeProcess(p *os.Process) error { return p.Signal(syscall.SIGCONT) }
