package backtest

import (
	"context"
	"math"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tripline/tripline/internal/history"
	"github.com/tripline/tripline/pipeline"
)

// packRow packs e as eventSelect has the server pack a row (attributes in
// key order, as the history stores them).
func packRow(e *pipeline.Event) string {
	var b []byte
	str := func(s string) { b = append(strconv.AppendInt(b, int64(len(s)), 10), ':'); b = append(b, s...) }
	num := func(n int64) { b = append(strconv.AppendInt(b, n, 10), ':') }
	arr := func(ss []string) {
		num(int64(len(ss)))
		for _, s := range ss {
			str(s)
		}
	}
	for _, s := range []string{e.ID, e.Tenant, e.Agent, e.Instance, e.ParentAgent, e.Principal, e.Session, e.Task,
		e.Tool, string(e.Action), e.ActionRaw, e.Resource, e.Destination, e.Sensitivity, e.Outcome, e.Approval,
		e.Environment, e.Credential, e.Trace, string(e.Unknown)} {
		str(s)
	}
	for _, n := range []int64{int64(e.DelegationDepth), e.BytesIn, e.BytesOut, e.Records} {
		num(n)
	}
	arr(e.TaskScope)
	var keys, vals []string
	for k := range e.Attrs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		vals = append(vals, e.Attrs[k])
	}
	arr(keys)
	arr(vals)
	return string(b)
}

// trickyEvents hold what could trip the packed format up: separators and
// digits in values, empty and multi-byte strings, NUL bytes, extremes.
func trickyEvents() []pipeline.Event {
	at := time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)
	return []pipeline.Event{
		{ID: "a", Time: at, Tenant: "acme", Agent: "spiffe://acme.example/a", Tool: "t", Action: pipeline.ActionRead},
		{ID: "b:1:2", Time: at.Add(time.Millisecond), Tenant: "acme", Agent: "12:34", Instance: ":", ParentAgent: "0:",
			Principal: "ünïcødé ✓", Session: "s\x00nul", Task: "task", TaskScope: []string{"", "3:abc", "fs.read"},
			Tool: "db.query", Action: pipeline.ActionSend, ActionRaw: "POST", Resource: "line1\nline2\\", Destination: "https://x.example/?a=1:2",
			BytesIn: math.MaxInt64, BytesOut: 1, Records: 0, Sensitivity: "restricted", Outcome: "ok", Approval: "none",
			Environment: "prod", Credential: "cred-1", Trace: "tr", DelegationDepth: 65535,
			Attrs:   map[string]string{"": "empty key", "k:2": "", "model": "gpt-x", "password": "hunter2", "z": "1:2:3"},
			Unknown: []byte(`{"x":"y:1"}`)},
		{ID: "c", Time: at.Add(2 * time.Millisecond), Tenant: "other", Agent: "a", Tool: "t", Action: pipeline.ActionOther,
			TaskScope: []string{"only"}, Attrs: map[string]string{"k": "v"}},
	}
}

// TestPackedRows: the server's packed rows decode to the events
// history.ScanEvent reads, and are what packRow makes of them.
func TestPackedRows(t *testing.T) {
	s := newHistory(t)
	ctx := context.Background()
	events := trickyEvents()
	require.NoError(t, s.InsertEvents(ctx, events))

	var want []pipeline.Event
	rows, err := s.Conn.Query(ctx, "SELECT "+history.EventSelect+" FROM "+s.T(history.TableEvents)+" ORDER BY id")
	require.NoError(t, err)
	for rows.Next() {
		var e pipeline.Event
		require.NoError(t, history.ScanEvent(rows, &e))
		want = append(want, e)
	}
	require.NoError(t, rows.Err())
	require.Len(t, want, len(events))
	require.Equal(t, history.Redacted, want[1].Attrs["password"], "stored redacted")

	rows, err = s.Conn.Query(ctx, "SELECT "+eventSelect()+" FROM "+s.T(history.TableEvents)+" ORDER BY id")
	require.NoError(t, err)
	i := 0
	for rows.Next() {
		var (
			ms  int64
			row string
			e   pipeline.Event
		)
		require.NoError(t, rows.Scan(&ms, &row))
		require.NoError(t, decodeRow(ms, row, &e))
		require.Equal(t, want[i], e)
		require.Equal(t, packRow(&want[i]), row)
		id, tenant, agent, session := rowKey(row)
		require.Equal(t, []string{e.ID, e.Tenant, e.Agent, e.Session}, []string{id, tenant, agent, session})
		i++
	}
	require.NoError(t, rows.Err())
	require.Equal(t, len(want), i)
}

func TestDecodeRowErrors(t *testing.T) {
	good := packRow(&trickyEvents()[1])
	var e pipeline.Event
	require.NoError(t, decodeRow(1, good, &e))
	for _, bad := range []string{
		"",
		good[:len(good)-1],
		good + "x",
		"1:a",
		"99999999999999999999:x",
		"-1:",
		"x:" + good,
	} {
		require.ErrorIs(t, decodeRow(1, bad, &e), errPacked, "%q", bad)
	}
}

// FuzzDecodeRow: any string decodes or fails without panicking; what
// decodes packs back into a row that decodes to the same event.
func FuzzDecodeRow(f *testing.F) {
	for _, e := range trickyEvents() {
		f.Add(packRow(&e))
	}
	f.Add("0:0:")
	f.Add("1:")
	f.Fuzz(func(t *testing.T, row string) {
		var e, again pipeline.Event
		if decodeRow(42, row, &e) != nil {
			return
		}
		require.NoError(t, decodeRow(42, packRow(&e), &again))
		require.Equal(t, e, again)
	})
}
