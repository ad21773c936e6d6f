package gates

import (
	"context"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"sluice.dev/sluice/specs"
)

// fakeProm is a narrow stand-in for Prometheus' query API, for what a real
// Prometheus cannot be made to do here: require a bearer token over TLS,
// answer odd result shapes, fail with a 5xx.
type fakeProm struct {
	mu     sync.Mutex
	tokens []string // Authorization headers seen
	status int
	body   string
}

func (f *fakeProm) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokens = append(f.tokens, r.Header.Get("Authorization"))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(f.status)
	_, _ = w.Write([]byte(f.body))
}

func (f *fakeProm) set(status int, body string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status, f.body = status, body
}

func vectorBody(values ...string) string {
	var series []string
	for i, v := range values {
		series = append(series, `{"metric":{"i":"`+string(rune('a'+i))+`"},"value":[1700000000,"`+v+`"]}`)
	}
	return `{"status":"success","data":{"resultType":"vector","result":[` + strings.Join(series, ",") + `]}}`
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBearerTokenFileAndCA(t *testing.T) {
	fake := &fakeProm{status: 200, body: vectorBody("99.5")}
	srv := httptest.NewUnstartedServer(fake)
	// The handshake the CA-less client fails is expected; keep it out of the log.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	defer srv.Close()
	dir := t.TempDir()
	ca := writeFile(t, dir, "ca.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})))
	tokenFile := writeFile(t, dir, "token", "first-secret\n")

	e, err := New(Options{Address: srv.URL, BearerTokenFile: tokenFile, CAFile: ca})
	if err != nil {
		t.Fatal(err)
	}
	metrics := []specs.Metric{{Name: specs.MetricRequestSuccessRate, ThresholdRange: specs.ThresholdRange{Min: ptr(99)}}}
	res, err := e.Evaluate(context.Background(), catalogV2, metrics)
	if err != nil {
		t.Fatal(err)
	}
	if !res[0].Passed || res[0].Value != 99.5 {
		t.Errorf("result = %+v, want 99.5 passed", res[0])
	}

	// A rotated token is used from the next request on.
	writeFile(t, dir, "token", "second-secret")
	if _, err := e.Evaluate(context.Background(), catalogV2, metrics); err != nil {
		t.Fatal(err)
	}
	fake.mu.Lock()
	seen := append([]string(nil), fake.tokens...)
	fake.mu.Unlock()
	if len(seen) != 2 || seen[0] != "Bearer first-secret" || seen[1] != "Bearer second-secret" {
		t.Errorf("Authorization headers = %q, want the first then the rotated token", seen)
	}

	// A token that cannot be read is a Prometheus-side failure that names
	// the file and never the token.
	if err := os.Remove(tokenFile); err != nil {
		t.Fatal(err)
	}
	_, err = e.Evaluate(context.Background(), catalogV2, metrics)
	var pe *PrometheusError
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), tokenFile) {
		t.Errorf("error = %v, want a *PrometheusError naming %s", err, tokenFile)
	}

	// Without the CA the server's certificate is not trusted.
	writeFile(t, dir, "token", "third-secret")
	noCA, err := New(Options{Address: srv.URL, BearerTokenFile: tokenFile})
	if err != nil {
		t.Fatal(err)
	}
	_, err = noCA.Evaluate(context.Background(), catalogV2, metrics)
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("error without CA = %v, want a *PrometheusError about the certificate", err)
	}
	if strings.Contains(err.Error(), "secret") {
		t.Errorf("error leaks the token: %v", err)
	}
}

func TestResultShapes(t *testing.T) {
	fake := &fakeProm{}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	e, err := New(Options{Address: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	metric := []specs.Metric{{Name: "m", Query: "q", ThresholdRange: specs.ThresholdRange{Max: ptr(10)}}}
	for _, tt := range []struct {
		name       string
		status     int
		body       string
		wantValue  float64
		wantNoData bool
		wantPassed bool
		wantErr    string
		promErr    bool
	}{
		{name: "one sample", status: 200, body: vectorBody("5"), wantValue: 5, wantPassed: true},
		{name: "out of range", status: 200, body: vectorBody("11"), wantValue: 11},
		{name: "empty vector", status: 200, body: vectorBody(), wantNoData: true},
		{name: "NaN", status: 200, body: vectorBody("NaN"), wantNoData: true},
		{name: "+Inf", status: 200, body: vectorBody("+Inf"), wantNoData: true},
		{name: "scalar", status: 200, body: `{"status":"success","data":{"resultType":"scalar","result":[1700000000,"3"]}}`, wantValue: 3, wantPassed: true},
		{name: "several series", status: 200, body: vectorBody("1", "2"), wantErr: "returned 2 series"},
		{name: "matrix", status: 200, body: `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1700000000,"1"]]}]}}`, wantErr: "range vector"},
		{name: "bad query", status: 400, body: `{"status":"error","errorType":"bad_data","error":"parse error"}`, wantErr: "bad_data: parse error", promErr: true},
		{name: "server error", status: 503, body: `overloaded`, wantErr: "server error: 503", promErr: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fake.set(tt.status, tt.body)
			res, err := e.Evaluate(context.Background(), catalogV2, metric)
			if tt.wantErr != "" {
				var pe *PrometheusError
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || errors.As(err, &pe) != tt.promErr {
					t.Fatalf("error = %v, want one containing %q (PrometheusError: %v)", err, tt.wantErr, tt.promErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			r := res[0]
			if r.NoData != tt.wantNoData || r.Passed != tt.wantPassed || (!r.NoData && r.Value != tt.wantValue) {
				t.Errorf("result = %+v, want value %g noData %v passed %v", r, tt.wantValue, tt.wantNoData, tt.wantPassed)
			}
		})
	}
}

func TestCancelledContextIsNotAPrometheusError(t *testing.T) {
	fake := &fakeProm{status: 200, body: vectorBody("1")}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	e, err := New(Options{Address: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = e.Evaluate(ctx, catalogV2, []specs.Metric{{Name: specs.MetricRequestDuration}})
	var pe *PrometheusError
	if !errors.Is(err, context.Canceled) || errors.As(err, &pe) {
		t.Errorf("error = %v, want context.Canceled and no *PrometheusError", err)
	}
}

func TestNewValidates(t *testing.T) {
	dir := t.TempDir()
	notPEM := writeFile(t, dir, "ca.pem", "not a certificate")
	empty := writeFile(t, dir, "token", "  \n")
	for _, tt := range []struct {
		opts Options
		want string
	}{
		{Options{}, "address is empty"},
		{Options{Address: "prometheus:9090"}, "scheme must be http or https"},
		{Options{Address: "http://"}, "no host"},
		{Options{Address: "http://user:hunter2@prom:9090", Timeout: -1}, "negative"},
		{Options{Address: "http://prom:9090", CAFile: filepath.Join(dir, "missing")}, "read CA file"},
		{Options{Address: "http://prom:9090", CAFile: notPEM}, "holds no PEM certificate"},
		{Options{Address: "http://prom:9090", BearerTokenFile: filepath.Join(dir, "missing")}, "read bearer token file"},
		{Options{Address: "http://prom:9090", BearerTokenFile: empty}, "is empty"},
	} {
		_, err := New(tt.opts)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%+v) error = %v, want one containing %q", tt.opts, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error leaks the address' password: %v", err)
		}
	}
}

// A Prometheus that does not answer within Options.Timeout is Prometheus'
// failure, not the caller's.
func TestSlowPrometheusIsAPrometheusError(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Never answers: waits until the client hangs up (noticed once the
		// body is read) or the test ends.
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	e, err := New(Options{Address: srv.URL, Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.Evaluate(context.Background(), catalogV2, []specs.Metric{{Name: specs.MetricRequestDuration}})
	var pe *PrometheusError
	if !errors.As(err, &pe) {
		t.Errorf("error = %v, want a *PrometheusError", err)
	}
}
