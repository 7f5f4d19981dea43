package pipeline

// Limits bound what one event may cost a worker. A zero field means "use the
// default" (see DefaultLimits), so Limits{MaxAttrs: 16} changes one limit only.
type Limits struct {
	// MaxEventBytes is the largest encoded event accepted (default 64 KiB).
	MaxEventBytes int
	// MaxStringLen bounds every string field, attribute key and attribute
	// value, in bytes (default 1024); resource and destination use
	// MaxResourceLen instead.
	MaxStringLen int
	// MaxResourceLen bounds resource and destination, in bytes (default 4096).
	MaxResourceLen int
	// MaxAttrs is the largest number of entries in attrs (default 64).
	MaxAttrs int
	// MaxScope is the largest number of tools in task_scope (default 256).
	MaxScope int
	// MaxUnknownFields is the largest number of unknown top-level fields kept
	// in Event.Unknown (default 64).
	MaxUnknownFields int
	// MaxDepth bounds JSON nesting; the event object itself is depth 1, so
	// attrs and task_scope are depth 2 and only unknown fields go deeper
	// (default 32).
	MaxDepth int
}

// Default limits; see Limits.
const (
	DefaultMaxEventBytes    = 64 << 10
	DefaultMaxStringLen     = 1024
	DefaultMaxResourceLen   = 4096
	DefaultMaxAttrs         = 64
	DefaultMaxScope         = 256
	DefaultMaxUnknownFields = 64
	DefaultMaxDepth         = 32
)

// DefaultLimits returns the limits every Tripline consumer applies unless
// configured otherwise.
func DefaultLimits() Limits {
	return Limits{
		MaxEventBytes:    DefaultMaxEventBytes,
		MaxStringLen:     DefaultMaxStringLen,
		MaxResourceLen:   DefaultMaxResourceLen,
		MaxAttrs:         DefaultMaxAttrs,
		MaxScope:         DefaultMaxScope,
		MaxUnknownFields: DefaultMaxUnknownFields,
		MaxDepth:         DefaultMaxDepth,
	}
}

// resolve returns *lim with every zero or negative field replaced by its
// default; a nil lim yields DefaultLimits.
func resolveLimits(lim *Limits) Limits {
	d := DefaultLimits()
	if lim == nil {
		return d
	}
	l := *lim
	fill := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	fill(&l.MaxEventBytes, d.MaxEventBytes)
	fill(&l.MaxStringLen, d.MaxStringLen)
	fill(&l.MaxResourceLen, d.MaxResourceLen)
	fill(&l.MaxAttrs, d.MaxAttrs)
	fill(&l.MaxScope, d.MaxScope)
	fill(&l.MaxUnknownFields, d.MaxUnknownFields)
	fill(&l.MaxDepth, d.MaxDepth)
	return l
}
