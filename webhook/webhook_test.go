package webhook

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

const key = "s3cr3t-signing-key"

func keyFile(t *testing.T) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(f, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func instant(context.Context, time.Duration) error { return nil }

func TestCall(t *testing.T) {
	body := []byte(`{"type":"check","webhook":"smoke"}`)
	tests := []struct {
		name string
		// codes answers the attempts in turn (the last one repeats); 0
		// answers nothing until the client gives up.
		codes        []int
		reply        string
		wantPass     bool
		wantCode     int
		wantAttempts int
		wantReason   string
		wantErr      string
	}{
		{name: "200 passes", codes: []int{200}, wantPass: true, wantCode: 200, wantAttempts: 1, wantReason: "200"},
		{name: "204 passes", codes: []int{204}, wantPass: true, wantCode: 204, wantAttempts: 1, wantReason: "204"},
		{name: "400 fails at once", codes: []int{400}, reply: "bad smoke", wantCode: 400, wantAttempts: 1, wantReason: "400", wantErr: "400 Bad Request: bad smoke"},
		{name: "redirect is not followed", codes: []int{302}, wantCode: 302, wantAttempts: 1, wantReason: "302", wantErr: "302 Found"},
		{name: "503 then 200 passes", codes: []int{503, 200}, wantPass: true, wantCode: 200, wantAttempts: 2, wantReason: "200"},
		{name: "429 then 201 passes", codes: []int{429, 201}, wantPass: true, wantCode: 201, wantAttempts: 2, wantReason: "201"},
		{name: "500 fails after the attempts", codes: []int{500}, wantCode: 500, wantAttempts: 3, wantReason: "500", wantErr: "500 Internal Server Error"},
		{name: "no answer times out", codes: []int{0}, wantAttempts: 3, wantReason: "timeout", wantErr: "no answer within 100ms"},
		{name: "a key echoed back is redacted", codes: []int{403}, reply: "wrong key " + key, wantCode: 403, wantAttempts: 1, wantReason: "403", wantErr: "403 Forbidden: wrong key [REDACTED]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := int(calls.Add(1))
				got, _ := io.ReadAll(r.Body)
				if string(got) != string(body) {
					t.Errorf("body %q, want %q", got, body)
				}
				if sig := r.Header.Get(SignatureHeader); !Verify([]byte(key), got, sig) {
					t.Errorf("signature %q does not verify", sig)
				}
				if r.Header.Get(TypeHeader) != "check" || r.Header.Get("Content-Type") != "application/json" {
					t.Errorf("headers %v", r.Header)
				}
				code := tc.codes[min(n, len(tc.codes))-1]
				if code == 0 {
					<-r.Context().Done()
					return
				}
				if code == 302 {
					w.Header().Set("Location", "http://example.invalid/")
				}
				w.WriteHeader(code)
				_, _ = io.WriteString(w, tc.reply)
			}))
			defer srv.Close()
			c := New(Options{SecretFile: keyFile(t), Sleep: instant})
			res := c.Call(t.Context(), Target{Name: "smoke", Type: TypeCheck, URL: srv.URL, Timeout: 100 * time.Millisecond}, body)
			if res.Passed() != tc.wantPass || res.Code != tc.wantCode || res.Attempts != tc.wantAttempts || res.Reason() != tc.wantReason {
				t.Errorf("got passed=%v code=%d attempts=%d reason=%q err=%v; want %v %d %d %q",
					res.Passed(), res.Code, res.Attempts, res.Reason(), res.Err, tc.wantPass, tc.wantCode, tc.wantAttempts, tc.wantReason)
			}
			if int(calls.Load()) != tc.wantAttempts {
				t.Errorf("the receiver saw %d requests, want %d", calls.Load(), tc.wantAttempts)
			}
			if tc.wantErr == "" && res.Err != nil {
				t.Errorf("err %v", res.Err)
			}
			if tc.wantErr != "" && (res.Err == nil || !strings.Contains(res.Err.Error(), tc.wantErr)) {
				t.Errorf("err %v, want it to hold %q", res.Err, tc.wantErr)
			}
			if res.Err != nil && strings.Contains(res.Err.Error(), key) {
				t.Errorf("err %v holds the key", res.Err)
			}
		})
	}
}

func TestCallReceiverDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	var slept []time.Duration
	c := New(Options{Sleep: func(_ context.Context, d time.Duration) error { slept = append(slept, d); return nil }})
	res := c.Call(t.Context(), Target{Name: "smoke", URL: "http://user:hunter22@" + addr + "/hook", Attempts: 4}, []byte("{}"))
	if res.Passed() || res.Code != 0 || res.Attempts != 4 || res.Reason() != "unreachable" {
		t.Fatalf("got %+v (%s)", res, res.Reason())
	}
	if want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}; len(slept) != 3 || slept[0] != want[0] || slept[1] != want[1] || slept[2] != want[2] {
		t.Errorf("backoff %v, want %v", slept, want)
	}
	if msg := res.Err.Error(); strings.Contains(msg, "hunter22") || strings.Contains(msg, "user:") || !strings.Contains(msg, "http://"+addr+"/hook") {
		t.Errorf("err %q should name the URL without its userinfo", msg)
	}
}

func TestCallUnsignedWithoutKey(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if sig, ok := r.Header[SignatureHeader]; ok {
			t.Errorf("signed without a key: %v", sig)
		}
	}))
	defer srv.Close()
	res := New(Options{}).Call(t.Context(), Target{Name: "x", URL: srv.URL}, []byte("{}"))
	if !res.Passed() {
		t.Fatalf("%+v", res)
	}
}

func TestCallKeyFileMissing(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { calls.Add(1) }))
	defer srv.Close()
	missing := filepath.Join(t.TempDir(), "nope")
	res := New(Options{SecretFile: missing, Sleep: instant}).Call(t.Context(), Target{Name: "x", URL: srv.URL}, []byte("{}"))
	if res.Passed() || res.Attempts != 1 || calls.Load() != 0 || !strings.Contains(res.Err.Error(), missing) {
		t.Fatalf("got %+v, %d calls", res, calls.Load())
	}
}

func TestCallCancelled(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body) // then the server sees the client go
		<-r.Context().Done()
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(t.Context())
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	res := New(Options{}).Call(ctx, Target{Name: "x", URL: srv.URL, Timeout: time.Minute}, []byte("{}"))
	if res.Passed() || res.Attempts != 1 {
		t.Fatalf("got %+v", res)
	}
}

func TestGo(t *testing.T) {
	got := make(chan []byte, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- b
	}))
	defer srv.Close()
	c := New(Options{})
	p := Payload{Type: TypeLoad, Webhook: "load", Release: "ns/app", Weights: Weights{Stable: 90, Candidate: 10}}
	body, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var res Result
	c.Go(t.Context(), Target{Name: "load", URL: srv.URL}, body, func(r Result) { res = r })
	c.Wait()
	if !res.Passed() {
		t.Fatalf("%+v", res)
	}
	var back Payload
	if err := json.Unmarshal(<-got, &back); err != nil || back.Weights.Candidate != 10 || back.Release != "ns/app" {
		t.Fatalf("payload %+v, %v", back, err)
	}
}

func TestVerify(t *testing.T) {
	body := []byte(`{"a":1}`)
	sig := Sign([]byte("k"), body)
	// printf '{"a":1}' | openssl dgst -sha256 -hmac k
	if want := "sha256=c3a92ff9e274cdcce27a58c15a78ec6dcbbdbd0038a87e7a11baef2028fd8bff"; sig != want {
		t.Errorf("signature %q", sig)
	}
	if !Verify([]byte("k"), body, sig) || Verify([]byte("other"), body, sig) || Verify([]byte("k"), []byte(`{"a":2}`), sig) {
		t.Error("Verify accepts what it should refuse, or the reverse")
	}
}
