package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tripline/tripline/pipeline"
	"github.com/tripline/tripline/pipeline/enforce"
)

// fillTenants is how many tenants the loaded revocations are spread over.
const fillTenants = 100

// fillSpec is one loaded revocation, as the check figure needs it.
type fillSpec struct {
	tenant, scope, value string
}

// fillScope spreads the loaded revocations over the scopes: mostly
// sessions, some of every other kind.
func fillScope(i int) string {
	switch i % 20 {
	case 12, 13:
		return enforce.ScopeCredential
	case 14, 15:
		return enforce.ScopeAgent
	case 16:
		return enforce.ScopeInstance
	case 17:
		return enforce.ScopeTask
	case 18:
		return enforce.ScopePrincipal
	case 19:
		return enforce.ScopeTool
	}
	return enforce.ScopeSession
}

// EnforcerDetail is what the check stage saw.
type EnforcerDetail struct {
	Active     int     `json:"active"`
	Calls      int64   `json:"calls"`
	Denied     int64   `json:"denied"`
	Held       int64   `json:"held"`
	NsPerOp    float64 `json:"ns_per_op"`
	RefNsPerOp float64 `json:"ref_ns_per_op"`
}

// startEnforcer stores n signed revocations in the bucket, as the engine
// would, then starts an enforcer that loads them all (verifying every
// signature) and waits until it has acknowledged them. The enforcer then
// stays up: it is the subscribed enforcer of the latency figure and the
// one whose Check is timed.
func (e *env) startEnforcer(ctx context.Context, n int, sd *SetupDetail) error {
	t0 := time.Now()
	e.p.printf("bench: signing and storing %s revocations in %s", group(int64(n)), pipeline.RevocationsBucket)
	e.fill = make([]fillSpec, n)
	msgs := make([]*nats.Msg, n)
	issued := time.Now().UTC().Truncate(time.Millisecond)
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				s := fillSpec{tenant: "fill-" + strconv.Itoa(i%fillTenants), scope: fillScope(i), value: "v-" + strconv.Itoa(i)}
				c := &enforce.Command{
					ID: enforce.CommandID("bench-fill-"+strconv.Itoa(i), s.scope), Kind: enforce.KindRevoke,
					Tenant: s.tenant, Scope: s.scope, Value: s.value, Reason: "benchmark fill",
					Rule: "bench", IssuedAt: issued, ExpiresAt: issued.Add(24 * time.Hour), Issuer: "engine/bench",
				}
				if s.scope == enforce.ScopeTool {
					c.Tool = "mail.send"
				}
				e.signer.Sign(c)
				b, _ := json.Marshal(c)
				e.fill[i] = s
				// A KV value of bucket B under key K is a message on $KV.B.K:
				// what kv.Put sends, published asynchronously.
				msgs[i] = &nats.Msg{Subject: "$KV." + pipeline.RevocationsBucket + "." + c.ID, Data: b}
			}
		}()
	}
	wg.Wait()
	for _, m := range msgs {
		if err := e.publish(m); err != nil {
			return fmt.Errorf("%w: fill revocations: %v", errFatal, err)
		}
	}
	if err := e.flush(ctx); err != nil {
		return fmt.Errorf("%w: fill revocations: %v", errFatal, err)
	}
	sd.FillSeconds = round(time.Since(t0).Seconds())

	if err := e.observe(ctx); err != nil {
		return fmt.Errorf("%w: %v", errFatal, err)
	}
	enf, err := enforce.New(e.enfNC, enforce.Config{
		ID: enforcerID, Keyring: e.keys, FailPolicy: enforce.FailOpen, Logger: e.log,
	})
	if err != nil {
		return fmt.Errorf("%w: enforcer: %v", errFatal, err)
	}
	t1 := time.Now()
	if err := enf.Start(ctx); err != nil {
		return fmt.Errorf("%w: enforcer: %v", errFatal, err)
	}
	e.enf = enf
	sd.EnforcerLoadSeconds = round(time.Since(t1).Seconds())
	sd.EnforcerActive = enf.Active()
	e.p.printf("bench: enforcer loaded %s revocations in %s (signatures verified); waiting for its acks",
		group(int64(enf.Active())), time.Since(t1).Round(time.Millisecond))
	// The start-up acks must not overlap the first measurement.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		e.seen.mu.Lock()
		acked := e.seen.ackCount
		e.seen.mu.Unlock()
		if acked >= n {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: enforcer acknowledged %d of %d revocations within 2 minutes", errFatal, acked, n)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	if got := enf.Active(); got < n {
		return fmt.Errorf("%w: enforcer holds %d of the %d revocations stored", errFatal, got, n)
	}
	return nil
}

// checkCalls builds the calls the check figure times: a quarter match a
// loaded revocation by its scope, the rest carry every scope of a
// populated tenant without matching (the most lookups a call can cost).
func checkCalls(fill []fillSpec) []enforce.Call {
	calls := make([]enforce.Call, 1024)
	for i := range calls {
		j := (i * 7919) % len(fill)
		s := fill[j]
		c := enforce.Call{
			Tenant: s.tenant, Agent: "spiffe://bench.example/agent/x", Instance: "pod-x", Session: "session-x",
			Task: "task-x", Principal: "alice@bench.example", Credential: "cred-x", Tool: "mail.send", Action: "write",
		}
		if i%4 == 0 {
			switch s.scope {
			case enforce.ScopeSession:
				c.Session = s.value
			case enforce.ScopeInstance:
				c.Instance = s.value
			case enforce.ScopeAgent, enforce.ScopeTool:
				c.Agent = s.value
			case enforce.ScopeTask:
				c.Task = s.value
			case enforce.ScopePrincipal:
				c.Principal = s.value
			case enforce.ScopeCredential:
				c.Credential = s.value
			}
		}
		calls[i] = c
	}
	return calls
}

type tenantValue struct{ tenant, value string }

// checkCost times Check over the call mix, and the reference: one map
// lookup per call among as many keys as there are revocations.
func (e *env) checkCost(run int, f *Figure, d *RunDetail) error {
	if e.enf == nil || len(e.fill) == 0 {
		err := fmt.Errorf("no enforcer")
		f.fail(run, err)
		return err
	}
	calls := checkCalls(e.fill)
	ref := make(map[tenantValue]struct{}, len(e.fill))
	for _, s := range e.fill {
		ref[tenantValue{s.tenant, s.value}] = struct{}{}
	}
	budget := e.cfg.CheckFor
	var denied, held int64
	check := func(i int) {
		switch e.enf.Check(&calls[i&1023]).Decision {
		case enforce.Deny:
			denied++
		case enforce.Hold:
			held++
		}
	}
	hits := 0
	lookup := func(i int) {
		c := &calls[i&1023]
		if _, ok := ref[tenantValue{c.Tenant, c.Session}]; ok {
			hits++
		}
	}
	// ABBA: check, lookup, lookup, check
	var tCheck, tRef time.Duration
	var nCheck, nRef int64
	for _, isCheck := range []bool{true, false, false, true} {
		if isCheck {
			el, n := timeLoop(budget/2, check)
			tCheck, nCheck = tCheck+el, nCheck+n
		} else {
			el, n := timeLoop(budget/2, lookup)
			tRef, nRef = tRef+el, nRef+n
		}
	}
	nsCheck := round(float64(tCheck.Nanoseconds()) / float64(nCheck))
	nsRef := round(float64(tRef.Nanoseconds()) / float64(nRef))
	runtime.KeepAlive(hits)
	d.Enforcer = &EnforcerDetail{Active: e.enf.Active(), Calls: nCheck, Denied: denied, Held: held, NsPerOp: nsCheck, RefNsPerOp: nsRef}
	e.p.printf("run %d  enforcer   Check with %s active: %.1f ns/op (%s calls, %s denied); one map lookup %.1f ns/op",
		run, group(int64(e.enf.Active())), nsCheck, group(nCheck), group(denied), nsRef)
	// A quarter of the calls match a loaded revocation.
	if denied != nCheck/4 {
		err := fmt.Errorf("%d of %d calls denied, %d expected: the enforcer does not hold the loaded revocations", denied, nCheck, nCheck/4)
		f.fail(run, err)
		return err
	}
	f.add(nsCheck, nsRef)
	return nil
}

// timeLoop calls fn with increasing i for about budget and returns the
// time taken and the number of calls.
func timeLoop(budget time.Duration, fn func(i int)) (time.Duration, int64) {
	const chunk = 1 << 14
	var n int64
	t0 := time.Now()
	for time.Since(t0) < budget {
		for i := range chunk {
			fn(i)
		}
		n += chunk
	}
	return time.Since(t0), n
}
