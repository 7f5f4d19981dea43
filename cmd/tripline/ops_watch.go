package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/tripline/tripline/detectors"
	"github.com/tripline/tripline/internal/actions"
	"github.com/tripline/tripline/internal/textfmt"
	"github.com/tripline/tripline/pipeline"
	"github.com/tripline/tripline/pipeline/enforce"
)

// opsMaxSkew is how far ahead of this clock a command may be issued and still
// verify, as an enforcer allows.
const opsMaxSkew = time.Minute

func newWatchCmd(a *app) *cobra.Command {
	c := &cobra.Command{
		Use:   "watch",
		Short: "Follow revocations or decisions as they happen",
		Long: `Watch prints revocation commands or rule decisions as they are issued,
until interrupted.`,
		Example: `  tripline watch revocations --key engine.key.pub --key alice.key.pub
  tripline watch decisions --all`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	c.AddCommand(newWatchRevocationsCmd(a), newWatchDecisionsCmd(a))
	return c
}

type watchRevocationsFlags struct {
	nats    opsNATSFlags
	keys    []string
	json    bool
	updates bool
}

func newWatchRevocationsCmd(a *app) *cobra.Command {
	var f watchRevocationsFlags
	c := &cobra.Command{
		Use:   "revocations --key FILE.pub...",
		Short: "Show the revocation state as an enforcer sees it",
		Long: `Watch revocations shows what an enforcer sees: the commands in the
` + pipeline.RevocationsBucket + ` KV bucket (the current state first, then every change), each
verified as an enforcer verifies it: signed by a trusted key, well formed,
stored under its own id (a lift under the id it lifts), not issued in the
future and not expired.

One line per command: when it was issued, its id, kind, tenant,
scope=value (lifts=ID for a lift), the rule that caused it, when it
expires, who issued it, and VERIFIED or REJECTED with the reason. A KV
delete or purge (an expiry, or an unsigned attempt at a lift, which
enforcers ignore) shows as REMOVED. --json prints one JSON object per
update instead: {key, revision, operation, status, reason, command}.

The trusted keys are the public keys given with --key (the engine's and
each analyst's .pub files; a private key file works too), plus the
engine's signing.key_file when --config names one this user can read.
` + opsNATSHelp,
		Example: `  tripline watch revocations --key engine.key.pub --key alice.key.pub
  tripline watch revocations --config /etc/tripline/tripline.yaml --json | jq .
  tripline watch revocations --key engine.key.pub --new`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return a.opsWatchRevocations(cmd, f) },
	}
	f.nats.add(c)
	c.Flags().StringArrayVar(&f.keys, "key", nil, "trusted public key file (repeatable)")
	c.Flags().BoolVar(&f.json, "json", false, "print one JSON object per update")
	c.Flags().BoolVar(&f.updates, "new", false, "skip the current state: show changes only")
	return c
}

// revocationView is one bucket update, verified.
type revocationView struct {
	Key       string           `json:"key"`
	Revision  uint64           `json:"revision"`
	Operation string           `json:"operation"` // put, delete, purge
	Status    string           `json:"status"`    // verified, rejected, removed
	Reason    string           `json:"reason,omitempty"`
	Command   *enforce.Command `json:"command,omitempty"`
}

// Statuses of a revocationView.
const (
	statusVerified = "verified"
	statusRejected = "rejected"
	statusRemoved  = "removed"
)

// verifyUpdate checks one bucket update as an enforcer would.
func verifyUpdate(kr enforce.Keyring, key string, rev uint64, op jetstream.KeyValueOp, data []byte, now time.Time) revocationView {
	v := revocationView{Key: key, Revision: rev, Operation: "put"}
	if op != jetstream.KeyValuePut {
		v.Operation = "delete"
		if op == jetstream.KeyValuePurge {
			v.Operation = "purge"
		}
		v.Status = statusRemoved
		v.Reason = "KV " + v.Operation + ": an expiry, or an unsigned removal enforcers ignore while the command is active"
		return v
	}
	c := new(enforce.Command)
	if err := json.Unmarshal(data, c); err != nil {
		v.Status, v.Reason = statusRejected, fmt.Sprintf("%v: %v", enforce.ErrMalformed, err)
		return v
	}
	v.Command = c
	want := c.ID
	if c.Kind == enforce.KindLift {
		want = c.Lifts
	}
	switch err := kr.Verify(c); {
	case err != nil:
		v.Status, v.Reason = statusRejected, err.Error()
	case key != want:
		v.Status, v.Reason = statusRejected, fmt.Sprintf("%s command %s stored under key %q", c.Kind, c.ID, key)
	case c.IssuedAt.After(now.Add(opsMaxSkew)):
		v.Status, v.Reason = statusRejected, "issued at "+c.IssuedAt.UTC().Format(time.RFC3339)+", in the future"
	case c.Expired(now):
		v.Status, v.Reason = statusRejected, fmt.Sprintf("%v at %s", enforce.ErrExpired, c.ExpiresAt.UTC().Format(time.RFC3339))
	default:
		v.Status = statusVerified
	}
	return v
}

// revocation line columns and their widths.
var (
	revColumns = []string{"ISSUED", "ID", "KIND", "TENANT", "SCOPE", "RULE", "EXPIRES", "ISSUER", "STATUS"}
	revWidths  = []int{20, 33, 6, 10, 36, 26, 20, 18, 0}
)

// opsLine prints one line of columns padded to widths (at least), so that
// lines printed one at a time line up.
func opsLine(w io.Writer, cols []string, widths []int) {
	var b strings.Builder
	for i, c := range cols {
		if i > 0 {
			b.WriteString("  ")
		}
		b.WriteString(c)
		if i < len(cols)-1 && i < len(widths) {
			b.WriteString(strings.Repeat(" ", max(widths[i]-len(c), 0)))
		}
	}
	fmt.Fprintln(w, b.String())
}

// opsScopeOf renders what a command applies to.
func opsScopeOf(c *enforce.Command) string {
	switch {
	case c.Kind == enforce.KindLift:
		return "lifts=" + c.Lifts
	case c.Scope == enforce.ScopeTool:
		return "tool=" + c.Tool + "@" + c.Value
	}
	return c.Scope + "=" + c.Value
}

func (v *revocationView) columns() []string {
	status := strings.ToUpper(v.Status)
	if v.Reason != "" {
		status += ": " + v.Reason
	}
	c := v.Command
	if c == nil {
		return []string{"-", v.Key, v.Operation, "-", "-", "-", "-", "-", status}
	}
	return []string{textfmt.Time(c.IssuedAt), textfmt.OrDash(c.ID), textfmt.OrDash(c.Kind), textfmt.OrDash(c.Tenant), opsScopeOf(c), textfmt.OrDash(c.Rule),
		textfmt.Time(c.ExpiresAt), textfmt.OrDash(c.Issuer), status}
}

func (a *app) opsWatchRevocations(cmd *cobra.Command, f watchRevocationsFlags) error {
	ctx := cmd.Context()
	kr := enforce.Keyring{}
	for _, p := range f.keys {
		pub, err := enforce.LoadPublicKey(p)
		if err != nil {
			return err
		}
		kr.Add(pub)
	}
	c, err := a.opsConnect(cmd, f.nats)
	if err != nil {
		return err
	}
	defer c.Close()
	if kf := c.cfg.Signing.KeyFile; f.nats.config != "" && kf != "" {
		if pub, err := enforce.LoadPublicKey(kf); err == nil {
			kr.Add(pub)
		} else {
			a.log.Debug().Err(err).Msg("engine key from the config not trusted")
		}
	}
	if len(kr) == 0 {
		return usageError(errors.New("no trusted keys: give --key FILE.pub (the engine's and the analysts' public keys)"))
	}
	kv, err := opsRevocationsBucket(ctx, c.js)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithCancel(ctx)
	var opts []jetstream.WatchOpt
	if f.updates {
		opts = append(opts, jetstream.UpdatesOnly())
	}
	kw, err := kv.WatchAll(wctx, opts...)
	if err != nil {
		cancel()
		return fmt.Errorf("watch %s: %w", pipeline.RevocationsBucket, err)
	}
	defer func() {
		// Ending the context unsubscribes; drain so the watcher's delivery
		// callback is never stuck on a full channel.
		cancel()
		go func() {
			for range kw.Updates() {
			}
		}()
	}()
	if !f.json {
		opsLine(a.stdout, revColumns, revWidths)
	}
	n := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case ent, ok := <-kw.Updates():
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("watch of %s ended", pipeline.RevocationsBucket)
			}
			if ent == nil {
				a.log.Info().Int("commands", n).Msg("current state shown; watching for changes (interrupt to stop)")
				continue
			}
			n++
			v := verifyUpdate(kr, ent.Key(), ent.Revision(), ent.Operation(), ent.Value(), time.Now())
			if f.json {
				b, err := json.Marshal(v)
				if err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "%s\n", b)
			} else {
				opsLine(a.stdout, v.columns(), revWidths)
			}
		}
	}
}

type watchDecisionsFlags struct {
	nats   opsNATSFlags
	all    bool
	json   bool
	tenant string
}

func newWatchDecisionsCmd(a *app) *cobra.Command {
	var f watchDecisionsFlags
	c := &cobra.Command{
		Use:   "decisions",
		Short: "Print rule decisions as they are made",
		Long: `Watch decisions prints the decisions of the detectors (alert, shadow and
enforce) from the ` + pipeline.DecisionsStream + ` stream as they are published, until interrupted;
--all starts from the oldest decision the stream keeps.

One line per decision: its event time, rule, mode, action, severity,
tenant, the subject it is about (scope=value, or the agent for alerts)
and its id. --json prints each decision as published, one per line.
` + opsNATSHelp,
		Example: `  tripline watch decisions
  tripline watch decisions --all --tenant acme --json | jq 'select(.mode == "enforce")'`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return a.opsWatchDecisions(cmd, f) },
	}
	f.nats.add(c)
	c.Flags().BoolVar(&f.all, "all", false, "start from the oldest decision kept, not from now")
	c.Flags().BoolVar(&f.json, "json", false, "print each decision as JSON, one per line")
	c.Flags().StringVar(&f.tenant, "tenant", "", "only this tenant's decisions")
	return c
}

var decisionColumns = []string{"TIME", "RULE", "MODE", "ACTION", "SEVERITY", "TENANT", "SUBJECT", "ID"}
var decisionWidths = []int{24, 26, 7, 6, 8, 10, 40, 0}

// decisionSubject renders who a decision is about: its scope's value, or
// the agent.
func decisionSubject(d *detectors.Decision) string {
	s := d.Subject
	v := map[string]string{
		enforce.ScopeSession: s.Session, enforce.ScopeInstance: s.Instance, enforce.ScopeAgent: s.Agent,
		enforce.ScopeTask: s.Task, enforce.ScopePrincipal: s.Principal, enforce.ScopeCredential: s.Credential,
		enforce.ScopeTool: s.Tool + "@" + s.Agent,
	}[d.Scope]
	if d.Scope == "" || v == "" {
		return "agent=" + s.Agent
	}
	return d.Scope + "=" + v
}

func (a *app) opsWatchDecisions(cmd *cobra.Command, f watchDecisionsFlags) error {
	ctx := cmd.Context()
	if f.tenant != "" && !actions.ValidTenant(f.tenant) {
		return usageError(fmt.Errorf("--tenant %q: a tenant holds only ASCII letters, digits, '-' and '_'", f.tenant))
	}
	c, err := a.opsConnect(cmd, f.nats)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := opsRequireStream(ctx, c.js, pipeline.DecisionsStream); err != nil {
		return err
	}
	cc := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy}
	if f.all {
		cc.DeliverPolicy = jetstream.DeliverAllPolicy
	}
	if f.tenant != "" {
		cc.FilterSubjects = []string{pipeline.DecisionsSubjectPrefix + f.tenant}
	}
	cons, err := c.js.OrderedConsumer(ctx, pipeline.DecisionsStream, cc)
	if err != nil {
		return fmt.Errorf("consume %s: %w", pipeline.DecisionsStream, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("consume %s: %w", pipeline.DecisionsStream, err)
	}
	defer it.Stop()
	if !f.json {
		opsLine(a.stdout, decisionColumns, decisionWidths)
	}
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("consume %s: %w", pipeline.DecisionsStream, err)
		}
		if f.json {
			fmt.Fprintf(a.stdout, "%s\n", m.Data())
			continue
		}
		var d detectors.Decision
		if err := json.Unmarshal(m.Data(), &d); err != nil {
			a.log.Warn().Err(err).Str("subject", m.Subject()).Msg("not a decision")
			continue
		}
		opsLine(a.stdout, []string{d.Time.UTC().Format("2006-01-02T15:04:05.000Z"), d.Rule, d.Mode, d.Action,
			textfmt.OrDash(d.Severity), d.Tenant, decisionSubject(&d), d.ID}, decisionWidths)
	}
}
