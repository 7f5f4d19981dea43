package topology

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/tripline/tripline/internal/natstest"
	"github.com/tripline/tripline/pipeline"
)

func TestProvisionIsIdempotent(t *testing.T) {
	s := natstest.Start(t)
	_, js := s.Connect(t)
	ctx := context.Background()
	cfg := Config{Partitions: 4}
	require.NoError(t, Provision(ctx, js, cfg))
	require.NoError(t, Provision(ctx, js, cfg), "second run changes nothing and does not fail")

	// a changed setting is applied in place
	cfg.EventsDedup = 20 * time.Minute
	require.NoError(t, Provision(ctx, js, cfg))
	st, err := js.Stream(ctx, pipeline.EventsStream)
	require.NoError(t, err)
	info, err := st.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, 20*time.Minute, info.Config.Duplicates)
	require.Equal(t, []string{"tl.events.>"}, info.Config.Subjects)

	for _, name := range []string{pipeline.DeadLetterStream, pipeline.DecisionsStream, pipeline.RevocationsStream, pipeline.AcksStream} {
		_, err := js.Stream(ctx, name)
		require.NoError(t, err, name)
	}
	kv, err := js.KeyValue(ctx, pipeline.RevocationsBucket)
	require.NoError(t, err)
	_, err = kv.Create(ctx, "r1", []byte("x"), jetstreamKeyTTL(time.Minute))
	require.NoError(t, err, "revocation entries carry their own TTL")
}

func jetstreamKeyTTL(d time.Duration) jetstream.KVCreateOpt { return jetstream.KeyTTL(d) }
