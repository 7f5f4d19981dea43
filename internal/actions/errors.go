package actions

import "errors"

// What went wrong, for errors.Is: every error an Issuer returns for a
// reason other than its context is an *Error of one of these kinds.
var (
	// ErrInvalid: the request is malformed (a bad field).
	ErrInvalid = errors.New("invalid request")
	// ErrNotFound: no command with that id is in force.
	ErrNotFound = errors.New("no such command")
	// ErrConflict: the command cannot be acted on (already lifted,
	// expired, not a hold, changed concurrently).
	ErrConflict = errors.New("conflict")
	// ErrUnavailable: NATS did not take the command; retrying is safe.
	ErrUnavailable = errors.New("unavailable")
)

// Error is an action's failure. Msg (with Field) is fit to show to the
// caller; Err, the underlying cause, may hold internal detail and belongs
// in logs only.
type Error struct {
	Kind error
	// Field is the request field at fault (ErrInvalid): tenant, scope,
	// value, tool, reason, for, id or analyst.
	Field string
	Msg   string
	// NotHold is set when approve or deny named a command that is not a
	// hold (it can be lifted instead).
	NotHold bool
	Err     error
}

// Public is the message for the caller, without the internal cause.
func (e *Error) Public() string {
	if e.Field != "" {
		return e.Field + ": " + e.Msg
	}
	return e.Msg
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Public() + ": " + e.Err.Error()
	}
	return e.Public()
}

// Is makes errors.Is(err, ErrInvalid) and the like work.
func (e *Error) Is(target error) bool { return target == e.Kind }

func (e *Error) Unwrap() error { return e.Err }

func invalid(field, msg string) error { return &Error{Kind: ErrInvalid, Field: field, Msg: msg} }

func conflict(msg string) error { return &Error{Kind: ErrConflict, Msg: msg} }

func unavailable(msg string, err error) error {
	return &Error{Kind: ErrUnavailable, Msg: msg, Err: err}
}
