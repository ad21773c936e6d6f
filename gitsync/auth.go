package gitsync

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	"github.com/skeema/knownhosts"
	"golang.org/x/crypto/ssh"
	"golang.org/x/net/http/httpproxy"

	"sluice.dev/sluice/internal/secret"
)

// Auth names files holding credentials, as mounted from a Kubernetes Secret.
// The files are read on every network operation, so a rotated Secret takes
// effect without a restart. Surrounding whitespace is ignored.
type Auth struct {
	// UsernameFile and PasswordFile hold HTTPS basic-auth credentials; the
	// password may be a token. Without UsernameFile the user name comes from
	// the URL, else "git".
	UsernameFile string
	PasswordFile string
	// SSHKeyFile is a PEM/OpenSSH private key; SSHPassphraseFile optionally
	// holds its passphrase.
	SSHKeyFile        string
	SSHPassphraseFile string
	// KnownHostsFile lists the SSH server's host keys. Required for SSH:
	// unknown and changed host keys are always refused.
	KnownHostsFile string
	// CAFile is a PEM bundle of extra CAs trusted for HTTPS (added to the
	// system pool).
	CAFile string
}

// ErrUnknownHostKey is returned (wrapped) when the SSH server's host is not
// listed in the known_hosts file.
var ErrUnknownHostKey = errors.New("ssh host key unknown")

// ErrHostKeyMismatch is returned (wrapped) when the SSH server presents a key
// different from the one in the known_hosts file.
var ErrHostKeyMismatch = errors.New("ssh host key mismatch")

// sshDialTimeout bounds the SSH handshake: go-git's SSH dialer does not take
// the operation's context, so this is the only bound on a hanging server.
const sshDialTimeout = 30 * time.Second

// remoteEndpoint is the validated remote: the URL handed to go-git (never
// with a password in it) and what the transport needs.
type remoteEndpoint struct {
	url      string // URL given to go-git, no password
	display  string // URL for logs and errors, no userinfo at all
	protocol string // file, http, https, ssh
	user     string // user name from the URL, if any
	host     string
	port     int
}

// parseRemote validates a remote URL. A password embedded in the URL is
// refused: credentials come from Auth files only, so they can never be
// written to the cache's config or printed with the URL.
func parseRemote(raw string) (remoteEndpoint, error) {
	if raw == "" {
		return remoteEndpoint{}, errors.New("remote URL is empty")
	}
	// A bare local path becomes a file:// URL: go-git treats bare paths
	// specially on push (walking all of the remote's objects), which is slow
	// for big repositories.
	if strings.HasPrefix(raw, "/") {
		raw = (&url.URL{Scheme: "file", Path: raw}).String()
	}
	ep, err := transport.NewEndpoint(raw)
	if err != nil {
		return remoteEndpoint{}, fmt.Errorf("parse remote URL %q: %s", RedactURL(raw), redactText(err.Error(), nil))
	}
	if ep.Password != "" {
		return remoteEndpoint{}, fmt.Errorf("remote URL %q embeds a password: put credentials in Auth.PasswordFile instead", RedactURL(raw))
	}
	re := remoteEndpoint{protocol: ep.Protocol, user: ep.User, host: ep.Host, port: ep.Port}
	switch ep.Protocol {
	case "file":
		re.url = raw
	case "http", "https":
		// The user name travels in the auth header, not in the URL.
		ep.User = ""
		re.url = ep.String()
	case "ssh":
		re.url = raw
	default:
		return remoteEndpoint{}, fmt.Errorf("remote URL %q: unsupported scheme %q (want file, http, https or ssh)", RedactURL(raw), ep.Protocol)
	}
	sanitized := *ep
	sanitized.User = ""
	sanitized.Password = ""
	re.display = sanitized.String()
	if ep.Protocol == "file" {
		re.display = raw
	}
	return re, nil
}

// transportOpts is what one fetch or push needs, freshly read from files.
type transportOpts struct {
	auth     transport.AuthMethod
	caBundle []byte
	proxy    transport.ProxyOptions
	secrets  []string // values to scrub from any error or log line
}

// loadTransport reads the credential files for one operation.
func loadTransport(ep remoteEndpoint, a Auth) (transportOpts, error) {
	var o transportOpts
	switch ep.protocol {
	case "file":
		return o, nil
	case "http", "https":
		return loadHTTP(ep, a)
	case "ssh":
		return loadSSH(ep, a)
	}
	return o, fmt.Errorf("unsupported protocol %q", ep.protocol)
}

func loadHTTP(ep remoteEndpoint, a Auth) (transportOpts, error) {
	var o transportOpts
	if a.PasswordFile != "" {
		pass, err := secret.ReadFile("password", a.PasswordFile)
		if err != nil {
			return o, err
		}
		user := ep.user
		if a.UsernameFile != "" {
			if user, err = secret.ReadFile("username", a.UsernameFile); err != nil {
				return o, err
			}
		}
		if user == "" {
			// Token-based hosts ignore the user name but need one.
			user = "git"
		}
		o.auth = &githttp.BasicAuth{Username: user, Password: pass}
		o.secrets = append(o.secrets, pass)
	} else if a.UsernameFile != "" {
		return o, errors.New("auth: UsernameFile is set but PasswordFile is not")
	}
	if a.CAFile != "" && ep.protocol == "https" {
		pem, err := os.ReadFile(a.CAFile)
		if err != nil {
			return o, fmt.Errorf("read CA file: %w", err)
		}
		if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			return o, fmt.Errorf("CA file %s holds no PEM certificate", a.CAFile)
		}
		o.caBundle = pem
	}
	// The proxy is read from the environment at use, like the credentials,
	// and honours NO_PROXY.
	target := &url.URL{Scheme: ep.protocol, Host: hostPort(ep.host, ep.port)}
	p, err := httpproxy.FromEnvironment().ProxyFunc()(target)
	if err != nil {
		return o, fmt.Errorf("proxy from environment: %s", redactText(err.Error(), nil))
	}
	if p != nil {
		o.proxy.URL = p.String()
		if pw, ok := p.User.Password(); ok {
			o.secrets = append(o.secrets, pw)
		}
	}
	return o, nil
}

func hostPort(host string, port int) string {
	if port <= 0 {
		return host
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

func loadSSH(ep remoteEndpoint, a Auth) (transportOpts, error) {
	var o transportOpts
	if a.SSHKeyFile == "" {
		return o, errors.New("auth: ssh remote needs SSHKeyFile")
	}
	if a.KnownHostsFile == "" {
		return o, errors.New("auth: ssh remote needs KnownHostsFile (host keys are always verified)")
	}
	key, err := os.ReadFile(a.SSHKeyFile)
	if err != nil {
		return o, fmt.Errorf("read ssh key file: %w", err)
	}
	var signer ssh.Signer
	if a.SSHPassphraseFile != "" {
		pass, err := secret.ReadFile("ssh passphrase", a.SSHPassphraseFile)
		if err != nil {
			return o, err
		}
		o.secrets = append(o.secrets, pass)
		signer, err = ssh.ParsePrivateKeyWithPassphrase(key, []byte(pass))
		if err != nil {
			return o, fmt.Errorf("parse ssh key file %s with passphrase: %s", a.SSHKeyFile, redactText(err.Error(), o.secrets))
		}
	} else {
		signer, err = ssh.ParsePrivateKey(key)
		var missing *ssh.PassphraseMissingError
		if errors.As(err, &missing) {
			return o, fmt.Errorf("ssh key file %s is encrypted: set SSHPassphraseFile", a.SSHKeyFile)
		}
		if err != nil {
			// The parser's message never quotes key material.
			return o, fmt.Errorf("parse ssh key file %s: %w", a.SSHKeyFile, err)
		}
	}
	if _, err := os.Stat(a.KnownHostsFile); err != nil {
		return o, fmt.Errorf("known_hosts file: %w", err)
	}
	db, err := knownhosts.NewDB(a.KnownHostsFile)
	if err != nil {
		return o, fmt.Errorf("load known_hosts file %s: %w", a.KnownHostsFile, err)
	}
	user := ep.user
	if user == "" {
		user = "git"
	}
	port := ep.port
	if port <= 0 {
		port = 22
	}
	o.auth = &sshAuth{
		user:       user,
		signer:     signer,
		db:         db,
		knownHosts: a.KnownHostsFile,
		hostPort:   net.JoinHostPort(ep.host, strconv.Itoa(port)),
	}
	return o, nil
}

// sshAuth is a go-git SSH auth method with strict host key checking against
// one known_hosts file and a bounded handshake.
type sshAuth struct {
	user       string
	signer     ssh.Signer
	db         *knownhosts.HostKeyDB
	knownHosts string
	hostPort   string
}

func (a *sshAuth) Name() string   { return "ssh-public-keys" }
func (a *sshAuth) String() string { return "user: " + a.user + ", name: ssh-public-keys" }

// ClientConfig implements go-git's ssh.AuthMethod.
func (a *sshAuth) ClientConfig() (*ssh.ClientConfig, error) {
	return &ssh.ClientConfig{
		User:            a.user,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(a.signer)},
		HostKeyCallback: a.checkHostKey,
		// Offer only the key types known_hosts lists for this host, so the
		// server presents a key we can actually verify.
		HostKeyAlgorithms: a.db.HostKeyAlgorithms(a.hostPort),
		Timeout:           sshDialTimeout,
	}, nil
}

func (a *sshAuth) checkHostKey(hostname string, remote net.Addr, key ssh.PublicKey) error {
	err := a.db.HostKeyCallback()(hostname, remote, key)
	switch {
	case err == nil:
		return nil
	case knownhosts.IsHostUnknown(err):
		return fmt.Errorf("%w: %s (%s key %s) is not in known_hosts file %s; refusing to connect",
			ErrUnknownHostKey, hostname, key.Type(), ssh.FingerprintSHA256(key), a.knownHosts)
	case knownhosts.IsHostKeyChanged(err):
		return fmt.Errorf("%w: %s presented %s key %s, which does not match known_hosts file %s; refusing to connect (the host key changed or someone is intercepting)",
			ErrHostKeyMismatch, hostname, key.Type(), ssh.FingerprintSHA256(key), a.knownHosts)
	default:
		return fmt.Errorf("verify ssh host key of %s: %w", hostname, err)
	}
}
