package gitserver

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// SSHServer is OpenSSH's sshd on a loopback port, with a throwaway host key
// and one authorised client key, serving git-upload-pack/git-receive-pack
// as the current user.
type SSHServer struct {
	Addr string // 127.0.0.1:port
	User string
	// HostKey is the server's public host key.
	HostKey ssh.PublicKey
	// ClientKey is the authorised client key (unencrypted OpenSSH PEM).
	ClientKey []byte
	// ClientKeyEncrypted is the same key encrypted with Passphrase.
	ClientKeyEncrypted []byte
	Passphrase         string
	// KnownHosts is a known_hosts line for this server.
	KnownHosts string
}

// RequireSSHD skips the test when sshd is absent, and under -short.
func RequireSSHD(t testing.TB) {
	t.Helper()
	RequireGit(t)
	if testing.Short() {
		// A real sshd per test is seconds: the full run, not the inner loop.
		t.Skip("starts sshd; skipped under -short")
	}
	if _, err := os.Stat(SSHD); err != nil {
		t.Skipf("%s not installed (apt-get install openssh-server): SSH tests need it", SSHD)
	}
}

// URL returns the ssh:// URL of a repository path on this server.
func (s *SSHServer) URL(repoPath string) string {
	return "ssh://" + s.User + "@" + s.Addr + repoPath
}

// NewKey returns a fresh ed25519 key as an OpenSSH PEM (encrypted when
// passphrase is not empty) and its public key.
func NewKey(t testing.TB, passphrase string) ([]byte, ssh.PublicKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var block *pem.Block
	if passphrase == "" {
		block, err = ssh.MarshalPrivateKey(priv, "gitsync-test")
	} else {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(priv, "gitsync-test", []byte(passphrase))
	}
	if err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(block), sp
}

// StartSSHD starts sshd for the test and stops it at cleanup.
func StartSSHD(t testing.TB) *SSHServer {
	t.Helper()
	RequireSSHD(t)
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		// sshd running as root insists on its privilege separation
		// directory, which a fresh container may lack.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Fatalf("create /run/sshd: %v", err)
		}
	}
	dir := t.TempDir()
	hostPEM, hostPub := NewKey(t, "")
	hostKeyFile := filepath.Join(dir, "host_ed25519")
	if err := os.WriteFile(hostKeyFile, hostPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	clientPEM, clientPub := NewKey(t, "")
	s := &SSHServer{User: u.Username, HostKey: hostPub, ClientKey: clientPEM, Passphrase: "correct horse battery"}
	// The encrypted copy must be the same key, so both are authorised.
	raw, err := ssh.ParseRawPrivateKey(clientPEM)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKeyWithPassphrase(raw, "gitsync-test", []byte(s.Passphrase))
	if err != nil {
		t.Fatal(err)
	}
	s.ClientKeyEncrypted = pem.EncodeToMemory(block)
	authKeys := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(authKeys, ssh.MarshalAuthorizedKey(clientPub), 0o600); err != nil {
		t.Fatal(err)
	}

	// A port picked by the kernel may be taken again before sshd binds it;
	// try a few.
	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		cfg := filepath.Join(dir, "sshd_config")
		conf := strings.Join([]string{
			"Port " + strconv.Itoa(port),
			"ListenAddress 127.0.0.1",
			"HostKey " + hostKeyFile,
			"AuthorizedKeysFile " + authKeys,
			"PidFile none",
			"StrictModes no",
			"UsePAM no",
			"PasswordAuthentication no",
			"KbdInteractiveAuthentication no",
			"PubkeyAuthentication yes",
			"PermitRootLogin prohibit-password",
			"AllowTcpForwarding no",
			"X11Forwarding no",
			"PrintMotd no",
			"LogLevel VERBOSE",
			"",
		}, "\n")
		if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		if lastErr = s.run(t, cfg); lastErr == nil {
			s.KnownHosts = knownhosts.Line([]string{knownhosts.Normalize(s.Addr)}, hostPub) + "\n"
			return s
		}
	}
	t.Fatalf("start sshd: %v", lastErr)
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// run starts sshd in the foreground (-D) logging to stderr (-e) and waits
// until it answers with an SSH banner.
func (s *SSHServer) run(t testing.TB, cfg string) error {
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, SSHD, "-D", "-e", "-f", cfg)
	var logs syncBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		cancel()
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case err := <-exited:
			cancel()
			return fmt.Errorf("sshd exited: %v: %s", err, logs.String())
		default:
		}
		if banner(s.Addr) {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			<-exited
			return fmt.Errorf("sshd did not answer on %s within 20s: %s", s.Addr, logs.String())
		}
		time.Sleep(20 * time.Millisecond) // poll interval, not a wait for an outcome
	}
	t.Cleanup(func() {
		cancel()
		<-exited
		if t.Failed() {
			t.Logf("sshd log:\n%s", logs.String())
		}
	})
	return nil
}

// banner reports whether an SSH server answers at addr.
func banner(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "SSH-2.0-")
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
