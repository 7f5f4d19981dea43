package enforce

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/tripline/tripline/pipeline"
)

func testEvent(id, agent string) *pipeline.Event {
	return &pipeline.Event{
		ID:      id,
		Time:    epoch,
		Tenant:  "acme",
		Agent:   agent,
		Session: "s-1",
		Tool:    "crm.search",
		Action:  pipeline.ActionRead,
	}
}

func streamMsgs(t *testing.T, js jetstream.JetStream, stream string) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx := context.Background()
	st, err := js.Stream(ctx, stream)
	require.NoError(t, err)
	info, err := st.Info(ctx)
	require.NoError(t, err)
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		require.NoError(t, err)
		out = append(out, m)
	}
	return out
}

func TestProducerPublishesOnThePartitionSubject(t *testing.T) {
	v := newEnv(t)
	reg := prometheus.NewRegistry()
	p := NewProducer(v.js, ProducerConfig{Registerer: reg})
	defer p.Close(context.Background())
	ctx := context.Background()

	agents := []string{
		"spiffe://acme.example/agents/support",
		"spiffe://acme.example/agents/billing",
		"spiffe://acme.example/agents/research",
		"oidc|acme|bot-7",
	}
	want := map[string]*pipeline.Event{}
	for i, a := range agents {
		ev := testEvent(fmt.Sprintf("ev-%d", i), a)
		want[ev.ID] = ev
		require.NoError(t, p.Publish(ctx, ev))
	}
	require.NoError(t, p.Flush(ctx))

	msgs := streamMsgs(t, v.js, pipeline.EventsStream)
	require.Len(t, msgs, len(agents), "Flush returned after every event landed")
	for _, m := range msgs {
		id := m.Header.Get(jetstream.MsgIDHeader)
		ev := want[id]
		require.NotNil(t, ev, "msg id %q", id)
		require.Equal(t, pipeline.EventSubject("acme", ev.Agent, pipeline.DefaultPartitions), m.Subject)
		require.Equal(t, fmt.Sprintf("tl.events.acme.%d", pipeline.Partition(ev.Agent, 16)), m.Subject)
		var got pipeline.Event
		require.NoError(t, pipeline.Decode(m.Data, &got, nil))
		require.Equal(t, *ev, got)
	}
	require.Equal(t, float64(len(agents)), counterValue(t, p.m.published))
}

func TestProducerDuplicateIsDeduplicated(t *testing.T) {
	v := newEnv(t)
	p := NewProducer(v.js, ProducerConfig{})
	defer p.Close(context.Background())
	ctx := context.Background()
	ev := testEvent("ev-dup", "spiffe://acme.example/agents/support")
	require.NoError(t, p.Publish(ctx, ev))
	require.NoError(t, p.Flush(ctx))
	require.NoError(t, p.Publish(ctx, ev)) // a retry by the caller
	require.NoError(t, p.Flush(ctx))

	require.Len(t, streamMsgs(t, v.js, pipeline.EventsStream), 1)
	require.Equal(t, 2.0, counterValue(t, p.m.published))
	require.Equal(t, 1.0, counterValue(t, p.m.duplicates))
}

func TestProducerRejectsInvalidEvents(t *testing.T) {
	v := newEnv(t)
	p := NewProducer(v.js, ProducerConfig{})
	defer p.Close(context.Background())
	ctx := context.Background()

	bad := testEvent("ev-bad", "spiffe://acme.example/agents/support")
	bad.Tenant = "acme.>" // would be a wildcard in the subject
	err := p.Publish(ctx, bad)
	var ve *pipeline.ValidationError
	require.ErrorAs(t, err, &ve)
	require.Equal(t, "tenant", ve.Problems[0].Path)

	big := testEvent("ev-big", "spiffe://acme.example/agents/support")
	big.Attrs = map[string]string{}
	for i := range 60 {
		big.Attrs[fmt.Sprintf("k%02d", i)] = string(make([]byte, 1000))
	}
	p2 := NewProducer(v.js, ProducerConfig{Limits: pipeline.Limits{MaxEventBytes: 4096}})
	defer p2.Close(ctx)
	require.ErrorContains(t, p2.Publish(ctx, big), "more than the 4096")

	require.NoError(t, p.Flush(ctx))
	require.Empty(t, streamMsgs(t, v.js, pipeline.EventsStream))
	require.Equal(t, 1.0, counterValue(t, p.m.invalid))
}

func TestProducerFlushWaitsForEveryAck(t *testing.T) {
	v := newEnv(t)
	p := NewProducer(v.js, ProducerConfig{MaxPending: 64})
	defer p.Close(context.Background())
	ctx := context.Background()
	const n = 2000
	for i := range n {
		require.NoError(t, p.Publish(ctx, testEvent(fmt.Sprintf("ev-%d", i), fmt.Sprintf("spiffe://acme.example/agents/a%d", i%37))))
	}
	require.NoError(t, p.Flush(ctx))
	st, err := v.js.Stream(ctx, pipeline.EventsStream)
	require.NoError(t, err)
	info, err := st.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(n), info.State.Msgs)
	require.Equal(t, float64(n), counterValue(t, p.m.published))
}

// fakeJS stands in for JetStream where a test needs acknowledgements that
// fail, come late or never come.
type fakeJS struct {
	jetstream.JetStream
	mu      sync.Mutex
	sent    []*nats.Msg
	respond func(attempt int) (ack *jetstream.PubAck, err error, never bool)
	tries   map[string]int
}

type fakeFuture struct {
	ok  chan *jetstream.PubAck
	err chan error
	msg *nats.Msg
}

func (f *fakeFuture) Ok() <-chan *jetstream.PubAck { return f.ok }
func (f *fakeFuture) Err() <-chan error            { return f.err }
func (f *fakeFuture) Msg() *nats.Msg               { return f.msg }

func (j *fakeJS) PublishMsgAsync(m *nats.Msg, _ ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.tries == nil {
		j.tries = map[string]int{}
	}
	id := m.Header.Get(jetstream.MsgIDHeader)
	attempt := j.tries[id]
	j.tries[id]++
	j.sent = append(j.sent, m)
	f := &fakeFuture{ok: make(chan *jetstream.PubAck, 1), err: make(chan error, 1), msg: m}
	ack, err, never := j.respond(attempt)
	switch {
	case never:
	case err != nil:
		f.err <- err
	default:
		f.ok <- ack
	}
	return f, nil
}

func TestProducerBlocksWhenMaxPendingIsReached(t *testing.T) {
	js := &fakeJS{respond: func(int) (*jetstream.PubAck, error, bool) { return nil, nil, true }} // acks never come
	p := NewProducer(js, ProducerConfig{MaxPending: 2, AckTimeout: time.Hour})
	defer p.pub.close()
	ctx := context.Background()
	require.NoError(t, p.Publish(ctx, testEvent("e1", "a")))
	require.NoError(t, p.Publish(ctx, testEvent("e2", "a")))

	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	err := p.Publish(short, testEvent("e3", "a"))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorIs(t, p.Flush(short), context.DeadlineExceeded)
	require.Len(t, js.sent, 2)
}

func TestProducerRetriesFailedAcks(t *testing.T) {
	js := &fakeJS{respond: func(attempt int) (*jetstream.PubAck, error, bool) {
		switch attempt {
		case 0:
			return nil, nats.ErrDisconnected, false
		case 1:
			return nil, nil, true // timed out
		}
		return &jetstream.PubAck{Stream: pipeline.EventsStream, Sequence: 1}, nil, false
	}}
	p := NewProducer(js, ProducerConfig{RetryBackoff: time.Millisecond, AckTimeout: 20 * time.Millisecond})
	defer p.pub.close()
	ctx := context.Background()
	require.NoError(t, p.Publish(ctx, testEvent("e1", "a")))
	require.NoError(t, p.Flush(ctx))
	require.Len(t, js.sent, 3)
	for _, m := range js.sent {
		require.Equal(t, "e1", m.Header.Get(jetstream.MsgIDHeader), "a retry keeps the msg id")
	}
	require.Equal(t, 2.0, counterValue(t, p.m.retried))
	require.Equal(t, 1.0, counterValue(t, p.m.published))
	require.Equal(t, 0.0, counterValue(t, p.m.failed))
}

func TestProducerFlushReportsPermanentFailure(t *testing.T) {
	boom := errors.New("stream says no")
	js := &fakeJS{respond: func(int) (*jetstream.PubAck, error, bool) { return nil, boom, false }}
	p := NewProducer(js, ProducerConfig{Retries: 2, RetryBackoff: time.Millisecond})
	defer p.pub.close()
	ctx := context.Background()
	require.NoError(t, p.Publish(ctx, testEvent("e1", "a")))
	err := p.Flush(ctx)
	require.ErrorIs(t, err, boom)
	require.ErrorContains(t, err, "e1")
	require.ErrorContains(t, err, "3 attempts")
	require.Equal(t, 1.0, counterValue(t, p.m.failed))
	require.NoError(t, p.Flush(ctx), "a failure is reported once")
}
