package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/tripline/tripline/internal/actions"
	"github.com/tripline/tripline/internal/textfmt"
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

// issuer returns the analysts' issuer of commands, and the issuer name
// (analyst/<name>).
func (f *analystFlags) issuer() (*enforce.Signer, string, error) {
	if err := actions.ValidReason(f.reason); err != nil {
		return nil, "", cliError(err)
	}
	name := f.as
	if name == "" {
		name = os.Getenv("USER")
	}
	if name == "" {
		return nil, "", usageError(errors.New("no analyst name: pass --as NAME ($USER is not set)"))
	}
	issuer, err := actions.IssuerName(name)
	if err != nil {
		return nil, "", cliError(err)
	}
	key, err := enforce.LoadPrivateKey(f.key)
	if err != nil {
		return nil, "", err
	}
	return enforce.NewSigner(key), issuer, nil
}

// cliFlags names the flag of a request field that is not --<field> ("":
// an argument, whose message says which).
var cliFlags = map[string]string{"analyst": "--as", "id": ""}

// cliError turns an actions error into the CLI's: a bad field is a usage
// error naming the flag; approving a non-hold points at tripline lift; a
// missing command at tripline watch.
func cliError(err error) error {
	var ae *actions.Error
	if !errors.As(err, &ae) {
		return err
	}
	switch {
	case errors.Is(err, actions.ErrInvalid):
		flag, ok := cliFlags[ae.Field]
		if !ok {
			flag = "--" + ae.Field
		}
		if flag == "" {
			return usageError(errors.New(ae.Msg))
		}
		return usageError(fmt.Errorf("%s: %s", flag, ae.Msg))
	case ae.NotHold:
		return fmt.Errorf("%w: use tripline lift", err)
	case errors.Is(err, actions.ErrNotFound):
		return fmt.Errorf("%w (see tripline watch revocations)", err)
	}
	return err
}

// issuerOn connects the analyst's issuer to the bucket.
func (a *app) issuerOn(c *opsConn, kv jetstream.KeyValue, signer *enforce.Signer) *actions.Issuer {
	return &actions.Issuer{Audit: c.js, Bucket: kv, Signer: signer, Log: a.log}
}

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
	fl.StringVar(&f.scope, "scope", "", "what to revoke: "+strings.Join(actions.Scopes, ", "))
	fl.StringVar(&f.value, "value", "", "the session, instance, agent, task, principal or credential id (the agent for --scope tool)")
	fl.StringVar(&f.tool, "tool", "", "the tool, with --scope tool")
	fl.DurationVar(&f.dur, "for", time.Hour, "how long the revocation lasts")
	for _, name := range []string{"tenant", "scope", "value"} {
		_ = c.MarkFlagRequired(name)
	}
	return c
}

func (a *app) opsRevoke(cmd *cobra.Command, f revokeFlags) error {
	req := actions.Revoke{Tenant: f.tenant, Scope: f.scope, Value: f.value, Tool: f.tool, Reason: f.reason, For: f.dur}
	if f.dur == 0 {
		return usageError(errors.New("--for 0s: must be positive"))
	}
	if err := req.Validate(); err != nil {
		return cliError(err)
	}
	signer, issuer, err := f.issuer()
	if err != nil {
		return err
	}
	c, kv, err := a.opsConnectBucket(cmd, f.nats)
	if err != nil {
		return err
	}
	defer c.Close()
	rv, err := a.issuerOn(c, kv, signer).Revoke(cmd.Context(), issuer, req)
	if err != nil {
		return cliError(err)
	}
	fmt.Fprintln(a.stdout, rv.ID)
	fmt.Fprintf(a.stderr, "revoked %s in tenant %s until %s\n", opsScopeOf(rv), rv.Tenant, textfmt.Time(rv.ExpiresAt))
	return nil
}

// liftKind names a lift-like command: lift, approve or deny.
type liftKind struct {
	name string
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
	return newLiftLikeCmd(a, liftKind{name: "approve"}, &cobra.Command{
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
	return newLiftLikeCmd(a, liftKind{name: "deny"}, &cobra.Command{
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
	if err := actions.ValidID(id); err != nil {
		return cliError(err)
	}
	signer, issuer, err := f.issuer()
	if err != nil {
		return err
	}
	c, kv, err := a.opsConnectBucket(cmd, f.nats)
	if err != nil {
		return err
	}
	defer c.Close()
	is := a.issuerOn(c, kv, signer)
	var res *actions.Result
	switch k.name {
	case "approve":
		res, err = is.Approve(cmd.Context(), issuer, id, f.reason)
	case "deny":
		res, err = is.Deny(cmd.Context(), issuer, id, f.reason, dur)
	default:
		res, err = is.Lift(cmd.Context(), issuer, id, f.reason)
	}
	if err != nil {
		return cliError(err)
	}
	cur, lift := res.Target, res.Lift
	switch k.name {
	case "deny":
		fmt.Fprintln(a.stdout, res.Revocation.ID)
		fmt.Fprintf(a.stderr, "denied hold %s: revoked %s in tenant %s until %s (%s), hold lifted (%s)\n",
			cur.ID, opsScopeOf(cur), cur.Tenant, textfmt.Time(res.Revocation.ExpiresAt), res.Revocation.ID, lift.ID)
	case "approve":
		fmt.Fprintln(a.stdout, lift.ID)
		fmt.Fprintf(a.stderr, "approved hold %s on %s in tenant %s (lift %s)\n", cur.ID, opsScopeOf(cur), cur.Tenant, lift.ID)
	default:
		fmt.Fprintln(a.stdout, lift.ID)
		fmt.Fprintf(a.stderr, "lifted %s %s on %s in tenant %s (lift %s)\n", cur.Kind, cur.ID, opsScopeOf(cur), cur.Tenant, lift.ID)
	}
	return nil
}
