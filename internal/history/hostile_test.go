package history_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tripline/tripline/internal/detect"
	"github.com/tripline/tripline/internal/history"
	"github.com/tripline/tripline/pipeline"
)

// Hostile and malformed events each get a clear dead-letter reason, reach
// the dead_letters table with it, and neither crash the worker nor stall
// the partition: a good event published after them is processed and
// stored; hostile strings inside valid events are stored intact.
func TestHostileInputIsDeadLetteredAndStored(t *testing.T) {
	e := newWEnv(t, "")
	ctx := context.Background()
	e.startDetector(zerolog.ErrorLevel)
	e.startWriter(history.WriterConfig{}, nil)

	agent := "spiffe://acme.dev/agent/x"
	subj := pipeline.EventSubject("acme", agent, e.topo.Partitions)
	valid := func(extra string) string {
		return `{"id":"ID","time":"2026-01-01T00:00:00Z","tenant":"acme","agent":"` + agent + `","tool":"t","action":"read"` + extra + `}`
	}
	attrs := make([]string, 5000)
	for i := range attrs {
		attrs[i] = fmt.Sprintf(`"k%d":"v"`, i)
	}
	cases := []struct {
		name, body, reason string
	}{
		{"oversized", valid(`,"resource":"` + strings.Repeat("x", 70<<10) + `"`), "bytes"},
		{"deep", valid(`,"x":` + strings.Repeat("[", 100) + strings.Repeat("]", 100)), "deep"},
		{"utf8", valid(`,"resource":"` + "\xff\xfe" + `"`), "UTF-8"},
		{"types", strings.Replace(valid(""), `"tool":"t"`, `"tool":7`, 1), "tool"},
		{"missing", `{"id":"ID","tenant":"acme","agent":"` + agent + `","tool":"t","action":"read"}`, "time"},
		{"attrs", valid(`,"attrs":{` + strings.Join(attrs, ",") + `}`), "attrs"},
		{"subject-injection", strings.Replace(valid(""), `"tenant":"acme"`, `"tenant":"acme.>"`, 1), "tenant"},
		{"not-json", `{"id":`, "JSON"},
	}
	bodies := make([]string, len(cases))
	for i, c := range cases {
		bodies[i] = strings.Replace(c.body, `"id":"ID"`, fmt.Sprintf(`"id":"bad-%d"`, i), 1)
		_, err := e.js.Publish(ctx, subj, []byte(bodies[i]), jetstream.WithMsgID(fmt.Sprint("bad-", i)))
		require.NoError(t, err, c.name)
	}
	// Identity fields refuse control characters (the contract); resource
	// and attribute values keep them.
	hostileID := "x'); DROP TABLE events; --\"\\☃"
	hostile := hostileID + "\x01\n\t"
	good := pipeline.Event{ID: "good", Time: time.Now().UTC().Truncate(time.Millisecond), Tenant: "acme", Agent: agent, Session: hostileID,
		Tool: "crm.lookup", Action: pipeline.ActionRead, Resource: hostile, Attrs: map[string]string{"q": hostile}}
	e.publish([]pipeline.Event{good})

	// Every malformed event is in dead_letters with its reason.
	e.waitRows(history.TableDeadLetters, uint64(len(cases)), 30*time.Second)
	rows, err := e.s.Conn.Query(ctx, "SELECT reason, body FROM "+e.s.T(history.TableDeadLetters)+" ORDER BY stream_seq")
	require.NoError(t, err)
	reasons := map[string]string{} // body prefix → reason
	for rows.Next() {
		var reason, body string
		require.NoError(t, rows.Scan(&reason, &body))
		reasons[body[:min(len(body), 200)]] = reason
	}
	rows.Close()
	require.Len(t, reasons, len(cases))
	for i, c := range cases {
		reason, ok := reasons[bodies[i][:min(len(bodies[i]), 200)]]
		require.True(t, ok, "%s: not in dead_letters", c.name)
		require.Contains(t, strings.ToLower(reason), strings.ToLower(c.reason), "%s: reason %q", c.name, reason)
	}
	// The good event after them was processed and stored intact.
	e.waitRows(history.TableEvents, 1, 30*time.Second)
	res, err := e.s.Conn.Query(ctx, "SELECT "+history.EventSelect+" FROM "+e.s.T(history.TableEvents)+" WHERE id = 'good'")
	require.NoError(t, err)
	require.True(t, res.Next())
	var got pipeline.Event
	require.NoError(t, history.ScanEvent(res, &got))
	res.Close()
	require.Equal(t, hostileID, got.Session)
	require.Equal(t, hostile, got.Resource)
	require.Equal(t, hostile, got.Attrs["q"])
	c, err := e.js.Consumer(ctx, pipeline.EventsStream, detect.ConsumerName(pipeline.Partition(agent, e.topo.Partitions)))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		info, err := c.Info(ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	}, 10*time.Second, 20*time.Millisecond, "partition stalled")
}
