package server

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
)

// The headers that carry a delivery's proof of the shared secret.
const (
	// GitHub (and Gitea, which sends both): "sha256=" and the hex
	// HMAC-SHA256 of the body keyed with the secret.
	HeaderGitHubSignature = "X-Hub-Signature-256"
	// Gitea (and Gogs' equivalent X-Gogs-Signature): the hex HMAC-SHA256.
	HeaderGiteaSignature = "X-Gitea-Signature"
	HeaderGogsSignature  = "X-Gogs-Signature"
	// GitLab: the secret token itself.
	HeaderGitLabToken = "X-Gitlab-Token"
)

// webhook accepts push deliveries: each one that proves the shared secret
// triggers a Git sync. What the delivery says is not trusted, nor needed:
// the sync reads Git itself.
type webhook struct {
	secretFile string
	maxBody    int64
	log        *slog.Logger
	sync       func(*http.Request)
}

func (h *webhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.maxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			h.log.Warn("webhook delivery refused: body too large", "remote", r.RemoteAddr, "limit", h.maxBody)
			http.Error(w, fmt.Sprintf("body larger than %d bytes", h.maxBody), http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "cannot read the body", http.StatusBadRequest)
		return
	}
	secret, err := readSecret(h.secretFile)
	if err != nil {
		h.log.Error("webhook delivery not checked: no secret", "err", err)
		http.Error(w, "webhook secret unavailable", http.StatusServiceUnavailable)
		return
	}
	provider, err := verify(r.Header, body, secret)
	if err != nil {
		h.log.Warn("webhook delivery refused", "remote", r.RemoteAddr, "reason", err.Error())
		http.Error(w, "invalid or missing signature", http.StatusUnauthorized)
		return
	}
	h.log.Info("webhook delivery accepted; syncing Git", "provider", provider, "event", eventName(r.Header), "delivery", deliveryID(r.Header))
	h.sync(r)
	w.WriteHeader(http.StatusAccepted)
	fmt.Fprintln(w, "sync triggered")
}

// verify checks every proof the delivery carries; at least one is needed
// and all must hold. It returns the provider the proofs name. Its errors
// never hold header values.
func verify(hdr http.Header, body, secret []byte) (string, error) {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	want := mac.Sum(nil)
	var providers []string
	if v := hdr.Values(HeaderGitHubSignature); len(v) > 0 {
		hexSig, ok := strings.CutPrefix(onlyOne(v), "sha256=")
		if !ok || !hexEqual(hexSig, want) {
			return "", fmt.Errorf("%s does not match the body", HeaderGitHubSignature)
		}
		providers = append(providers, "github")
	}
	for _, h := range []string{HeaderGiteaSignature, HeaderGogsSignature} {
		if v := hdr.Values(h); len(v) > 0 {
			if !hexEqual(onlyOne(v), want) {
				return "", fmt.Errorf("%s does not match the body", h)
			}
			providers = append(providers, "gitea")
		}
	}
	if v := hdr.Values(HeaderGitLabToken); len(v) > 0 {
		// Comparing digests keeps the comparison constant-time in the
		// secret's length too.
		got := sha256.Sum256([]byte(onlyOne(v)))
		exp := sha256.Sum256(secret)
		if !hmac.Equal(got[:], exp[:]) {
			return "", fmt.Errorf("%s is not the secret", HeaderGitLabToken)
		}
		providers = append(providers, "gitlab")
	}
	if len(providers) == 0 {
		return "", fmt.Errorf("no %s, %s or %s header", HeaderGitHubSignature, HeaderGitLabToken, HeaderGiteaSignature)
	}
	return providers[0], nil
}

// onlyOne is the header's value when it was sent once; "" (which never
// verifies) when it was repeated.
func onlyOne(v []string) string {
	if len(v) != 1 {
		return ""
	}
	return strings.TrimSpace(v[0])
}

func hexEqual(hexSig string, want []byte) bool {
	got, err := hex.DecodeString(hexSig)
	if err != nil {
		return false
	}
	return hmac.Equal(got, want)
}

// eventName is the provider's event type, for the log.
func eventName(h http.Header) string {
	for _, k := range []string{"X-GitHub-Event", "X-Gitlab-Event", "X-Gitea-Event", "X-Gogs-Event"} {
		if v := h.Get(k); v != "" {
			return clip(v)
		}
	}
	return ""
}

// deliveryID is the provider's delivery ID, for the log.
func deliveryID(h http.Header) string {
	for _, k := range []string{"X-GitHub-Delivery", "X-Gitea-Delivery", "X-Gogs-Delivery", "X-Gitlab-Event-UUID"} {
		if v := h.Get(k); v != "" {
			return clip(v)
		}
	}
	return ""
}

// clip keeps what a sender controls short in the log.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64]
	}
	return s
}
