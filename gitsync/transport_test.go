package gitsync_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing/transport"
	"golang.org/x/crypto/ssh"

	"sluice.dev/sluice/gitsync"
	"sluice.dev/sluice/internal/gitserver"
)

// Secrets used by the transport tests; every test greps errors and logs
// for them.
const (
	httpUser     = "sluice-bot"
	httpPassword = "tok_3f9a1c77e2b84d0c9a5e"
	wrongPass    = "tok_wrong_0000000000000"
)

// assertNoSecret fails when any secret appears in the texts.
func assertNoSecret(t *testing.T, texts []string, secrets ...string) {
	t.Helper()
	for _, text := range texts {
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("secret %q leaked into: %s", s[:4]+"...", text)
			}
		}
	}
}

// commitStatus makes a trivial status commit and checks it reached the
// remote.
func commitStatus(t *testing.T, r *gitsync.Repo, bare, content string) {
	t.Helper()
	res, err := r.Commit(testCtx(t), gitsync.Change{
		Message: "sluice: status",
		Files:   map[string][]byte{".sluice/status.yaml": []byte(content)},
	})
	if err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if got := gitserver.MustGit(t, bare, "rev-parse", "main"); got != res.Hash.String() {
		t.Fatalf("remote main = %s, want %s", got, res.Hash)
	}
}

func TestHTTPBasicAuth(t *testing.T) {
	ctx := testCtx(t)
	root := t.TempDir()
	bare := gitserver.NewBare(t, root, "releases", "main", seedFiles)
	srv := gitserver.StartHTTP(t, root, httpUser, httpPassword, false)
	url := srv.URL + "/releases.git"
	secrets := t.TempDir()
	userFile := writeFile(t, secrets, "username", httpUser+"\n")
	passFile := writeFile(t, secrets, "password", httpPassword+"\n")

	t.Run("right password syncs and pushes", func(t *testing.T) {
		r, logs := openRepo(t, gitsync.Config{URL: url, Auth: gitsync.Auth{UsernameFile: userFile, PasswordFile: passFile}})
		res, err := r.Sync(ctx)
		if err != nil {
			t.Fatalf("Sync: %v", err)
		}
		if want := gitserver.MustGit(t, bare, "rev-parse", "main"); res.Head.String() != want {
			t.Fatalf("head %s, want %s", res.Head, want)
		}
		commitStatus(t, r, bare, "over http\n")
		assertNoSecret(t, []string{logs.String()}, httpPassword)
	})

	tests := []struct {
		name     string
		auth     gitsync.Auth
		wantErr  error
		wantText string
	}{
		{"wrong password", gitsync.Auth{UsernameFile: userFile, PasswordFile: writeFile(t, secrets, "wrong", wrongPass)}, transport.ErrAuthenticationRequired, "refused the credentials"},
		{"no credentials", gitsync.Auth{}, transport.ErrAuthenticationRequired, "authentication required"},
		{"missing password file", gitsync.Auth{PasswordFile: filepath.Join(secrets, "absent")}, os.ErrNotExist, "read password file"},
		{"username without password", gitsync.Auth{UsernameFile: userFile}, nil, "PasswordFile is not"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			refused := srv.Refused.Load()
			r, logs := openRepo(t, gitsync.Config{URL: url, Auth: tc.auth})
			_, err := r.Sync(ctx)
			if err == nil {
				t.Fatal("Sync succeeded")
			}
			t.Logf("error: %v", err)
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("err = %v, want %v", err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("err = %q, want it to say %q", err, tc.wantText)
			}
			if tc.name == "wrong password" && srv.Refused.Load() == refused {
				t.Error("the server never refused a request")
			}
			assertNoSecret(t, []string{err.Error(), logs.String()}, httpPassword, wrongPass)
		})
	}

	t.Run("rotated secret is read at use", func(t *testing.T) {
		rot := writeFile(t, t.TempDir(), "password", wrongPass)
		r, _ := openRepo(t, gitsync.Config{URL: url, Auth: gitsync.Auth{UsernameFile: userFile, PasswordFile: rot}})
		if _, err := r.Sync(ctx); err == nil {
			t.Fatal("Sync with the old password succeeded")
		}
		writeFile(t, filepath.Dir(rot), "password", httpPassword)
		if _, err := r.Sync(ctx); err != nil {
			t.Fatalf("Sync after rotation: %v", err)
		}
	})
}

func TestHTTPSWithCustomCA(t *testing.T) {
	ctx := testCtx(t)
	root := t.TempDir()
	bare := gitserver.NewBare(t, root, "releases", "main", seedFiles)
	srv := gitserver.StartHTTP(t, root, httpUser, httpPassword, true)
	url := srv.URL + "/releases.git"
	passFile := writeFile(t, t.TempDir(), "password", httpPassword)

	r, _ := openRepo(t, gitsync.Config{URL: url, Auth: gitsync.Auth{PasswordFile: passFile}})
	_, err := r.Sync(ctx)
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("Sync without the CA: err = %v, want a certificate error", err)
	}
	assertNoSecret(t, []string{err.Error()}, httpPassword)

	r, _ = openRepo(t, gitsync.Config{URL: url, Auth: gitsync.Auth{UsernameFile: writeFile(t, t.TempDir(), "u", httpUser), PasswordFile: passFile, CAFile: srv.CAFile}})
	if _, err := r.Sync(ctx); err != nil {
		t.Fatalf("Sync with the CA: %v", err)
	}
	commitStatus(t, r, bare, "over https\n")

	bad := writeFile(t, t.TempDir(), "ca.pem", "not a certificate")
	r, _ = openRepo(t, gitsync.Config{URL: url, Auth: gitsync.Auth{PasswordFile: passFile, CAFile: bad}})
	if _, err := r.Sync(ctx); err == nil || !strings.Contains(err.Error(), "holds no PEM certificate") {
		t.Fatalf("Sync with a bad CA file: %v", err)
	}
}

// TestHTTPProxyFromEnvironment reaches a host name that does not resolve,
// through a forward proxy named in HTTP_PROXY: only the proxy can have
// carried the traffic.
func TestHTTPProxyFromEnvironment(t *testing.T) {
	ctx := testCtx(t)
	root := t.TempDir()
	gitserver.NewBare(t, root, "releases", "main", seedFiles)
	srv := gitserver.StartHTTP(t, root, "", "", false)
	proxy := gitserver.StartProxy(t, srv.URL)
	t.Setenv("HTTP_PROXY", proxy.URL)
	t.Setenv("http_proxy", proxy.URL)
	t.Setenv("NO_PROXY", "")
	t.Setenv("no_proxy", "")

	r, _ := openRepo(t, gitsync.Config{URL: "http://git.sluice.invalid/releases.git"})
	if _, err := r.Sync(ctx); err != nil {
		t.Fatalf("Sync through the proxy: %v", err)
	}
	if proxy.Seen.Load() == 0 {
		t.Fatal("the proxy saw no request")
	}

	// NO_PROXY is honoured: now the unresolvable host is dialled directly.
	t.Setenv("NO_PROXY", "git.sluice.invalid")
	t.Setenv("no_proxy", "git.sluice.invalid")
	seen := proxy.Seen.Load()
	if _, err := r.Sync(ctx); err == nil {
		t.Fatal("Sync bypassing the proxy reached an unresolvable host")
	}
	if proxy.Seen.Load() != seen {
		t.Error("the proxy was used although NO_PROXY names the host")
	}
}

func TestSSH(t *testing.T) {
	ctx := testCtx(t)
	srv := gitserver.StartSSHD(t)
	root := t.TempDir()
	bare := gitserver.NewBare(t, root, "releases", "main", seedFiles)
	url := srv.URL(bare)
	dir := t.TempDir()
	key := writeFile(t, dir, "id_ed25519", string(srv.ClientKey))
	encKey := writeFile(t, dir, "id_ed25519_enc", string(srv.ClientKeyEncrypted))
	passFile := writeFile(t, dir, "passphrase", srv.Passphrase+"\n")
	known := writeFile(t, dir, "known_hosts", srv.KnownHosts)

	t.Run("key and known host sync and push", func(t *testing.T) {
		r, _ := openRepo(t, gitsync.Config{URL: url, Auth: gitsync.Auth{SSHKeyFile: key, KnownHostsFile: known}})
		res, err := r.Sync(ctx)
		if err != nil {
			t.Fatalf("Sync: %v", err)
		}
		if want := gitserver.MustGit(t, bare, "rev-parse", "main"); res.Head.String() != want {
			t.Fatalf("head %s, want %s", res.Head, want)
		}
		commitStatus(t, r, bare, "over ssh\n")
	})

	t.Run("encrypted key with passphrase", func(t *testing.T) {
		r, logs := openRepo(t, gitsync.Config{URL: url, Auth: gitsync.Auth{SSHKeyFile: encKey, SSHPassphraseFile: passFile, KnownHostsFile: known}})
		if _, err := r.Sync(ctx); err != nil {
			t.Fatalf("Sync: %v", err)
		}
		commitStatus(t, r, bare, "over ssh, encrypted key\n")
		assertNoSecret(t, []string{logs.String()}, srv.Passphrase)
	})

	otherKey, otherPub := gitserver.NewKey(t, "")
	otherHost := strings.Fields(srv.KnownHosts)[0] + " " + string(ssh.MarshalAuthorizedKey(otherPub))
	tests := []struct {
		name    string
		auth    gitsync.Auth
		wantErr error
		want    string
	}{
		{"unknown host", gitsync.Auth{SSHKeyFile: key, KnownHostsFile: writeFile(t, dir, "empty_known_hosts", "")}, gitsync.ErrUnknownHostKey, "is not in known_hosts file"},
		{"changed host key", gitsync.Auth{SSHKeyFile: key, KnownHostsFile: writeFile(t, dir, "wrong_known_hosts", otherHost)}, gitsync.ErrHostKeyMismatch, "does not match known_hosts"},
		{"key not authorised", gitsync.Auth{SSHKeyFile: writeFile(t, dir, "other_key", string(otherKey)), KnownHostsFile: known}, nil, "unable to authenticate"},
		{"wrong passphrase", gitsync.Auth{SSHKeyFile: encKey, SSHPassphraseFile: writeFile(t, dir, "bad_pass", "not it"), KnownHostsFile: known}, nil, "with passphrase"},
		{"encrypted key without passphrase", gitsync.Auth{SSHKeyFile: encKey, KnownHostsFile: known}, nil, "is encrypted: set SSHPassphraseFile"},
		{"no known_hosts", gitsync.Auth{SSHKeyFile: key}, nil, "needs KnownHostsFile"},
		{"no key", gitsync.Auth{KnownHostsFile: known}, nil, "needs SSHKeyFile"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, logs := openRepo(t, gitsync.Config{URL: url, Auth: tc.auth})
			_, err := r.Sync(ctx)
			if err == nil {
				t.Fatal("Sync succeeded")
			}
			t.Logf("error: %v", err)
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("err = %v, want %v", err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %q, want it to say %q", err, tc.want)
			}
			assertNoSecret(t, []string{err.Error(), logs.String()}, srv.Passphrase, string(srv.ClientKey))
		})
	}
}
