package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"sluice.dev/sluice/internal/testenv"
)

// testEnv is started by the first test that needs a cluster.
var testEnv = testenv.NewShared(testenv.Options{})

func TestMain(m *testing.M) { os.Exit(testEnv.Main(m)) }

func TestBadFlags(t *testing.T) {
	env := testEnv.Env(t)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{nil, "--service is required"},
		{[]string{"--service", "catalog"}, "namespace is missing"},
		{[]string{"--service", "a/catalog", "--namespace", "b"}, "disagree"},
		{[]string{"--service", "a/catalog", "--version", "v2:0.1"}, "want VERSION:ERRORRATE:LATENCY"},
		{[]string{"--service", "a/catalog", "--version", "v2:lots:1s"}, `error rate "lots" is not a number`},
		{[]string{"--service", "a/catalog", "--version", "v2:0.1:soon"}, `latency "soon" is not a duration`},
		{[]string{"--service", "a/catalog", "--cohort-header", "x-cohort"}, "want NAME:VALUE"},
		{[]string{"--service", "a/catalog", "--source-labels", "app"}, "want key=value"},
		{[]string{"--service", "a/catalog", "--log-level", "loud"}, "--log-level"},
		{[]string{"--service", "a/catalog", "extra"}, "unexpected arguments"},
		{[]string{"--service", "a/catalog", "--kubeconfig", "/nonexistent/kubeconfig"}, "load kubeconfig"},
		{[]string{"--service", "a/catalog", "--kubeconfig", "KC", "--rps", "-3"}, "rate -3"},
	} {
		for i, a := range tt.args {
			if a == "KC" {
				tt.args[i] = env.KubeconfigPath()
			}
		}
		var stderr bytes.Buffer
		err := run(context.Background(), tt.args, io.Discard, &stderr)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("run(%q) = %v, want an error containing %q", tt.args, err, tt.want)
		}
	}
}

// TestRun starts the command against the test cluster, reads the address it
// prints, uses its endpoints and stops it by cancelling, as a signal would.
func TestRun(t *testing.T) {
	env := testEnv.Env(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	runCtx, stop := context.WithCancel(ctx)
	defer stop()

	out, w := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(runCtx, []string{
			"--kubeconfig", env.KubeconfigPath(), "--service", "default/catalog",
			"--rps", "20", "--version", "v2:0.1:300ms", "--log-level", "warn",
		}, w, io.Discard)
		_ = w.Close()
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("read the address line: %v (run: %v)", err, <-done)
	}
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "meshsim listening on ")
	if !ok {
		t.Fatalf("first line %q, want %q", line, "meshsim listening on HOST:PORT")
	}

	get := func(path string) string {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s = %s %s", path, resp.Status, body)
		}
		return string(body)
	}
	if body := get("/versions"); !strings.Contains(body, `"v2":{"errorRate":0.1,"latencyMs":300}`) {
		t.Errorf("/versions = %s, want v2 from --version", body)
	}
	// No Service exists: requests are generated but none is served.
	if body := get("/routing"); !strings.Contains(body, "no VirtualService") {
		t.Errorf("/routing = %s", body)
	}
	if body := get("/metrics"); !strings.Contains(body, `meshsim_requests_total{outcome="no_endpoint"}`) {
		t.Errorf("/metrics lacks the outcome counter")
	}

	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run after cancel = %v, want nil", err)
		}
	case <-ctx.Done():
		t.Fatal("run did not return after cancel")
	}
}
