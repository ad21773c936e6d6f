package testenv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

const (
	// serviceClusterIPRange holds only API objects' addresses: nothing routes
	// to it, and nothing here sends traffic to it.
	serviceClusterIPRange = "10.96.0.0/16"
	serviceClusterIP      = "10.96.0.1" // the kubernetes Service, first of the range
	// podCIDR is where kwok takes fake pod IPs from; also data only.
	podCIDR = "10.244.0.1/16"
	// serviceAccountIssuer is what kubeadm clusters use.
	serviceAccountIssuer = "https://kubernetes.default.svc.cluster.local"

	adminUser      = "sluice-admin"
	frontProxyUser = "front-proxy-client"
	// launchAttempts bounds retries when a picked port was taken meanwhile.
	launchAttempts = 3
	// stopGrace is how long a component gets to exit after SIGTERM.
	stopGrace = 10 * time.Second
)

// credentials are the files the components read.
type credentials struct {
	ca, serving, servingKey, saKey, saPub string
	// The API server's client certificate towards aggregated API servers.
	proxyClient, proxyClientKey string
	// Client identities, written into kubeconfigs once the API server's port
	// is known.
	admin, controllerManager, scheduler, kwok identity
}

type identity struct {
	user       string
	kubeconfig string
	kp         keyPair
}

func (e *Env) writePKI() (credentials, error) {
	now := time.Now()
	ca, err := newAuthority(now)
	if err != nil {
		return credentials{}, err
	}
	e.caPEM = ca.certPEM
	pki := filepath.Join(e.dir, "pki")
	c := credentials{
		ca:         filepath.Join(pki, "ca.crt"),
		serving:    filepath.Join(pki, "serving.crt"),
		servingKey: filepath.Join(pki, "serving.key"),
		saKey:      filepath.Join(pki, "sa.key"),
		saPub:      filepath.Join(pki, "sa.pub"),

		proxyClient:    filepath.Join(pki, "front-proxy-client.crt"),
		proxyClientKey: filepath.Join(pki, "front-proxy-client.key"),
	}
	// One serving certificate for every component that listens: all listen
	// on loopback, and the API server is also known by its in-cluster names.
	serving, err := ca.issue(now, "sluice-testenv-serving", nil, x509.ExtKeyUsageServerAuth,
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		[]net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback, net.ParseIP(serviceClusterIP)})
	if err != nil {
		return credentials{}, err
	}
	// As in kubeadm clusters, the API server can front aggregated API
	// servers; without it the controller manager and scheduler keep logging
	// that the request-header CA is missing.
	proxyClient, err := ca.issue(now, frontProxyUser, nil, x509.ExtKeyUsageClientAuth, nil, nil)
	if err != nil {
		return credentials{}, err
	}
	// The service account signing key lets the API server mint tokens
	// (TokenRequest) and verify them.
	saKey, err := newKey()
	if err != nil {
		return credentials{}, err
	}
	saKeyPEM, err := encodePrivateKey(saKey)
	if err != nil {
		return credentials{}, fmt.Errorf("service account key: %w", err)
	}
	saPubPEM, err := encodePublicKey(saKey.Public())
	if err != nil {
		return credentials{}, fmt.Errorf("service account key: %w", err)
	}
	files := []struct {
		path string
		data []byte
	}{
		{c.ca, ca.certPEM}, {c.serving, serving.certPEM}, {c.servingKey, serving.keyPEM},
		{c.saKey, saKeyPEM}, {c.saPub, saPubPEM},
		{c.proxyClient, proxyClient.certPEM}, {c.proxyClientKey, proxyClient.keyPEM},
	}
	for _, f := range files {
		if err := os.WriteFile(f.path, f.data, 0o600); err != nil {
			return credentials{}, fmt.Errorf("write %s: %w", filepath.Base(f.path), err)
		}
	}

	// The admin is in system:masters. The scheduler uses the user name the
	// bootstrap RBAC policy grants its permissions to, so RBAC applies to it
	// as in a real cluster. The controller manager runs all controllers
	// under its own identity (see --use-service-account-credentials), which
	// needs more than system:kube-controller-manager is granted, and kwok
	// plays every kubelet and patches any pod or node: both get
	// system:masters.
	ids := []struct {
		id     *identity
		user   string
		file   string
		groups []string
	}{
		{&c.admin, adminUser, "kubeconfig", []string{"system:masters"}},
		{&c.controllerManager, "system:kube-controller-manager", "controller-manager.kubeconfig", []string{"system:masters"}},
		{&c.scheduler, "system:kube-scheduler", "scheduler.kubeconfig", nil},
		{&c.kwok, "kwok-controller", "kwok.kubeconfig", []string{"system:masters"}},
	}
	for _, id := range ids {
		kp, err := ca.issue(now, id.user, id.groups, x509.ExtKeyUsageClientAuth, nil, nil)
		if err != nil {
			return credentials{}, err
		}
		*id.id = identity{user: id.user, kubeconfig: filepath.Join(e.dir, id.file), kp: kp}
	}
	e.kubeconfig = c.admin.kubeconfig
	return c, nil
}

// writeKubeconfigs points every identity's kubeconfig at the API server and
// sets the admin rest.Config.
func (e *Env) writeKubeconfigs(c credentials, server string) error {
	for _, id := range []identity{c.admin, c.controllerManager, c.scheduler, c.kwok} {
		cfg := clientcmdapi.NewConfig()
		cfg.Clusters["testenv"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: e.caPEM}
		cfg.AuthInfos[id.user] = &clientcmdapi.AuthInfo{ClientCertificateData: id.kp.certPEM, ClientKeyData: id.kp.keyPEM}
		cfg.Contexts["testenv"] = &clientcmdapi.Context{Cluster: "testenv", AuthInfo: id.user}
		cfg.CurrentContext = "testenv"
		// WriteToFile creates the file 0600: it holds a private key.
		if err := clientcmd.WriteToFile(*cfg, id.kubeconfig); err != nil {
			return fmt.Errorf("write kubeconfig for %s: %w", id.user, err)
		}
		if id.user == adminUser {
			e.admin = &rest.Config{
				Host: server,
				TLSClientConfig: rest.TLSClientConfig{
					CAData:   e.caPEM,
					CertData: id.kp.certPEM,
					KeyData:  id.kp.keyPEM,
				},
				// Tests create objects in bursts; client-side throttling
				// would only slow them down.
				QPS:   100,
				Burst: 200,
			}
		}
	}
	cs, err := kubernetes.NewForConfig(e.admin)
	if err != nil {
		return fmt.Errorf("admin client: %w", err)
	}
	e.clients = cs
	return nil
}

// launchSpec describes how to run one component.
type launchSpec struct {
	name  string
	ports int
	// prepare returns the command line for the given ports; it may also
	// write files that depend on them.
	prepare func(ports []int) (args []string, env []string, err error)
	bin     string
	ready   func(ctx context.Context, p *process, ports []int) error
}

// launch starts a component on freshly picked ports and waits until it is
// ready. If the component could not bind a port because something took it
// after it was picked, it tries again with new ports.
func (e *Env) launch(ctx context.Context, s launchSpec) ([]int, error) {
	logPath := filepath.Join(e.dir, "logs", s.name+".log")
	for attempt := 1; ; attempt++ {
		ports := make([]int, 0, s.ports)
		for len(ports) < s.ports {
			port, err := freePort(rand.IntN)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", s.name, err)
			}
			if !slices.Contains(ports, port) {
				ports = append(ports, port)
			}
		}
		args, env, err := s.prepare(ports)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		offset := fileSize(logPath)
		p, err := startProcess(s.name, logPath, s.bin, args, env)
		if err != nil {
			return nil, err
		}
		e.addProc(p)
		began := time.Now()
		err = s.ready(ctx, p, ports)
		if err == nil {
			e.log.Debug("testenv: component ready", "component", s.name, "pid", p.pid(), "ports", ports,
				"took", time.Since(began).Round(time.Millisecond))
			return ports, nil
		}
		if attempt < launchAttempts && s.ports > 0 && logContains(logPath, offset, addrInUse) {
			e.log.Info("testenv: port taken, retrying", "component", s.name, "ports", ports)
			_ = p.stop(stopGrace)
			continue
		}
		return nil, err
	}
}

func loopbackURL(scheme string, port int) string {
	return scheme + "://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// etcdDataParent prefers tmpfs: etcd fsyncs every write, which on a disk
// makes the API server slow for no benefit in a throwaway cluster (etcd 3.4
// has no --unsafe-no-fsync).
func etcdDataParent(fallback string) string {
	const shm = "/dev/shm"
	if st, err := os.Stat(shm); err == nil && st.IsDir() {
		if f, err := os.CreateTemp(shm, ".sluice-probe-*"); err == nil {
			name := f.Name()
			_ = f.Close()
			_ = os.Remove(name)
			return shm
		}
	}
	return fallback
}

// etcdDirPrefix names etcd data dirs after the owning process, so a later
// start can remove those a killed test binary left on tmpfs, where they hold
// memory.
const etcdDirPrefix = "sluice-testenv-etcd-"

func removeStaleEtcdDirs(parent string) {
	entries, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	for _, ent := range entries {
		rest, ok := strings.CutPrefix(ent.Name(), etcdDirPrefix)
		if !ok || !ent.IsDir() {
			continue
		}
		pidStr, _, ok := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if !ok || err != nil || pid <= 0 {
			continue
		}
		if _, err := os.Stat(filepath.Join("/proc", pidStr)); err == nil {
			continue // owner alive (or pid reused: leave it)
		}
		_ = os.RemoveAll(filepath.Join(parent, ent.Name()))
	}
}

func (e *Env) startEtcd(ctx context.Context) (string, error) {
	parent := etcdDataParent(e.dir)
	removeStaleEtcdDirs(parent)
	dataDir, err := os.MkdirTemp(parent, etcdDirPrefix+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return "", fmt.Errorf("etcd data dir: %w", err)
	}
	e.etcdDataDir = dataDir
	http := &http.Client{Timeout: 2 * time.Second}
	ports, err := e.launch(ctx, launchSpec{
		name:  compEtcd,
		bin:   e.tools.etcd,
		ports: 2,
		prepare: func(ports []int) ([]string, []string, error) {
			// A failed attempt may have initialised the member with other
			// peer URLs; start from an empty dir.
			if err := os.RemoveAll(dataDir); err != nil {
				return nil, nil, err
			}
			client, peer := loopbackURL("http", ports[0]), loopbackURL("http", ports[1])
			return []string{
				"--name=testenv",
				"--data-dir=" + dataDir,
				"--listen-client-urls=" + client,
				"--advertise-client-urls=" + client,
				"--listen-peer-urls=" + peer,
				"--initial-advertise-peer-urls=" + peer,
				"--initial-cluster=testenv=" + peer,
				"--logger=zap",
				"--log-outputs=stderr",
			}, nil, nil
		},
		ready: func(ctx context.Context, p *process, ports []int) error {
			return p.waitReady(ctx, "/health", func(ctx context.Context) (bool, error) {
				return etcdHealthy(ctx, http, loopbackURL("http", ports[0])+"/health")
			})
		},
	})
	if err != nil {
		return "", err
	}
	return loopbackURL("http", ports[0]), nil
}

func etcdHealthy(ctx context.Context, c *http.Client, url string) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	var h struct {
		Health string `json:"health"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		return false, fmt.Errorf("decode etcd health: %w", err)
	}
	return h.Health == "true", nil
}

func (e *Env) startAPIServer(ctx context.Context, etcdURL string, c credentials) error {
	_, err := e.launch(ctx, launchSpec{
		name:  compAPIServer,
		bin:   e.tools.apiserver,
		ports: 1,
		prepare: func(ports []int) ([]string, []string, error) {
			e.apiserverURL = loopbackURL("https", ports[0])
			if err := e.writeKubeconfigs(c, e.apiserverURL); err != nil {
				return nil, nil, err
			}
			return []string{
				"--bind-address=127.0.0.1",
				"--advertise-address=127.0.0.1",
				"--secure-port=" + strconv.Itoa(ports[0]),
				"--etcd-servers=" + etcdURL,
				"--tls-cert-file=" + c.serving,
				"--tls-private-key-file=" + c.servingKey,
				"--cert-dir=" + filepath.Join(e.dir, "pki", "apiserver"),
				"--client-ca-file=" + c.ca,
				"--requestheader-client-ca-file=" + c.ca,
				"--requestheader-allowed-names=" + frontProxyUser,
				"--requestheader-username-headers=X-Remote-User",
				"--requestheader-group-headers=X-Remote-Group",
				"--requestheader-extra-headers-prefix=X-Remote-Extra-",
				"--proxy-client-cert-file=" + c.proxyClient,
				"--proxy-client-key-file=" + c.proxyClientKey,
				"--authorization-mode=Node,RBAC",
				"--service-account-issuer=" + serviceAccountIssuer,
				"--service-account-key-file=" + c.saPub,
				"--service-account-signing-key-file=" + c.saKey,
				"--service-cluster-ip-range=" + serviceClusterIPRange,
				// The endpoints reconciler refuses a loopback advertise
				// address; nothing in the env needs the kubernetes
				// Service's endpoints.
				"--endpoint-reconciler-type=none",
				"--allow-privileged=true",
				// Streaming lists need etcd's progress notifications, which
				// etcd 3.4 lacks, so the API server refuses them; yet with
				// WatchList on it turns every watch from resourceVersion 0
				// into one. kwok watches that way, and would then see new
				// pods only on periodic relists, seconds late.
				"--feature-gates=WatchList=false",
				"--profiling=false",
				"--v=2",
			}, nil, nil
		},
		ready: func(ctx context.Context, p *process, _ []int) error {
			return p.waitReady(ctx, "/readyz", func(ctx context.Context) (bool, error) {
				return apiReady(ctx, e.clients)
			})
		},
	})
	return err
}

// apiReady reports whether /readyz answers ok, which covers every post-start
// hook (bootstrap RBAC policy, priority classes, ...).
func apiReady(ctx context.Context, cs *kubernetes.Clientset) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	if err != nil {
		return false, err
	}
	return strings.TrimSpace(string(body)) == "ok", nil
}

// secureHealthz polls a component's /healthz over TLS, trusting the env's CA.
func (e *Env) secureHealthz(p *process, port int) func(context.Context) (bool, error) {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(e.caPEM)
	c := &http.Client{
		Timeout:   2 * time.Second,
		Transport: &http.Transport{TLSClientConfig: tlsConfig(pool)},
	}
	url := loopbackURL("https", port) + "/healthz"
	return func(ctx context.Context) (bool, error) {
		return httpOK(ctx, c, url)
	}
}

func (e *Env) startControllerManager(ctx context.Context, c credentials) error {
	kubeconfig := c.controllerManager.kubeconfig
	controllers := []string{
		"*",
		"-persistentvolume-attach-detach-controller",
		"-persistentvolume-binder-controller",
		"-persistentvolume-expander-controller",
		"-persistentvolume-protection-controller",
		"-persistentvolumeclaim-protection-controller",
		"-ephemeral-volume-controller",
		"-volumeattributesclass-protection-controller",
		// No metrics server runs here, so the autoscaler controller could
		// only fight the scale that tests write, as an autoscaler would,
		// through the scale subresource.
		"-horizontal-pod-autoscaler-controller",
	}
	_, err := e.launch(ctx, launchSpec{
		name:  compControllerManager,
		bin:   e.tools.controllerManager,
		ports: 1,
		prepare: func(ports []int) ([]string, []string, error) {
			return append(componentFlags(kubeconfig, ports[0], c),
				// The default controllers, as in a real cluster (deployment
				// and replicaset roll out, node-lifecycle lifts the
				// not-ready taint, serviceaccount creates "default", the
				// garbage collector and namespace controller clean up),
				// except the storage ones: kwok pods mount nothing, and
				// setting those up (volume plugins) slows every start.
				"--controllers="+strings.Join(controllers, ","),
				// One controller manager per cluster; skipping the election
				// saves its lease round trips at start.
				"--leader-elect=false",
				// One identity for all controllers. Per-controller service
				// accounts (kubeadm's choice) cost a TokenRequest round trip
				// per controller before it starts: about 3s of every env
				// start on 2 cores, for no test that checks controllers'
				// RBAC.
				"--use-service-account-credentials=false",
				"--service-account-private-key-file="+c.saKey,
				"--root-ca-file="+c.ca,
				"--v=2",
			), nil, nil
		},
		ready: func(ctx context.Context, p *process, ports []int) error {
			return p.waitReady(ctx, "/healthz", e.secureHealthz(p, ports[0]))
		},
	})
	return err
}

// componentFlags are what the controller manager and the scheduler share:
// their identity and their secure port on loopback.
func componentFlags(kubeconfig string, port int, c credentials) []string {
	return []string{
		"--kubeconfig=" + kubeconfig,
		"--authentication-kubeconfig=" + kubeconfig,
		"--authorization-kubeconfig=" + kubeconfig,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--tls-cert-file=" + c.serving,
		"--tls-private-key-file=" + c.servingKey,
	}
}

func (e *Env) startScheduler(ctx context.Context, c credentials) error {
	kubeconfig := c.scheduler.kubeconfig
	_, err := e.launch(ctx, launchSpec{
		name:  compScheduler,
		bin:   e.tools.scheduler,
		ports: 1,
		prepare: func(ports []int) ([]string, []string, error) {
			return append(componentFlags(kubeconfig, ports[0], c),
				"--leader-elect=false",
				"--v=2",
			), nil, nil
		},
		ready: func(ctx context.Context, p *process, ports []int) error {
			return p.waitReady(ctx, "/healthz", e.secureHealthz(p, ports[0]))
		},
	})
	return err
}

// startKwok runs kwok with the env's stages. Its readiness shows in the nodes
// turning Ready, which waitNodesReady checks.
func (e *Env) startKwok(ctx context.Context, c credentials) error {
	kwokDir := filepath.Join(e.dir, "kwok")
	config := filepath.Join(kwokDir, "kwok.yaml")
	if err := os.WriteFile(config, kwokStages, 0o600); err != nil {
		return fmt.Errorf("kwok: write stages: %w", err)
	}
	kubeconfig := c.kwok.kubeconfig
	_, err := e.launch(ctx, launchSpec{
		name: compKwok,
		bin:  e.tools.kwok,
		prepare: func([]int) ([]string, []string, error) {
			return []string{
					"--kubeconfig=" + kubeconfig,
					"--config=" + config,
					"--manage-all-nodes=false",
					"--manage-nodes-with-annotation-selector=" + NodeAnnotation + "=fake",
					"--node-ip=127.0.0.1",
					"--cidr=" + podCIDR,
					// Liveness through node leases, as kubelets do.
					"--node-lease-duration-seconds=40",
				},
				[]string{
					// kwok also reads ~/.kwok/kwok.yaml; point its work dir
					// into the env so a user's own kwok setup cannot leak in.
					"KWOK_WORKDIR=" + kwokDir,
				}, nil
		},
		ready: func(ctx context.Context, p *process, _ []int) error {
			// Only catch an immediate crash (bad flag, bad config) here.
			gone, err := p.exited()
			if gone {
				return p.exitError(err)
			}
			return nil
		},
	})
	return err
}

func tlsConfig(roots *x509.CertPool) *tls.Config {
	return &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
}
