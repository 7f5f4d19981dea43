package api

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tripline/tripline/internal/config"
)

const fuzzToken = "fuzz-0123456789abcdef0123456789abcdef0123456789abcdef"

// FuzzAuthorization: whatever the header, authenticate does not panic, and
// only "Bearer <the token>" (scheme in any case) authenticates.
func FuzzAuthorization(f *testing.F) {
	h := sha256.Sum256([]byte(fuzzToken))
	s, err := New(Options{Tokens: []config.Token{{Name: "f", Role: "viewer", SHA256: hex.EncodeToString(h[:])}}, Registry: prometheus.NewRegistry()})
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{"", "Bearer", "Bearer ", "Bearer " + fuzzToken, "bearer  " + fuzzToken, "BEARER " + fuzzToken + " ",
		"Basic Zm9vOmJhcg==", "Bearer\t" + fuzzToken, "Bearer " + fuzzToken + "\x00", " Bearer " + fuzzToken} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, header string) {
		r := httptest.NewRequest(http.MethodGet, "/api/v1/x", nil)
		r.Header.Set("Authorization", header)
		c, reason := s.authenticate(r)
		scheme, tok, _ := strings.Cut(header, " ")
		want := strings.EqualFold(scheme, "Bearer") && strings.TrimLeft(tok, " ") == fuzzToken
		if (reason == "") != want {
			t.Fatalf("header %q: reason %q, want authenticated %v", header, reason, want)
		}
		if reason == "" && c.Name != "f" {
			t.Fatalf("header %q: caller %+v", header, c)
		}
	})
}

// FuzzDecodeJSON: any body gets a 2xx or an error in the API's shape, with
// no panic.
func FuzzDecodeJSON(f *testing.F) {
	for _, seed := range []string{`{"a":"x","b":1}`, `{"a":1}`, `[]`, `null`, `{"c":true}`, `{"a":"x"}{}`, `{`, "", `{"a":"\u0000"}`} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body string) {
		r := httptest.NewRequest(http.MethodPost, "/api/v1/x", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		r.Body = http.MaxBytesReader(nil, r.Body, 64)
		w := httptest.NewRecorder()
		var v struct {
			A string `json:"a"`
			B int    `json:"b"`
		}
		ok := DecodeJSON(w, r, &v)
		switch {
		case ok && w.Code != http.StatusOK:
			t.Fatalf("decoded, yet answered %d", w.Code)
		case !ok && w.Code != http.StatusBadRequest && w.Code != http.StatusRequestEntityTooLarge:
			t.Fatalf("body %q: status %d", body, w.Code)
		case !ok && !strings.HasPrefix(w.Body.String(), `{"error":`):
			t.Fatalf("body %q: answer %q", body, w.Body.String())
		}
	})
}
