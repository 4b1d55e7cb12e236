package redistest

import "os/exec"

// Installed reports whether a redis-server binary is on PATH, so that a
// caller with another backend to fall back on (redstreamtest's miniredis)
// can choose it instead of having [Start] skip the test.
func Installed() bool {
	_, err := exec.LookPath(serverBinary)
	return err == nil
}

// Required reports whether [EnvRequire] is set to a true value: a missing
// redis-server must fail the test, not skip it or fall back.
func Required() bool { return requireRedis() }
