package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/tripline/tripline/pipeline"
	"github.com/tripline/tripline/pipeline/enforce"
)

// analystFlags are the flags of every audited analyst command.
type analystFlags struct {
	nats   opsNATSFlags
	key    string
	as     string
	reason string
}

func (f *analystFlags) add(c *cobra.Command) {
	f.nats.add(c)
	c.Flags().StringVar(&f.key, "key", "", "the analyst's Ed25519 private key file (tripline keys generate)")
	c.Flags().StringVar(&f.as, "as", "", "the analyst's name in the audit log (default $USER)")
	c.Flags().StringVar(&f.reason, "reason", "", "why: recorded in the command and the audit log (required)")
	_ = c.MarkFlagRequired("key")
	_ = c.MarkFlagRequired("reason")
}

// analystHelp is the common part of the analyst commands' help.
const analystHelp = `
Every command is signed with the analyst's key (--key; enforcers must trust
its .pub), names its issuer as analyst/<name> (--as, else $USER) and its
reason (--reason, required), and is appended to the audit log, the
` + pipeline.RevocationsStream + ` stream (subject ` + pipeline.RevocationsSubjectPrefix + `<tenant>, Nats-Msg-Id = command
id), before it is written to the ` + pipeline.RevocationsBucket + ` KV bucket that enforcers
watch. If the bucket write fails, the command is in the audit log but not
in force (no enforcer acknowledges it). Lift, approve and deny can simply
be run again: their command ids derive from what they act on, so a retry is
deduplicated in the audit log. The command id is printed on stdout.
`

// issuer returns the signer and issuer of an analyst command.
func (f *analystFlags) issuer() (*enforce.Signer, string, error) {
	if strings.TrimSpace(f.reason) == "" {
		return nil, "", usageError(errors.New("--reason is required: say why, for the audit log"))
	}
	name := f.as
	if name == "" {
		name = os.Getenv("USER")
	}
	if name == "" {
		return nil, "", usageError(errors.New("no analyst name: pass --as NAME ($USER is not set)"))
	}
	if strings.ContainsAny(name, " \t\r\n/") {
		return nil, "", usageError(fmt.Errorf("--as %q: a name has no spaces or '/'", name))
	}
	key, err := enforce.LoadPrivateKey(f.key)
	if err != nil {
		return nil, "", err
	}
	return enforce.NewSigner(key), "analyst/" + name, nil
}

// opsCommandNow is the issue time of analyst commands, to the millisecond.
func opsCommandNow() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }

var opsScopes = []string{enforce.ScopeSession, enforce.ScopeInstance, enforce.ScopeAgent, enforce.ScopeTask,
	enforce.ScopePrincipal, enforce.ScopeCredential, enforce.ScopeTool}

type revokeFlags struct {
	analystFlags
	tenant, scope, value, tool string
	dur                        time.Duration
}

func newRevokeCmd(a *app) *cobra.Command {
	var f revokeFlags
	c := &cobra.Command{
		Use:   "revoke --tenant T --scope SCOPE --value V --reason TEXT --key FILE",
		Short: "Revoke access by hand (audited)",
		Long: `Revoke issues a signed revocation: enforcers refuse every call in its
scope until it expires (--for) or is lifted (tripline lift).

Scopes: session, instance (one running copy of an agent), agent (an agent
identity), task, principal (every agent acting for that human), credential
and tool (one tool for one agent identity: --value is the agent,
--tool the tool).
` + analystHelp,
		Example: `  tripline revoke --tenant acme --scope session --value s-1842 \
    --reason "exfiltration confirmed, INC-311" --key ~/.tripline/alice.key
  tripline revoke --tenant acme --scope credential --value tok-7f3a --for 24h \
    --reason "token leaked in a public repo" --key alice.key --as alice
  tripline revoke --tenant acme --scope tool --value spiffe://acme.dev/agent/coder \
    --tool shell.exec --reason "no shell until the sandbox fix" --key alice.key`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return a.opsRevoke(cmd, f) },
	}
	f.add(c)
	fl := c.Flags()
	fl.StringVar(&f.tenant, "tenant", "", "tenant")
	fl.StringVar(&f.scope, "scope", "", "what to revoke: "+strings.Join(opsScopes, ", "))
	fl.StringVar(&f.value, "value", "", "the session, instance, agent, task, principal or credential id (the agent for --scope tool)")
	fl.StringVar(&f.tool, "tool", "", "the tool, with --scope tool")
	fl.DurationVar(&f.dur, "for", time.Hour, "how long the revocation lasts")
	for _, name := range []string{"tenant", "scope", "value"} {
		_ = c.MarkFlagRequired(name)
	}
	return c
}

func (a *app) opsRevoke(cmd *cobra.Command, f revokeFlags) error {
	switch {
	case !opsValidTenant(f.tenant):
		return usageError(fmt.Errorf("--tenant %q: a tenant holds only ASCII letters, digits, '-' and '_'", f.tenant))
	case !slices.Contains(opsScopes, f.scope):
		return usageError(fmt.Errorf("--scope %q: use one of %s", f.scope, strings.Join(opsScopes, ", ")))
	case strings.TrimSpace(f.value) == "":
		return usageError(errors.New("--value is empty"))
	case f.scope == enforce.ScopeTool && f.tool == "":
		return usageError(errors.New("--scope tool needs --tool NAME (and the agent as --value)"))
	case f.scope != enforce.ScopeTool && f.tool != "":
		return usageError(errors.New("--tool goes with --scope tool only"))
	case f.dur <= 0:
		return usageError(fmt.Errorf("--for %s: must be positive", f.dur))
	}
	signer, issuer, err := f.issuer()
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	c, kv, err := a.opsConnectBucket(cmd, f.nats)
	if err != nil {
		return err
	}
	defer c.Close()
	now := opsCommandNow()
	rv := &enforce.Command{
		ID: opsNewCommandID(), Kind: enforce.KindRevoke, Tenant: f.tenant, Scope: f.scope, Value: f.value, Tool: f.tool,
		Reason: f.reason, IssuedAt: now, ExpiresAt: now.Add(f.dur), Issuer: issuer,
	}
	signer.Sign(rv)
	if err := a.opsIssueCommand(ctx, c.js, kv, rv, 0); err != nil {
		return err
	}
	fmt.Fprintln(a.stdout, rv.ID)
	fmt.Fprintf(a.stderr, "revoked %s in tenant %s until %s\n", opsScopeOf(rv), rv.Tenant, opsFmtTime(rv.ExpiresAt))
	return nil
}

// opsNewCommandID returns a fresh id for a hand-made revocation, shaped like
// the engine's: "rv-" and 30 hex digits.
func opsNewCommandID() string {
	var b [15]byte
	_, _ = rand.Read(b[:])
	return "rv-" + hex.EncodeToString(b[:])
}

// opsIssueCommand appends c to the audit log, then writes it to the bucket:
// a revoke or hold with Create (and a TTL until it expires), a lift with
// Update at the key of the command it lifts, on revision rev (the one that
// was read, so that a concurrent change is not overwritten).
func (a *app) opsIssueCommand(ctx context.Context, js jetstream.JetStream, kv jetstream.KeyValue, c *enforce.Command, rev uint64) error {
	data, err := json.Marshal(c)
	if err != nil {
		return err
	}
	if err := publishAudit(ctx, js, c, data); err != nil {
		return err
	}
	if c.Kind == enforce.KindLift {
		if _, err := kv.Update(ctx, c.Lifts, data, rev); err != nil {
			if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
				return fmt.Errorf("command %s changed while it was being lifted (lifted, re-issued or expired): look at it again", c.Lifts)
			}
			return fmt.Errorf("write lift %s to %s (it is in the audit log; run the same command again): %w", c.ID, pipeline.RevocationsBucket, err)
		}
	} else {
		ttl := max(time.Until(c.ExpiresAt), time.Second)
		if _, err := kv.Create(ctx, c.ID, data, jetstream.KeyTTL(ttl)); err != nil {
			if errors.Is(err, jetstream.ErrKeyExists) {
				return errOpsExists
			}
			return fmt.Errorf("write %s %s to %s (it is in the audit log, not in force): %w", c.Kind, c.ID, pipeline.RevocationsBucket, err)
		}
	}
	a.log.Info().Str("command", c.ID).Str("kind", c.Kind).Str("tenant", c.Tenant).Str("scope", c.Scope).Str("value", c.Value).
		Str("lifts", c.Lifts).Str("issuer", c.Issuer).Str("reason", c.Reason).Msg("command issued")
	return nil
}

// errOpsExists reports a Create of a command id that is already in the bucket.
var errOpsExists = errors.New("command already in the bucket")

// publishAudit appends c to the audit log, retrying briefly. The stream's
// duplicate window drops a command id published before.
func publishAudit(ctx context.Context, js jetstream.JetStream, c *enforce.Command, data []byte) error {
	tenant := c.Tenant
	if !opsValidTenant(tenant) {
		tenant = "_"
	}
	m := &nats.Msg{Subject: pipeline.RevocationsSubjectPrefix + tenant, Data: data, Header: nats.Header{}}
	m.Header.Set(jetstream.MsgIDHeader, c.ID)
	var err error
	for attempt := range 4 {
		if attempt > 0 {
			select {
			case <-time.After(time.Duration(attempt) * 250 * time.Millisecond):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if _, err = js.PublishMsg(ctx, m); err == nil {
			return nil
		}
		if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
			return fmt.Errorf("audit log: stream %s does not answer: run 'tripline nats init' first", pipeline.RevocationsStream)
		}
	}
	return fmt.Errorf("audit log %s: %w", pipeline.RevocationsStream, err)
}

// currentCommand reads the command stored at id and checks that it can be lifted
// (a hold when hold is set).
func currentCommand(ctx context.Context, kv jetstream.KeyValue, id string, hold bool, now time.Time) (*enforce.Command, uint64, error) {
	ent, err := kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, 0, fmt.Errorf("no command %s in %s: never issued, expired, or a wrong id (see tripline watch revocations)", id, pipeline.RevocationsBucket)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read %s: %w", id, err)
	}
	c := new(enforce.Command)
	if err := json.Unmarshal(ent.Value(), c); err != nil {
		return nil, 0, fmt.Errorf("%s in %s is not a command: %w", id, pipeline.RevocationsBucket, err)
	}
	switch {
	case c.Kind == enforce.KindLift:
		return nil, 0, fmt.Errorf("%s was already lifted by %s at %s: %s", id, opsOrDash(c.Issuer), opsFmtTime(c.IssuedAt), c.Reason)
	case c.ID != id:
		return nil, 0, fmt.Errorf("%s in %s holds command %s: not a command enforcers apply", id, pipeline.RevocationsBucket, c.ID)
	case c.Expired(now):
		return nil, 0, fmt.Errorf("%s expired at %s: there is nothing to lift", id, opsFmtTime(c.ExpiresAt))
	case hold && c.Kind != enforce.KindHold:
		return nil, 0, fmt.Errorf("%s is a %s, not a hold: use tripline lift", id, c.Kind)
	}
	return c, ent.Revision(), nil
}

// opsLiftOf makes the signed lift of c. Its id derives from c's, so there is
// one lift per command, and a retried lift is the same command.
func opsLiftOf(signer *enforce.Signer, c *enforce.Command, issuer, reason string, tags []string, now time.Time) *enforce.Command {
	l := &enforce.Command{
		ID: enforce.CommandID(c.ID, enforce.KindLift), Kind: enforce.KindLift, Tenant: c.Tenant, Lifts: c.ID,
		Reason: reason, Tags: tags, IssuedAt: now, ExpiresAt: opsMaxTime(c.ExpiresAt, now.Add(time.Minute)), Issuer: issuer,
	}
	signer.Sign(l)
	return l
}

func opsMaxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// liftKind is what a lift-like command does to the command it names.
type liftKind struct {
	name string // lift, approve, deny
	hold bool   // it acts on holds only
	tag  string // tag of the commands it issues
}

func newLiftCmd(a *app) *cobra.Command {
	return newLiftLikeCmd(a, liftKind{name: "lift"}, &cobra.Command{
		Use:   "lift ID --reason TEXT --key FILE",
		Short: "End a revocation or hold early (audited)",
		Long: `Lift ends a revocation or hold before it expires. It reads the command
from the bucket (it must be there, in force, and not lifted already) and
writes a signed lift in its place; enforcers then drop the command, and
will not apply it again.

A lift never deletes the bucket entry: enforcers ignore unsigned deletes of
commands in force.
` + analystHelp,
		Example: `  tripline lift rv-3f2a9c0d4e5b6a7c8d9e0f1a2b3c4d --reason "false positive, see INC-312" --key alice.key`,
	})
}

func newApproveCmd(a *app) *cobra.Command {
	return newLiftLikeCmd(a, liftKind{name: "approve", hold: true, tag: "approved"}, &cobra.Command{
		Use:   "approve HOLD_ID --reason TEXT --key FILE",
		Short: "Approve held calls: lift a hold (audited)",
		Long: `Approve answers a hold (issued by a rule with action hold) with yes: it
lifts the hold with a signed lift tagged "approved", so the held scope's
calls go through again.
` + analystHelp,
		Example: `  tripline approve rv-9c1e2d3f4a5b6c7d8e9f0a1b2c3d4e --reason "deploy window, change CHG-88" --key alice.key`,
	})
}

func newDenyCmd(a *app) *cobra.Command {
	return newLiftLikeCmd(a, liftKind{name: "deny", hold: true, tag: "denied"}, &cobra.Command{
		Use:   "deny HOLD_ID --reason TEXT --key FILE",
		Short: "Deny held calls: turn a hold into a revocation (audited)",
		Long: `Deny answers a hold with no: it issues a signed revocation of the hold's
scope (tenant, scope, value and tool; rule, decision and evidence copied
for the record) lasting --for (default: as long as the hold was issued
for), then lifts the hold. Both are tagged "denied". The revocation's id
derives from the hold's, and is printed.
` + analystHelp,
		Example: `  tripline deny rv-9c1e2d3f4a5b6c7d8e9f0a1b2c3d4e --reason "not an approved change" --key alice.key
  tripline deny rv-9c1e2d3f4a5b6c7d8e9f0a1b2c3d4e --reason "compromised" --for 24h --key alice.key`,
	})
}

func newLiftLikeCmd(a *app, k liftKind, c *cobra.Command) *cobra.Command {
	var f analystFlags
	var dur time.Duration
	c.Args = args(cobra.ExactArgs(1))
	c.RunE = func(cmd *cobra.Command, argv []string) error { return a.opsLiftLike(cmd, k, f, argv[0], dur) }
	f.add(c)
	if k.name == "deny" {
		c.Flags().DurationVar(&dur, "for", 0, "how long the revocation lasts (default: the hold's own length)")
	}
	return c
}

func (a *app) opsLiftLike(cmd *cobra.Command, k liftKind, f analystFlags, id string, dur time.Duration) error {
	if dur < 0 {
		return usageError(fmt.Errorf("--for %s: must be positive", dur))
	}
	id = strings.TrimSpace(id)
	if id == "" || strings.ContainsAny(id, " *>") {
		return usageError(fmt.Errorf("%q is not a command id", id))
	}
	signer, issuer, err := f.issuer()
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	c, kv, err := a.opsConnectBucket(cmd, f.nats)
	if err != nil {
		return err
	}
	defer c.Close()
	now := opsCommandNow()
	cur, rev, err := currentCommand(ctx, kv, id, k.hold, now)
	if err != nil {
		return err
	}
	var tags []string
	if k.tag != "" {
		tags = []string{k.tag}
	}
	printed := ""
	if k.name == "deny" {
		if dur == 0 {
			dur = max(cur.ExpiresAt.Sub(cur.IssuedAt), time.Minute)
		}
		rv := &enforce.Command{
			ID: enforce.CommandID(cur.ID, "deny"), Kind: enforce.KindRevoke, Tenant: cur.Tenant,
			Scope: cur.Scope, Value: cur.Value, Tool: cur.Tool, Agent: cur.Agent,
			Reason: f.reason, Rule: cur.Rule, RuleVersion: cur.RuleVersion, Decision: cur.Decision,
			Evidence: cur.Evidence, Tags: tags,
			IssuedAt: now, ExpiresAt: now.Add(dur), Issuer: issuer,
		}
		signer.Sign(rv)
		switch err := a.opsIssueCommand(ctx, c.js, kv, rv, 0); {
		case errors.Is(err, errOpsExists):
			// an earlier deny got this far: its revocation stands
			a.log.Info().Str("command", rv.ID).Msg("the revocation of an earlier deny of this hold is in place")
		case err != nil:
			return err
		}
		printed = rv.ID
	}
	lift := opsLiftOf(signer, cur, issuer, f.reason, tags, now)
	if err := a.opsIssueCommand(ctx, c.js, kv, lift, rev); err != nil {
		return err
	}
	if printed == "" {
		printed = lift.ID
	}
	fmt.Fprintln(a.stdout, printed)
	switch k.name {
	case "deny":
		fmt.Fprintf(a.stderr, "denied hold %s: revoked %s in tenant %s until %s (%s), hold lifted (%s)\n",
			cur.ID, opsScopeOf(cur), cur.Tenant, opsFmtTime(now.Add(dur)), printed, lift.ID)
	case "approve":
		fmt.Fprintf(a.stderr, "approved hold %s on %s in tenant %s (lift %s)\n", cur.ID, opsScopeOf(cur), cur.Tenant, lift.ID)
	default:
		fmt.Fprintf(a.stderr, "lifted %s %s on %s in tenant %s (lift %s)\n", cur.Kind, cur.ID, opsScopeOf(cur), cur.Tenant, lift.ID)
	}
	return nil
}
