//go:build !unix

package redistest

import (
	"errors"
	"os"
)

var errUnsupported = errors.New("process signals are not supported here")

func pauseProcess(*os.Process) error  { return errUnsupported }
func resumeProcess(*os.Process) error { return errUnsupported }
