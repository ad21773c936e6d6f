package testenv

import "syscall"

// sysProcAttr puts each component in its own process group, so stop can
// signal everything it forked, and asks the kernel to kill it when the test
// binary dies, so no etcd or API server outlives a crashed or killed test.
//
// Pdeathsig fires when the thread that forked the child exits. The Go
// runtime only ends threads whose goroutine exits while locked with
// runtime.LockOSThread, which this package never does.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
