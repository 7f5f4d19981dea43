// Package enforce is what a proxy or broker imports to take part in
// Tripline: it publishes tool-call events (Producer) and enforces the
// revocations and holds the engine issues (Enforcer), verifying each
// command's Ed25519 signature.
package enforce

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// Command kinds.
const (
	KindRevoke = "revoke" // refuse the scope's calls until expiry or lift
	KindHold   = "hold"   // hold the scope's state-changing calls for approval
	KindLift   = "lift"   // end an earlier revoke or hold (Lifts names it)
)

// Scopes a command applies to.
const (
	ScopeSession    = "session"
	ScopeInstance   = "instance"
	ScopeAgent      = "agent"
	ScopeTask       = "task"
	ScopePrincipal  = "principal" // the principal's delegation: every agent acting for them
	ScopeCredential = "credential"
	ScopeTool       = "tool" // one tool for one agent identity
)

// Command is a signed revocation, hold or lift. The engine issues revoke
// and hold commands from enforce-mode decisions; analysts issue them by
// hand (tripline revoke) and lift them (tripline lift). The ID of an
// engine-issued command derives from its decision, so re-issuing after a
// restart yields the same command.
type Command struct {
	ID     string `json:"id"`
	Kind   string `json:"kind"`
	Tenant string `json:"tenant"`
	Scope  string `json:"scope"`
	// Value identifies the subject within the scope: the session id, the
	// credential id, … For ScopeTool it is the agent identity and Tool names
	// the tool.
	Value string `json:"value"`
	Tool  string `json:"tool,omitempty"`
	Agent string `json:"agent,omitempty"` // the agent the decision was about (informational)

	Reason      string   `json:"reason"`
	Rule        string   `json:"rule,omitempty"`
	RuleVersion string   `json:"rule_version,omitempty"`
	Decision    string   `json:"decision,omitempty"`
	Evidence    []string `json:"evidence,omitempty"`
	Tags        []string `json:"tags,omitempty"`
	// Lifts is the id of the command a lift ends.
	Lifts string `json:"lifts,omitempty"`

	IssuedAt  time.Time `json:"issued_at"`
	ExpiresAt time.Time `json:"expires_at"`
	// HoldUntil, on a hold, is when an unanswered hold times out into a
	// deny (the rule's on_timeout: deny): from then until ExpiresAt the
	// scope's calls are refused. Zero: the hold simply ends at ExpiresAt.
	HoldUntil time.Time `json:"hold_until,omitzero"`
	// Issuer is "engine/<worker id>" or "analyst/<name>".
	Issuer string `json:"issuer"`
	KeyID  string `json:"key_id"`
	Sig    string `json:"sig,omitempty"` // base64 Ed25519 over SigningBytes
}

// SigningBytes is the canonical form that is signed: the JSON encoding of
// the command with Sig empty (encoding/json writes struct fields in
// declaration order, so the form is stable).
func (c *Command) SigningBytes() []byte {
	cp := *c
	cp.Sig = ""
	b, _ := json.Marshal(&cp)
	return b
}

// Signer signs commands with an Ed25519 key.
type Signer struct {
	KeyID string
	key   ed25519.PrivateKey
}

// NewSigner wraps a private key. The key id is derived from the public key.
func NewSigner(key ed25519.PrivateKey) *Signer {
	return &Signer{KeyID: KeyID(key.Public().(ed25519.PublicKey)), key: key}
}

// Sign sets KeyID and Sig.
func (s *Signer) Sign(c *Command) {
	c.KeyID = s.KeyID
	c.Sig = base64.StdEncoding.EncodeToString(ed25519.Sign(s.key, c.SigningBytes()))
}

// Public returns the signer's public key.
func (s *Signer) Public() ed25519.PublicKey { return s.key.Public().(ed25519.PublicKey) }

// KeyID is the first 16 hex characters of sha256(public key).
func KeyID(pub ed25519.PublicKey) string {
	h := sha256.Sum256(pub)
	return hex.EncodeToString(h[:8])
}

// Keyring holds the public keys enforcers trust, by key id.
type Keyring map[string]ed25519.PublicKey

// Add trusts a public key.
func (k Keyring) Add(pub ed25519.PublicKey) { k[KeyID(pub)] = pub }

// Verification errors; each is counted separately by the Enforcer.
var (
	ErrUnsigned   = errors.New("command is not signed")
	ErrUnknownKey = errors.New("command signed with an unknown key")
	ErrForged     = errors.New("command signature does not verify")
	ErrExpired    = errors.New("command has expired")
	ErrMalformed  = errors.New("command is malformed")
)

// Verify checks a command's signature and shape. It does not check expiry
// (see Command.Expired) so that lifts of expired commands still verify.
func (k Keyring) Verify(c *Command) error {
	if c.Sig == "" || c.KeyID == "" {
		return ErrUnsigned
	}
	pub, ok := k[c.KeyID]
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownKey, c.KeyID)
	}
	sig, err := base64.StdEncoding.DecodeString(c.Sig)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return ErrForged
	}
	if !ed25519.Verify(pub, c.SigningBytes(), sig) {
		return ErrForged
	}
	if err := c.validate(); err != nil {
		return err
	}
	return nil
}

func (c *Command) validate() error {
	switch c.Kind {
	case KindRevoke, KindHold:
		switch c.Scope {
		case ScopeSession, ScopeInstance, ScopeAgent, ScopeTask, ScopePrincipal, ScopeCredential:
		case ScopeTool:
			if c.Tool == "" {
				return fmt.Errorf("%w: tool scope without a tool", ErrMalformed)
			}
		default:
			return fmt.Errorf("%w: unknown scope %q", ErrMalformed, c.Scope)
		}
		if c.Tenant == "" || c.Value == "" {
			return fmt.Errorf("%w: tenant and value are required", ErrMalformed)
		}
	case KindLift:
		if c.Lifts == "" {
			return fmt.Errorf("%w: lift without the id it lifts", ErrMalformed)
		}
	default:
		return fmt.Errorf("%w: unknown kind %q", ErrMalformed, c.Kind)
	}
	if !c.HoldUntil.IsZero() && (c.Kind != KindHold || !c.HoldUntil.Before(c.ExpiresAt)) {
		return fmt.Errorf("%w: hold_until belongs to a hold and comes before expires_at", ErrMalformed)
	}
	if c.ID == "" || c.IssuedAt.IsZero() || c.ExpiresAt.IsZero() {
		return fmt.Errorf("%w: id, issued_at and expires_at are required", ErrMalformed)
	}
	return nil
}

// Expired reports whether the command no longer applies at now.
func (c *Command) Expired(now time.Time) bool { return !now.Before(c.ExpiresAt) }

// CommandID derives a command id from the decision that caused it, so the
// same decision always gives the same command.
func CommandID(decisionID, scope string) string {
	h := sha256.Sum256([]byte(decisionID + "\x00" + scope))
	return "rv-" + hex.EncodeToString(h[:15])
}

// GenerateKey makes a new Ed25519 key pair.
func GenerateKey() (ed25519.PublicKey, ed25519.PrivateKey, error) {
	return ed25519.GenerateKey(rand.Reader)
}

// Key files hold one base64 key on a line: "ed25519-private <base64 seed>"
// or "ed25519-public <base64 key>".

// LoadPrivateKey reads a private key file.
func LoadPrivateKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	kind, val, ok := strings.Cut(strings.TrimSpace(string(b)), " ")
	if !ok || kind != "ed25519-private" {
		return nil, fmt.Errorf("signing key %s: want a line \"ed25519-private <base64 seed>\"", path)
	}
	seed, err := base64.StdEncoding.DecodeString(val)
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("signing key %s: bad seed", path)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// LoadPublicKey reads a public key file (or a private key file, whose
// public half is used).
func LoadPublicKey(path string) (ed25519.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	kind, val, ok := strings.Cut(strings.TrimSpace(string(b)), " ")
	switch {
	case ok && kind == "ed25519-public":
		k, err := base64.StdEncoding.DecodeString(val)
		if err != nil || len(k) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("public key %s: bad key", path)
		}
		return ed25519.PublicKey(k), nil
	case ok && kind == "ed25519-private":
		priv, err := LoadPrivateKey(path)
		if err != nil {
			return nil, err
		}
		return priv.Public().(ed25519.PublicKey), nil
	}
	return nil, fmt.Errorf("public key %s: want a line \"ed25519-public <base64 key>\"", path)
}

// WriteKeyPair writes priv to path (mode 0600) and its public half to
// path+".pub".
func WriteKeyPair(path string, priv ed25519.PrivateKey) error {
	if err := os.WriteFile(path, []byte("ed25519-private "+base64.StdEncoding.EncodeToString(priv.Seed())+"\n"), 0o600); err != nil {
		return err
	}
	pub := priv.Public().(ed25519.PublicKey)
	return os.WriteFile(path+".pub", []byte("ed25519-public "+base64.StdEncoding.EncodeToString(pub)+"\n"), 0o644)
}
