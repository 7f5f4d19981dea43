package actions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/tripline/tripline/internal/api"
	"github.com/tripline/tripline/pipeline/enforce"
)

// Routes are the analyst endpoints of the HTTP API, issuing through is as
// analyst/<token name>:
//
//	POST /api/v1/revocations              RevokeRequest → 201 Response
//	POST /api/v1/revocations/{id}/lift    ReasonRequest → 200 Response
//	POST /api/v1/holds/{id}/approve       ReasonRequest → 200 Response
//	POST /api/v1/holds/{id}/deny          DenyRequest   → 200 Response
func Routes(is *Issuer) []api.Route {
	return []api.Route{
		{Method: http.MethodPost, Path: "/revocations", Role: api.RoleAnalyst, Handler: is.serveRevoke},
		{Method: http.MethodPost, Path: "/revocations/{id}/lift", Role: api.RoleAnalyst, Handler: is.serveLift},
		{Method: http.MethodPost, Path: "/holds/{id}/approve", Role: api.RoleAnalyst, Handler: is.serveApprove},
		{Method: http.MethodPost, Path: "/holds/{id}/deny", Role: api.RoleAnalyst, Handler: is.serveDeny},
	}
}

// RevokeRequest is the body of POST /api/v1/revocations.
type RevokeRequest struct {
	Tenant string `json:"tenant"`
	// Scope: session, instance, agent, task, principal, credential or tool.
	Scope string `json:"scope"`
	// Value is the id within the scope (the agent identity for tool).
	Value string `json:"value"`
	// Tool is the tool, with scope tool only.
	Tool   string `json:"tool,omitempty"`
	Reason string `json:"reason"`
	// Duration is how long the revocation lasts (default 1h, at most 366 days).
	Duration Duration `json:"duration,omitzero"`
}

// ReasonRequest is the body of a lift or an approve.
type ReasonRequest struct {
	Reason string `json:"reason"`
}

// DenyRequest is the body of a deny.
type DenyRequest struct {
	Reason string `json:"reason"`
	// Duration of the revocation that replaces the hold (default: the
	// hold's own length).
	Duration Duration `json:"duration,omitzero"`
}

// Response answers an action.
type Response struct {
	// ID is the command to refer to: the revocation (revoke, deny) or the
	// lift (lift, approve).
	ID string `json:"id"`
	// Commands are the signed commands issued, in order.
	Commands []*enforce.Command `json:"commands"`
}

// Duration is a JSON duration string such as "90m" or "24h".
type Duration time.Duration

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return &api.FieldError{Field: "duration", Msg: `want a duration string such as "90m" or "24h"`}
	}
	v, err := time.ParseDuration(s)
	if err != nil || v <= 0 {
		return &api.FieldError{Field: "duration", Msg: fmt.Sprintf(`%q: want a positive duration such as "90m" or "24h"`, s)}
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes a duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (is *Issuer) serveRevoke(w http.ResponseWriter, r *http.Request) {
	var req RevokeRequest
	if !api.DecodeJSON(w, r, &req) {
		return
	}
	issuer, ok := is.callerIssuer(w, r)
	if !ok {
		return
	}
	rv, err := is.Revoke(r.Context(), issuer, Revoke{
		Tenant: req.Tenant, Scope: req.Scope, Value: req.Value, Tool: req.Tool, Reason: req.Reason, For: time.Duration(req.Duration),
	})
	if err != nil {
		is.writeError(w, r, err)
		return
	}
	api.WriteJSON(w, http.StatusCreated, Response{ID: rv.ID, Commands: []*enforce.Command{rv}})
}

func (is *Issuer) serveLift(w http.ResponseWriter, r *http.Request) {
	is.serveLiftLike(w, r, false, func(ctx context.Context, issuer, id, reason string, _ time.Duration) (*Result, error) {
		return is.Lift(ctx, issuer, id, reason)
	})
}

func (is *Issuer) serveApprove(w http.ResponseWriter, r *http.Request) {
	is.serveLiftLike(w, r, false, func(ctx context.Context, issuer, id, reason string, _ time.Duration) (*Result, error) {
		return is.Approve(ctx, issuer, id, reason)
	})
}

func (is *Issuer) serveDeny(w http.ResponseWriter, r *http.Request) {
	is.serveLiftLike(w, r, true, is.Deny)
}

type liftFunc func(ctx context.Context, issuer, id, reason string, dur time.Duration) (*Result, error)

// serveLiftLike decodes a ReasonRequest (a DenyRequest when deny is set)
// and does the action on the path's {id}.
func (is *Issuer) serveLiftLike(w http.ResponseWriter, r *http.Request, deny bool, do liftFunc) {
	var reason string
	var dur time.Duration
	if deny {
		var req DenyRequest
		if !api.DecodeJSON(w, r, &req) {
			return
		}
		reason, dur = req.Reason, time.Duration(req.Duration)
	} else {
		var req ReasonRequest
		if !api.DecodeJSON(w, r, &req) {
			return
		}
		reason = req.Reason
	}
	issuer, ok := is.callerIssuer(w, r)
	if !ok {
		return
	}
	res, err := do(r.Context(), issuer, r.PathValue("id"), reason, dur)
	if err != nil {
		is.writeError(w, r, err)
		return
	}
	out := Response{ID: res.Lift.ID}
	if res.Revocation != nil {
		out.ID = res.Revocation.ID
		out.Commands = append(out.Commands, res.Revocation)
	}
	out.Commands = append(out.Commands, res.Lift)
	api.WriteJSON(w, http.StatusOK, out)
}

// callerIssuer returns analyst/<token name> for the request's caller.
func (is *Issuer) callerIssuer(w http.ResponseWriter, r *http.Request) (string, bool) {
	c, ok := api.CallerFrom(r.Context())
	if !ok {
		api.Error(w, http.StatusUnauthorized, "not authenticated")
		return "", false
	}
	issuer, err := IssuerName(c.Name)
	if err != nil {
		is.Log.Error().Err(err).Str("request_id", api.RequestID(r.Context())).Msg("API token name cannot be an issuer")
		api.Error(w, http.StatusForbidden, "this token's name cannot sign commands: rename it in the configuration")
		return "", false
	}
	return issuer, true
}

// writeError answers a failed action: the caller sees what to fix, the log
// gets the cause.
func (is *Issuer) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var ae *Error
	if !errors.As(err, &ae) {
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			api.Error(w, http.StatusServiceUnavailable, "timed out: NATS did not answer in time; the same request again is safe for lift, approve and deny")
		case errors.Is(err, context.Canceled):
			// the caller went away: nobody to answer
		default:
			is.Log.Error().Err(err).Str("request_id", api.RequestID(r.Context())).Msg("API action failed")
			api.Error(w, http.StatusInternalServerError, "internal error (request id "+api.RequestID(r.Context())+")")
		}
		return
	}
	switch {
	case errors.Is(err, ErrInvalid):
		pub := *ae
		if pub.Field == "for" {
			pub.Field = "duration" // its name in the JSON bodies
		}
		api.Error(w, http.StatusBadRequest, pub.Public())
	case errors.Is(err, ErrNotFound):
		api.Error(w, http.StatusNotFound, ae.Public())
	case ae.NotHold:
		api.Error(w, http.StatusConflict, ae.Public()+": lift it with POST /api/v1/revocations/{id}/lift")
	case errors.Is(err, ErrConflict):
		api.Error(w, http.StatusConflict, ae.Public())
	default:
		is.Log.Error().Err(err).Str("request_id", api.RequestID(r.Context())).Msg("API action failed")
		api.Error(w, http.StatusServiceUnavailable, ae.Public())
	}
}
