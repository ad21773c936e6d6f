// Command webhook-receiver is an example receiver of Sluice's webhook
// gates: it checks each request's signature, then runs the shell command
// configured for the webhook's name, with the payload in its environment.
//
//   - pre-step and check webhooks wait for the command: exit status 0
//     answers 200 (the gate passes), anything else 500 with the end of its
//     output (the gate fails);
//   - load webhooks start the command and answer 202 at once; a command
//     still running for the same release and webhook is left to finish.
//
// For example, a smoke test before each step and a load generator with
// vegeta (https://github.com/tsenart/vegeta) while the step is checked:
//
//	webhook-receiver --listen :8080 --secret-file /etc/receiver/key \
//	  --hook 'smoke-test=./smoke.sh "http://$SLUICE_SERVICE.$SLUICE_NAMESPACE"' \
//	  --hook 'load=echo "GET http://$SLUICE_SERVICE.$SLUICE_NAMESPACE/" | vegeta attack -rate 20 -duration "$SLUICE_INTERVAL" | vegeta report'
//
// The environment holds SLUICE_TYPE, SLUICE_WEBHOOK, SLUICE_RELEASE,
// SLUICE_NAMESPACE, SLUICE_NAME, SLUICE_STEP, SLUICE_STAGE,
// SLUICE_CANDIDATE_WEIGHT, SLUICE_STABLE, SLUICE_CANDIDATE,
// SLUICE_REVISION, SLUICE_SERVICE, SLUICE_WORKLOAD, SLUICE_INTERVAL and
// each metadata entry as SLUICE_META_<KEY> (upper case, - as _).
package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"
)

// payload is the part of Sluice's webhook body the receiver uses.
type payload struct {
	Type      string `json:"type"`
	Webhook   string `json:"webhook"`
	Release   string `json:"release"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Step      string `json:"step"`
	Stage     string `json:"stage"`
	Weights   struct {
		Candidate int32 `json:"candidate"`
	} `json:"weights"`
	Stable    string            `json:"stable"`
	Candidate string            `json:"candidate"`
	Revision  string            `json:"revision"`
	Service   string            `json:"service"`
	Workload  string            `json:"workload"`
	Interval  string            `json:"interval"`
	Metadata  map[string]string `json:"metadata"`
}

type hooks map[string]string

func (h hooks) String() string { return fmt.Sprint(map[string]string(h)) }

func (h hooks) Set(v string) error {
	name, cmd, ok := strings.Cut(v, "=")
	if !ok || name == "" || cmd == "" {
		return errors.New("want NAME=COMMAND")
	}
	h[name] = cmd
	return nil
}

func main() {
	listen := flag.String("listen", ":8080", "address to serve on")
	secretFile := flag.String("secret-file", "", "file holding the key Sluice signs with (--gate-webhook-secret-file); required")
	timeout := flag.Duration("timeout", 5*time.Minute, "how long a pre-step or check command may run")
	cmds := hooks{}
	flag.Var(cmds, "hook", "NAME=COMMAND: the shell command run for the webhook NAME (repeatable)")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if *secretFile == "" {
		log.Error("--secret-file is required: an unsigned request could start any of the commands")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r := &receiver{secretFile: *secretFile, hooks: cmds, timeout: *timeout, log: log, ctx: ctx, running: map[string]bool{}}
	srv := &http.Server{Addr: *listen, Handler: r, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	log.Info("serving Sluice's webhook gates", "addr", *listen, "hooks", len(cmds))
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("serve", "err", err)
		os.Exit(1)
	}
	r.wg.Wait()
}

type receiver struct {
	secretFile string
	hooks      hooks
	timeout    time.Duration
	log        *slog.Logger
	// ctx ends the load commands at shutdown.
	ctx context.Context
	wg  sync.WaitGroup

	mu      sync.Mutex
	running map[string]bool // release/webhook of the load commands running
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	if err != nil {
		http.Error(w, "read body", http.StatusBadRequest)
		return
	}
	key, err := os.ReadFile(r.secretFile) // at every request: a rotated key takes effect at once
	if err != nil {
		r.log.Error("read the key", "err", err)
		http.Error(w, "no key", http.StatusInternalServerError)
		return
	}
	if !valid(bytes.TrimSpace(key), body, req.Header.Get("X-Sluice-Signature")) {
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var p payload
	if err := json.Unmarshal(body, &p); err != nil {
		http.Error(w, "bad payload", http.StatusBadRequest)
		return
	}
	cmd, ok := r.hooks[p.Webhook]
	if !ok {
		http.Error(w, "no command for webhook "+p.Webhook, http.StatusNotFound)
		return
	}
	if p.Type == "load" {
		r.load(p, cmd)
		w.WriteHeader(http.StatusAccepted)
		return
	}
	ctx, cancel := context.WithTimeout(req.Context(), r.timeout)
	defer cancel()
	out, err := r.command(ctx, p, cmd).CombinedOutput()
	r.log.Info("ran", "webhook", p.Webhook, "type", p.Type, "release", p.Release, "step", p.Step, "err", err)
	if err != nil {
		if len(out) > 512 {
			out = out[len(out)-512:]
		}
		http.Error(w, fmt.Sprintf("%v: %s", err, out), http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// load starts cmd unless it already runs for the release's webhook.
func (r *receiver) load(p payload, cmd string) {
	id := p.Release + "/" + p.Webhook
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.running[id] {
		return
	}
	c := r.command(r.ctx, p, cmd)
	if err := c.Start(); err != nil {
		r.log.Error("load command", "webhook", p.Webhook, "err", err)
		return
	}
	r.running[id] = true
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		err := c.Wait()
		r.log.Info("load command ended", "webhook", p.Webhook, "release", p.Release, "step", p.Step, "err", err)
		r.mu.Lock()
		delete(r.running, id)
		r.mu.Unlock()
	}()
}

func (r *receiver) command(ctx context.Context, p payload, cmd string) *exec.Cmd {
	c := exec.CommandContext(ctx, "sh", "-c", cmd)
	c.Env = append(os.Environ(),
		"SLUICE_TYPE="+p.Type, "SLUICE_WEBHOOK="+p.Webhook, "SLUICE_RELEASE="+p.Release,
		"SLUICE_NAMESPACE="+p.Namespace, "SLUICE_NAME="+p.Name, "SLUICE_STEP="+p.Step, "SLUICE_STAGE="+p.Stage,
		fmt.Sprintf("SLUICE_CANDIDATE_WEIGHT=%d", p.Weights.Candidate), "SLUICE_STABLE="+p.Stable,
		"SLUICE_CANDIDATE="+p.Candidate, "SLUICE_REVISION="+p.Revision, "SLUICE_SERVICE="+p.Service,
		"SLUICE_WORKLOAD="+p.Workload, "SLUICE_INTERVAL="+p.Interval)
	for k, v := range p.Metadata {
		c.Env = append(c.Env, "SLUICE_META_"+strings.ToUpper(strings.ReplaceAll(k, "-", "_"))+"="+v)
	}
	return c
}

// valid checks X-Sluice-Signature: sha256=<hex HMAC-SHA256 of the body>,
// in constant time.
func valid(key, body []byte, header string) bool {
	mac := hmac.New(sha256.New, key)
	mac.Write(body)
	want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	return hmac.Equal([]byte(header), []byte(want))
}
