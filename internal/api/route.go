// Package api is Tripline's authenticated HTTP JSON API (/api/v1/...):
// bearer tokens with roles from the configuration, and routes that other
// packages contribute (investigation queries, revocation actions). Only
// /healthz, /readyz and /metrics are open.
package api

import (
	"context"
	"encoding/json"
	"net/http"
)

// Role is what a token may do. Each role includes the ones below it.
type Role int

// Roles, least to most.
const (
	// RoleViewer reads history and decisions.
	RoleViewer Role = iota + 1
	// RoleAnalyst also revokes, lifts, approves and denies.
	RoleAnalyst
	// RoleAdmin also changes configuration-like state (rule sets, tokens).
	RoleAdmin
)

// ParseRole reads "viewer", "analyst" or "admin".
func ParseRole(s string) (Role, bool) {
	switch s {
	case "viewer":
		return RoleViewer, true
	case "analyst":
		return RoleAnalyst, true
	case "admin":
		return RoleAdmin, true
	}
	return 0, false
}

func (r Role) String() string {
	switch r {
	case RoleViewer:
		return "viewer"
	case RoleAnalyst:
		return "analyst"
	case RoleAdmin:
		return "admin"
	}
	return "none"
}

// Route is one endpoint: the least role that may call it and its handler.
// Path is a net/http ServeMux pattern below /api/v1, e.g. "/timeline" or
// "/decisions/{id}/explain".
type Route struct {
	Method  string
	Path    string
	Role    Role
	Handler http.HandlerFunc
}

// Caller is the authenticated identity of a request.
type Caller struct {
	Name string // the token's name from the configuration, never the token
	Role Role
}

type callerKey struct{}

// WithCaller returns ctx carrying c (the auth middleware does this).
func WithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// CallerFrom returns the authenticated caller of a request.
func CallerFrom(ctx context.Context) (Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(Caller)
	return c, ok
}

// WriteJSON writes v as the JSON response body with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// ErrorBody is the JSON body of every error response.
type ErrorBody struct {
	Error string `json:"error"`
}

// Error writes an error response. msg is shown to the caller: never put a
// secret or an internal detail in it.
func Error(w http.ResponseWriter, status int, msg string) {
	WriteJSON(w, status, ErrorBody{Error: msg})
}
