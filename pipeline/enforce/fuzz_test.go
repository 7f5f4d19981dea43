package enforce

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
)

// FuzzApply feeds arbitrary KV updates to the enforcer's state: nothing
// panics, nothing unsigned takes effect, and the index stays consistent.
func FuzzApply(f *testing.F) {
	s, kr := keysFor(f)
	now := epoch
	rv := signed(s, Command{ID: "rv-1", Kind: KindRevoke, Tenant: "acme", Scope: ScopeTool, Value: "bot", Tool: "mail.send",
		IssuedAt: now, ExpiresAt: now.Add(time.Hour), Issuer: "engine/w1"})
	lift := signed(s, Command{ID: "lf-1", Kind: KindLift, Lifts: "rv-1", IssuedAt: now, ExpiresAt: now.Add(time.Hour), Issuer: "analyst/x"})
	b1, _ := json.Marshal(rv)
	b2, _ := json.Marshal(lift)
	f.Add("rv-1", uint8(0), b1)
	f.Add("rv-1", uint8(0), b2)
	f.Add("rv-1", uint8(1), []byte(nil))
	f.Add("x", uint8(0), []byte(`{"id":"x","kind":"revoke","sig":"AAAA","key_id":"k"}`))
	f.Add("x", uint8(0), []byte(`{"id":`))

	f.Fuzz(func(t *testing.T, key string, op uint8, data []byte) {
		st := newState()
		// A valid revocation is in force first; the fuzzed update must not
		// end it unless it is the signed lift.
		p := st.parse("rv-1", jetstream.KeyValuePut, b1, kr, now, time.Minute)
		require.NotNil(t, p.cmd)
		st.apply(p.cmd, now)

		p = st.parse(key, jetstream.KeyValueOp(op%3), data, kr, now, time.Minute)
		if p.cmd != nil {
			st.apply(p.cmd, now)
		}
		n := 0
		for _, ti := range st.tenants {
			n += ti.n
		}
		require.Equal(t, len(st.byID), n)
		v := st.check(&Call{Tenant: "acme", Agent: "bot", Tool: "mail.send"}, now.UnixNano())
		if p.cmd == nil || p.cmd.Sig != lift.Sig {
			require.Equal(t, Deny, v.Decision, "only the signed lift ends the revocation")
		}
	})
}
