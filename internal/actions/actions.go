// Package actions issues the commands an analyst gives by hand: revoke a
// scope, lift a revocation or hold, approve or deny a hold. Each command is
// built, signed with the analyst key, appended to the audit log (the
// TL_REVOCATIONS stream) and then written to the tl_revocations KV bucket
// that enforcers watch, with revision checks so that a concurrent change is
// never overwritten. The CLI (tripline revoke|lift|approve|deny) and the
// HTTP API (Routes) both go through an Issuer.
package actions

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/tripline/tripline/internal/textfmt"
	"github.com/tripline/tripline/pipeline"
	"github.com/tripline/tripline/pipeline/enforce"
)

// Bucket is the part of the revocations KV bucket an Issuer uses
// (jetstream.KeyValue is one).
type Bucket interface {
	Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error)
	Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error)
	Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error)
}

// Issuer signs analyst commands and records them: audit log first, then
// the bucket. It is safe for concurrent use.
type Issuer struct {
	// Audit publishes to the TL_REVOCATIONS stream (a jetstream.JetStream).
	Audit jetstream.Publisher
	// Bucket is the tl_revocations KV bucket.
	Bucket Bucket
	// Signer is the analysts' Ed25519 key: enforcers must trust its public half.
	Signer *enforce.Signer
	Log    zerolog.Logger
	// Now is the clock (default time.Now); commands carry it to the millisecond.
	Now func() time.Time
}

// Open returns an Issuer on the revocations bucket of js.
func Open(ctx context.Context, js jetstream.JetStream, signer *enforce.Signer, log zerolog.Logger) (*Issuer, error) {
	if signer == nil {
		return nil, errors.New("actions: no analyst signing key")
	}
	kv, err := js.KeyValue(ctx, pipeline.RevocationsBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("KV bucket %s does not exist: run 'tripline nats init' first", pipeline.RevocationsBucket)
	}
	if err != nil {
		return nil, fmt.Errorf("KV bucket %s: %w", pipeline.RevocationsBucket, err)
	}
	return &Issuer{Audit: js, Bucket: kv, Signer: signer, Log: log}, nil
}

func (is *Issuer) now() time.Time {
	now := time.Now
	if is.Now != nil {
		now = is.Now
	}
	return now().UTC().Truncate(time.Millisecond)
}

// Defaults and bounds of what an analyst may ask for.
const (
	// DefaultFor is how long a revocation lasts when the request does not say.
	DefaultFor = time.Hour
	// MaxFor is the longest revocation an analyst may issue.
	MaxFor = 366 * 24 * time.Hour
	// MaxText is the longest value, tool, reason or analyst name, in bytes.
	MaxText = pipeline.DefaultMaxStringLen
	// MaxID is the longest command id.
	MaxID = 128
)

// Scopes an analyst may revoke.
var Scopes = []string{enforce.ScopeSession, enforce.ScopeInstance, enforce.ScopeAgent, enforce.ScopeTask,
	enforce.ScopePrincipal, enforce.ScopeCredential, enforce.ScopeTool}

// IssuerName returns the issuer of the commands of analyst name,
// "analyst/<name>", or an ErrInvalid error when name cannot be one.
func IssuerName(name string) (string, error) {
	switch {
	case name == "":
		return "", invalid("analyst", "no analyst name")
	case len(name) > MaxText:
		return "", invalid("analyst", fmt.Sprintf("a name is at most %d bytes", MaxText))
	case strings.ContainsFunc(name, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '/' }):
		return "", invalid("analyst", fmt.Sprintf("%q: a name has no spaces, control characters or '/'", name))
	}
	return "analyst/" + name, nil
}

// Revoke asks to revoke a scope.
type Revoke struct {
	Tenant string
	Scope  string // one of Scopes
	// Value is the session, instance, agent, task, principal or credential
	// id; for ScopeTool, the agent identity.
	Value string
	Tool  string // ScopeTool only: the tool
	// Reason is required: it goes into the command and the audit log.
	Reason string
	// For is how long the revocation lasts: 0 means DefaultFor.
	For time.Duration
}

// Validate reports the first problem of r as an ErrInvalid *Error naming
// the field: tenant, scope, value, tool, reason or for.
func (r Revoke) Validate() error {
	switch {
	case !ValidTenant(r.Tenant):
		return invalid("tenant", fmt.Sprintf("%q: a tenant holds only ASCII letters, digits, '-' and '_'", r.Tenant))
	case !slices.Contains(Scopes, r.Scope):
		return invalid("scope", fmt.Sprintf("%q: use one of %s", r.Scope, strings.Join(Scopes, ", ")))
	case r.Scope == enforce.ScopeTool && r.Tool == "":
		return invalid("tool", "scope tool needs the tool (and the agent as value)")
	case r.Scope != enforce.ScopeTool && r.Tool != "":
		return invalid("tool", "goes with scope tool only")
	case r.For < 0:
		return invalid("for", fmt.Sprintf("%s: must be positive", r.For))
	case r.For > MaxFor:
		return invalid("for", fmt.Sprintf("%s: at most %s", r.For, MaxFor))
	}
	if err := text("value", r.Value, true); err != nil {
		return err
	}
	if err := text("tool", r.Tool, false); err != nil {
		return err
	}
	return ValidReason(r.Reason)
}

// ValidReason checks a reason: required, at most MaxText bytes, no control
// characters but tabs and newlines.
func ValidReason(reason string) error {
	if strings.TrimSpace(reason) == "" {
		return invalid("reason", "required: say why, for the audit log")
	}
	if len(reason) > MaxText {
		return invalid("reason", fmt.Sprintf("at most %d bytes", MaxText))
	}
	if strings.ContainsFunc(reason, func(r rune) bool { return (r < ' ' && r != '\t' && r != '\n') || r == 0x7f }) {
		return invalid("reason", "has control characters")
	}
	return nil
}

func text(field, s string, required bool) error {
	switch {
	case strings.TrimSpace(s) == "":
		if required || s != "" {
			return invalid(field, "is empty")
		}
	case len(s) > MaxText:
		return invalid(field, fmt.Sprintf("at most %d bytes", MaxText))
	case strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f }):
		return invalid(field, "has control characters")
	}
	return nil
}

// ValidTenant reports whether s can be a tenant: ASCII letters, digits,
// '-' and '_' (it is a NATS subject token).
func ValidTenant(s string) bool {
	if s == "" || len(s) > pipeline.DefaultMaxStringLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// ValidID checks a command id: a KV key of ASCII letters, digits, '-', '_'
// and '=', at most MaxID bytes.
func ValidID(id string) error {
	if id == "" || len(id) > MaxID {
		return invalid("id", fmt.Sprintf("%q is not a command id", id))
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '=') {
			return invalid("id", fmt.Sprintf("%q is not a command id", id))
		}
	}
	return nil
}

// NewCommandID returns a fresh id for a hand-made revocation, shaped like
// the engine's: "rv-" and 30 hex digits.
func NewCommandID() string {
	var b [15]byte
	_, _ = rand.Read(b[:])
	return "rv-" + hex.EncodeToString(b[:])
}

// Revoke issues a signed revocation of r by issuer ("analyst/<name>", see
// IssuerName) and returns it.
func (is *Issuer) Revoke(ctx context.Context, issuer string, r Revoke) (*enforce.Command, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	if r.For == 0 {
		r.For = DefaultFor
	}
	now := is.now()
	rv := &enforce.Command{
		ID: NewCommandID(), Kind: enforce.KindRevoke, Tenant: r.Tenant, Scope: r.Scope, Value: r.Value, Tool: r.Tool,
		Reason: r.Reason, IssuedAt: now, ExpiresAt: now.Add(r.For), Issuer: issuer,
	}
	is.Signer.Sign(rv)
	if err := is.issue(ctx, rv, 0, now); err != nil {
		return nil, err
	}
	return rv, nil
}

// Result is what a lift, approve or deny did.
type Result struct {
	// Target is the command acted on, as it was in the bucket.
	Target *enforce.Command
	// Revocation is the revocation a deny issued of the hold's scope.
	Revocation *enforce.Command
	// Lift is the lift of Target.
	Lift *enforce.Command
}

// Lift ends the revocation or hold id before it expires: it writes a signed
// lift in its place. Retrying a lift that failed half way is safe: its id
// derives from id, so the audit log deduplicates it.
func (is *Issuer) Lift(ctx context.Context, issuer, id, reason string) (*Result, error) {
	return is.liftLike(ctx, issuer, id, reason, liftKind{name: "lift"}, 0)
}

// Approve answers the hold id with yes: a signed lift tagged "approved".
func (is *Issuer) Approve(ctx context.Context, issuer, id, reason string) (*Result, error) {
	return is.liftLike(ctx, issuer, id, reason, liftKind{name: "approve", hold: true, tag: "approved"}, 0)
}

// Deny answers the hold id with no: a signed revocation of the hold's
// scope lasting dur (0: as long as the hold was issued for; its id derives
// from the hold's), then a lift of the hold, both tagged "denied".
func (is *Issuer) Deny(ctx context.Context, issuer, id, reason string, dur time.Duration) (*Result, error) {
	return is.liftLike(ctx, issuer, id, reason, liftKind{name: "deny", hold: true, tag: "denied"}, dur)
}

// liftKind is what a lift-like command does to the command it names.
type liftKind struct {
	name string // lift, approve, deny
	hold bool   // it acts on holds only
	tag  string // tag of the commands it issues
}

func (is *Issuer) liftLike(ctx context.Context, issuer, id, reason string, k liftKind, dur time.Duration) (*Result, error) {
	if err := ValidID(id); err != nil {
		return nil, err
	}
	if err := ValidReason(reason); err != nil {
		return nil, err
	}
	if dur < 0 || dur > MaxFor {
		return nil, invalid("for", fmt.Sprintf("%s: must be positive and at most %s", dur, MaxFor))
	}
	now := is.now()
	cur, rev, err := is.current(ctx, id, k.hold, now)
	if err != nil {
		return nil, err
	}
	var tags []string
	if k.tag != "" {
		tags = []string{k.tag}
	}
	res := &Result{Target: cur}
	if k.name == "deny" {
		if dur == 0 {
			dur = max(cur.ExpiresAt.Sub(cur.IssuedAt), time.Minute)
		}
		rv := &enforce.Command{
			ID: enforce.CommandID(cur.ID, "deny"), Kind: enforce.KindRevoke, Tenant: cur.Tenant,
			Scope: cur.Scope, Value: cur.Value, Tool: cur.Tool, Agent: cur.Agent,
			Reason: reason, Rule: cur.Rule, RuleVersion: cur.RuleVersion, Decision: cur.Decision,
			Evidence: cur.Evidence, Tags: tags,
			IssuedAt: now, ExpiresAt: now.Add(dur), Issuer: issuer,
		}
		is.Signer.Sign(rv)
		switch err := is.issue(ctx, rv, 0, now); {
		case errors.Is(err, errExists):
			// an earlier deny got this far: its revocation stands
			is.Log.Info().Str("command", rv.ID).Msg("the revocation of an earlier deny of this hold is in place")
		case err != nil:
			return nil, err
		}
		res.Revocation = rv
	}
	res.Lift = liftOf(is.Signer, cur, issuer, reason, tags, now)
	if err := is.issue(ctx, res.Lift, rev, now); err != nil {
		return nil, err
	}
	return res, nil
}

// current reads the command stored at id and checks that it can be lifted
// (a hold when hold is set). It returns it with its revision.
func (is *Issuer) current(ctx context.Context, id string, hold bool, now time.Time) (*enforce.Command, uint64, error) {
	ent, err := is.Bucket.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, 0, &Error{Kind: ErrNotFound, Msg: fmt.Sprintf("no command %s in %s: never issued, expired, or a wrong id", id, pipeline.RevocationsBucket)}
	}
	if err != nil {
		return nil, 0, unavailable(fmt.Sprintf("read %s from %s", id, pipeline.RevocationsBucket), err)
	}
	c := new(enforce.Command)
	if err := json.Unmarshal(ent.Value(), c); err != nil {
		return nil, 0, &Error{Kind: ErrConflict, Msg: fmt.Sprintf("%s in %s is not a command", id, pipeline.RevocationsBucket), Err: err}
	}
	switch {
	case c.Kind == enforce.KindLift:
		return nil, 0, conflict(fmt.Sprintf("%s was already lifted by %s at %s: %s", id, textfmt.OrDash(c.Issuer), textfmt.Time(c.IssuedAt), c.Reason))
	case c.ID != id:
		return nil, 0, conflict(fmt.Sprintf("%s in %s holds command %s: not a command enforcers apply", id, pipeline.RevocationsBucket, c.ID))
	case c.Expired(now):
		return nil, 0, conflict(fmt.Sprintf("%s expired at %s: there is nothing to lift", id, textfmt.Time(c.ExpiresAt)))
	case hold && c.Kind != enforce.KindHold:
		return nil, 0, &Error{Kind: ErrConflict, Msg: fmt.Sprintf("%s is a %s, not a hold", id, c.Kind), NotHold: true}
	}
	return c, ent.Revision(), nil
}

// liftOf makes the signed lift of c. Its id derives from c's, so there is
// one lift per command, and a retried lift is the same command.
func liftOf(signer *enforce.Signer, c *enforce.Command, issuer, reason string, tags []string, now time.Time) *enforce.Command {
	expires := c.ExpiresAt
	if m := now.Add(time.Minute); m.After(expires) {
		expires = m
	}
	l := &enforce.Command{
		ID: enforce.CommandID(c.ID, enforce.KindLift), Kind: enforce.KindLift, Tenant: c.Tenant, Lifts: c.ID,
		Reason: reason, Tags: tags, IssuedAt: now, ExpiresAt: expires, Issuer: issuer,
	}
	signer.Sign(l)
	return l
}

// errExists reports a Create of a command id that is already in the bucket.
var errExists = errors.New("command already in the bucket")

// issue appends c to the audit log, then writes it to the bucket: a revoke
// or hold with Create (and a TTL until it expires), a lift with Update at
// the key of the command it lifts, on revision rev (the one that was read,
// so that a concurrent change is not overwritten).
func (is *Issuer) issue(ctx context.Context, c *enforce.Command, rev uint64, now time.Time) error {
	data, err := json.Marshal(c)
	if err != nil {
		return err
	}
	if err := PublishAudit(ctx, is.Audit, c, data); err != nil {
		return err
	}
	if c.Kind == enforce.KindLift {
		if _, err := is.Bucket.Update(ctx, c.Lifts, data, rev); err != nil {
			if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
				return conflict(fmt.Sprintf("command %s changed while it was being lifted (lifted, re-issued or expired): look at it again", c.Lifts))
			}
			return unavailable(fmt.Sprintf("write lift %s to %s (it is in the audit log; the same lift again is safe)", c.ID, pipeline.RevocationsBucket), err)
		}
	} else {
		ttl := max(c.ExpiresAt.Sub(now), time.Second)
		if _, err := is.Bucket.Create(ctx, c.ID, data, jetstream.KeyTTL(ttl)); err != nil {
			if errors.Is(err, jetstream.ErrKeyExists) {
				return &Error{Kind: ErrConflict, Msg: fmt.Sprintf("command %s is already in %s", c.ID, pipeline.RevocationsBucket), Err: errExists}
			}
			return unavailable(fmt.Sprintf("write %s %s to %s (it is in the audit log, not in force)", c.Kind, c.ID, pipeline.RevocationsBucket), err)
		}
	}
	is.Log.Info().Str("command", c.ID).Str("kind", c.Kind).Str("tenant", c.Tenant).Str("scope", c.Scope).Str("value", c.Value).
		Str("lifts", c.Lifts).Str("issuer", c.Issuer).Str("reason", c.Reason).Msg("command issued")
	return nil
}

// PublishAudit appends c (encoded as data) to the audit log, retrying
// briefly. The stream's duplicate window drops a command id published
// before.
func PublishAudit(ctx context.Context, pub jetstream.Publisher, c *enforce.Command, data []byte) error {
	tenant := c.Tenant
	if !ValidTenant(tenant) {
		tenant = "_"
	}
	m := &nats.Msg{Subject: pipeline.RevocationsSubjectPrefix + tenant, Data: data, Header: nats.Header{}}
	m.Header.Set(jetstream.MsgIDHeader, c.ID)
	var err error
	for attempt := range 4 {
		if attempt > 0 {
			t := time.NewTimer(time.Duration(attempt) * 250 * time.Millisecond)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			}
		}
		if _, err = pub.PublishMsg(ctx, m); err == nil {
			return nil
		}
		if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
			return &Error{Kind: ErrUnavailable, Msg: fmt.Sprintf("audit log: stream %s does not answer: run 'tripline nats init' first", pipeline.RevocationsStream)}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return unavailable("audit log "+pipeline.RevocationsStream, err)
}
