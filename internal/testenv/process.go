package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// process is one component of the environment running as a child process.
// Its stdout and stderr go to a log file that survives restarts (appended).
type process struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	logFile *os.File

	done    chan struct{} // closed once the process has been reaped
	mu      sync.Mutex
	waitErr error
	stopped bool // Stop was requested, so an exit is expected
}

// startProcess launches bin in its own process group with output appended
// to logPath.
func startProcess(name, logPath, bin string, args []string, env []string) (*process, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%s: open log: %w", name, err)
	}
	// Not exec.CommandContext: the process must outlive the context that
	// started it and is ended by stop.
	cmd := exec.Command(bin, args...)
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("%s: start %s: %w", name, bin, err)
	}
	p := &process{name: name, logPath: logPath, cmd: cmd, logFile: f, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.waitErr = err
		p.mu.Unlock()
		_ = f.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended, and how.
func (p *process) exited() (bool, error) {
	select {
	case <-p.done:
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.waitErr == nil {
			return true, errors.New("exited with status 0")
		}
		return true, p.waitErr
	default:
		return false, nil
	}
}

// unexpectedExit reports an exit that nobody asked for.
func (p *process) unexpectedExit() bool {
	p.mu.Lock()
	stopped := p.stopped
	p.mu.Unlock()
	gone, _ := p.exited()
	return gone && !stopped
}

// stop asks the whole process group to terminate, then kills it after grace.
func (p *process) stop(grace time.Duration) error {
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	select {
	case <-p.done:
		return nil
	default:
	}
	pgid := p.pid()
	// A negative pid signals the whole group, so helpers a component may have
	// forked go too.
	if err := syscall.Kill(-pgid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("%s: signal process group %d: %w", p.name, pgid, err)
	}
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-p.done:
		return nil
	case <-timer.C:
	}
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("%s: kill process group %d: %w", p.name, pgid, err)
	}
	<-p.done
	return nil
}

// exitError describes a process that ended while we waited on it, with the
// last log line, which is almost always the reason.
func (p *process) exitError(waitErr error) error {
	return fmt.Errorf("%s exited (%v): %s (log: %s)", p.name, waitErr, lastLogLine(p.logPath), p.logPath)
}

// waitReady polls cond until it returns true, failing early when the process
// dies so a crash surfaces at once instead of as a timeout.
func (p *process) waitReady(ctx context.Context, what string, cond func(context.Context) (bool, error)) error {
	var lastErr error
	err := wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		if gone, werr := p.exited(); gone {
			return false, p.exitError(werr)
		}
		ok, err := cond(ctx)
		if err != nil {
			lastErr = err
			return false, nil
		}
		return ok, nil
	})
	if err == nil {
		return nil
	}
	if gone, werr := p.exited(); gone {
		return p.exitError(werr)
	}
	if ctx.Err() != nil {
		if lastErr != nil {
			return fmt.Errorf("%s: waiting for %s: %w (last error: %v; log: %s)", p.name, what, ctx.Err(), lastErr, p.logPath)
		}
		return fmt.Errorf("%s: waiting for %s: %w (log: %s)", p.name, what, ctx.Err(), p.logPath)
	}
	return err
}

// rssBytes reads the resident set size of the process from /proc.
func (p *process) rssBytes() (uint64, error) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p.pid()), "status"))
	if err != nil {
		return 0, fmt.Errorf("%s: read status: %w", p.name, err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s: parse VmRSS %q: %w", p.name, v, err)
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("%s: no VmRSS in /proc status (process gone?)", p.name)
}

// lastLogLine returns the last non-empty line of a log file, trimmed to a
// readable length, for one-line error messages.
func lastLogLine(path string) string {
	tail, err := readTail(path, 8<<10)
	if err != nil {
		return "no log"
	}
	lines := strings.Split(strings.TrimSpace(string(tail)), "\n")
	last := strings.TrimSpace(lines[len(lines)-1])
	if last == "" {
		return "empty log"
	}
	const max = 400
	if len(last) > max {
		last = last[:max] + "…"
	}
	return last
}

// readTail returns at most n bytes from the end of the file.
func readTail(path string, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	off := max(st.Size()-n, 0)
	buf := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if off > 0 {
		// Start at a line boundary.
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			buf = buf[i+1:]
		}
	}
	return buf, nil
}

// logContains reports whether the log, from byte offset on, contains s.
func logContains(path string, offset int64, s string) bool {
	data, err := os.ReadFile(path)
	if err != nil || int64(len(data)) < offset {
		return false
	}
	return bytes.Contains(data[offset:], []byte(s))
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// freePort finds a loopback TCP port nobody listens on. It prefers ports
// below the kernel's ephemeral range: the components open many outgoing
// connections, and those take ephemeral ports, so a port from that range
// could be taken between this check and the component binding it.
func freePort(rnd func(n int) int) (int, error) {
	low := ephemeralLow()
	const floor = 20000
	if low-floor > 1000 {
		for range 64 {
			port := floor + rnd(low-floor)
			if portFree(port) {
				return port, nil
			}
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func portFree(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}

// ephemeralLow is the first port of the kernel's ephemeral range.
func ephemeralLow() int {
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	fields := strings.Fields(string(data))
	if len(fields) != 2 {
		return 32768
	}
	low, err := strconv.Atoi(fields[0])
	if err != nil {
		return 32768
	}
	return low
}

// addrInUse is what Go and etcd print when a listen fails on a taken port.
const addrInUse = "address already in use"
