//go:build !linux

package testenv

import "syscall"

// sysProcAttr puts each component in its own process group so stop can
// signal everything it forked. Only Linux can also tie the child's life to
// the test binary's.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
