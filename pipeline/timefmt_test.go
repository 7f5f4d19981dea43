package pipeline

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestRFC3339Bounds(t *testing.T) {
	require.Equal(t, int64(minRFC3339Unix), time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC).Unix())
	require.Equal(t, int64(maxRFC3339Unix), time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC).Unix())
}
