package history

// SetCrashAfterInsert installs the test hook that stops the writer after
// an insert and before its acks.
func (w *Writer) SetCrashAfterInsert(f func(table string) bool) { w.crashAfterInsert = f }

// ErrCrash is the error the hook makes Run return.
var ErrCrash = errCrash
