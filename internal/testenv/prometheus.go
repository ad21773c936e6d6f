package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"sigs.k8s.io/yaml"
)

// ScrapeInterval is how often Prometheus scrapes every target, short so that
// tests see new samples quickly.
const ScrapeInterval = time.Second

// prometheusServer is a Prometheus process with a config that tests extend.
// It keeps its port and data dir across StopPrometheus/StartPrometheus.
type prometheusServer struct {
	bin        string
	port       int
	dataDir    string
	configPath string
	logPath    string
	http       *http.Client
	track      func(*process) // registers the process with the env at once

	mu   sync.Mutex // guards jobs and proc
	jobs []scrapeJob
	proc *process
}

type scrapeJob struct {
	name    string
	targets []string
}

// promConfig is the subset of Prometheus' configuration file the env writes.
type promConfig struct {
	Global        promGlobal     `json:"global"`
	ScrapeConfigs []scrapeConfig `json:"scrape_configs"`
}

type promGlobal struct {
	ScrapeInterval     string `json:"scrape_interval"`
	ScrapeTimeout      string `json:"scrape_timeout"`
	EvaluationInterval string `json:"evaluation_interval"`
}

type scrapeConfig struct {
	JobName       string         `json:"job_name"`
	StaticConfigs []staticConfig `json:"static_configs"`
}

type staticConfig struct {
	Targets []string `json:"targets"`
}

// renderPromConfig produces the config file for the given jobs. Prometheus
// scrapes itself as job "prometheus" so a fresh server has one target.
func renderPromConfig(port int, jobs []scrapeJob) ([]byte, error) {
	interval := ScrapeInterval.String()
	cfg := promConfig{
		Global: promGlobal{
			ScrapeInterval: interval,
			// The default 10s timeout would exceed the interval, which
			// Prometheus rejects.
			ScrapeTimeout:      interval,
			EvaluationInterval: interval,
		},
		ScrapeConfigs: []scrapeConfig{{
			JobName:       "prometheus",
			StaticConfigs: []staticConfig{{Targets: []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}}},
		}},
	}
	for _, j := range jobs {
		cfg.ScrapeConfigs = append(cfg.ScrapeConfigs, scrapeConfig{
			JobName:       j.name,
			StaticConfigs: []staticConfig{{Targets: slices.Clone(j.targets)}},
		})
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("render prometheus config: %w", err)
	}
	return append([]byte("# Written by sluice.dev/sluice/testenv; rewritten by AddScrapeTarget.\n"), out...), nil
}

func (p *prometheusServer) url() string {
	return "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port))
}

// writeConfig replaces the config file atomically, so a reload never reads
// a half-written file. Callers hold p.mu.
func (p *prometheusServer) writeConfig() error {
	data, err := renderPromConfig(p.port, p.jobs)
	if err != nil {
		return err
	}
	tmp := p.configPath + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("write prometheus config: %w", err)
	}
	if err := os.Rename(tmp, p.configPath); err != nil {
		return fmt.Errorf("write prometheus config: %w", err)
	}
	return nil
}

// start launches Prometheus and waits until it is ready. Callers hold p.mu.
func (p *prometheusServer) start(ctx context.Context) error {
	if p.proc != nil {
		if gone, _ := p.proc.exited(); !gone {
			return errors.New("prometheus is already running")
		}
	}
	if err := p.writeConfig(); err != nil {
		return err
	}
	if !portFree(p.port) {
		return fmt.Errorf("start prometheus: port %d on 127.0.0.1 is taken", p.port)
	}
	args := []string{
		"--config.file=" + p.configPath,
		"--web.listen-address=" + net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port)),
		"--storage.tsdb.path=" + p.dataDir,
		"--storage.tsdb.retention.time=1d",
		"--web.enable-lifecycle",
	}
	proc, err := startProcess("prometheus", p.logPath, p.bin, args, nil)
	if err != nil {
		return err
	}
	p.proc = proc
	p.track(proc)
	return proc.waitReady(ctx, "/-/ready", func(ctx context.Context) (bool, error) {
		return httpOK(ctx, p.http, p.url()+"/-/ready")
	})
}

// stop terminates Prometheus cleanly (it flushes its head block on SIGTERM).
// Callers hold p.mu.
func (p *prometheusServer) stop() error {
	if p.proc == nil {
		return nil
	}
	return p.proc.stop(30 * time.Second)
}

func (p *prometheusServer) running() bool {
	if p.proc == nil {
		return false
	}
	gone, _ := p.proc.exited()
	return !gone
}

// jobNamePattern keeps job names to what reads well as a label value and in
// PromQL selectors.
var jobNamePattern = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_.-]*$`)

func (p *prometheusServer) addTarget(ctx context.Context, job, hostPort string) error {
	if !jobNamePattern.MatchString(job) {
		return fmt.Errorf("add scrape target: job name %q must match %s", job, jobNamePattern)
	}
	if job == "prometheus" {
		return errors.New(`add scrape target: job name "prometheus" is reserved for Prometheus' own metrics`)
	}
	host, port, err := net.SplitHostPort(hostPort)
	if err != nil {
		return fmt.Errorf("add scrape target %q: want host:port: %w", hostPort, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("add scrape target %q: port %q is not a number in 1-65535", hostPort, port)
	}
	if host == "" {
		return fmt.Errorf("add scrape target %q: empty host", hostPort)
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.running() {
		return errors.New("add scrape target: prometheus is stopped (StartPrometheus first)")
	}
	i := slices.IndexFunc(p.jobs, func(j scrapeJob) bool { return j.name == job })
	if i < 0 {
		p.jobs = append(p.jobs, scrapeJob{name: job})
		i = len(p.jobs) - 1
	}
	if !slices.Contains(p.jobs[i].targets, hostPort) {
		p.jobs[i].targets = append(p.jobs[i].targets, hostPort)
	}
	if err := p.writeConfig(); err != nil {
		return err
	}
	if err := p.reload(ctx); err != nil {
		return err
	}
	return p.waitTargetUp(ctx, job, hostPort)
}

func (p *prometheusServer) reload(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url()+"/-/reload", nil)
	if err != nil {
		return fmt.Errorf("reload prometheus: %w", err)
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return fmt.Errorf("reload prometheus: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return fmt.Errorf("reload prometheus: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// waitScraped polls the targets API until every configured target has been
// scraped at least once, successfully or not. After a (re)start Prometheus
// hands targets to its scrapers only after a discovery round (up to 5s in
// 2.42), so ready does not yet mean scraping.
func (p *prometheusServer) waitScraped(ctx context.Context) error {
	client, err := promapi.NewClient(promapi.Config{Address: p.url(), Client: p.http})
	if err != nil {
		return fmt.Errorf("prometheus client: %w", err)
	}
	api := promv1.NewAPI(client)
	want := 1 // Prometheus itself
	for _, j := range p.jobs {
		want += len(j.targets)
	}
	return p.proc.waitReady(ctx, "every target to be scraped", func(ctx context.Context) (bool, error) {
		res, err := api.Targets(ctx)
		if err != nil {
			return false, err
		}
		scraped := 0
		for _, t := range res.Active {
			if t.Health != promv1.HealthUnknown {
				scraped++
			}
		}
		return scraped >= want, nil
	})
}

// waitTargetUp polls the targets API until the target has been scraped
// successfully. A reload does not scrape at once, so this takes up to about
// one scrape interval after the target's first scrape.
func (p *prometheusServer) waitTargetUp(ctx context.Context, job, hostPort string) error {
	client, err := promapi.NewClient(promapi.Config{Address: p.url(), Client: p.http})
	if err != nil {
		return fmt.Errorf("prometheus client: %w", err)
	}
	api := promv1.NewAPI(client)
	health, lastErr := "not listed", ""
	err = p.proc.waitReady(ctx, fmt.Sprintf("target %s of job %s to be up", hostPort, job), func(ctx context.Context) (bool, error) {
		res, err := api.Targets(ctx)
		if err != nil {
			return false, err
		}
		for _, t := range res.Active {
			if string(t.Labels["job"]) != job || string(t.Labels["instance"]) != hostPort {
				continue
			}
			health, lastErr = string(t.Health), t.LastError
			return t.Health == promv1.HealthGood, nil
		}
		return false, nil
	})
	if err != nil {
		if lastErr != "" {
			return fmt.Errorf("%w (target health %s: %s)", err, health, lastErr)
		}
		return fmt.Errorf("%w (target health %s)", err, health)
	}
	return nil
}

// httpOK reports whether GET url answers 200.
func httpOK(ctx context.Context, c *http.Client, url string) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return true, nil
}

func newPrometheusServer(bin, dir string, port int, track func(*process)) (*prometheusServer, error) {
	dataDir := filepath.Join(dir, "prometheus-data")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("prometheus data dir: %w", err)
	}
	return &prometheusServer{
		bin:        bin,
		port:       port,
		dataDir:    dataDir,
		configPath: filepath.Join(dir, "prometheus.yml"),
		logPath:    filepath.Join(dir, "logs", "prometheus.log"),
		http:       &http.Client{Timeout: 10 * time.Second},
		track:      track,
	}, nil
}
