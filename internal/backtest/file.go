package backtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/klauspost/compress/gzip"

	"github.com/tripline/tripline/pipeline"
)

// OpenFile opens an events file for Run: "-" is stdin (size unknown). The
// size is the file's size, for Config.Total.
func OpenFile(path string, stdin io.Reader) (io.ReadCloser, int64, error) {
	if path == "-" {
		return io.NopCloser(stdin), 0, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("backtest: %w", err)
	}
	var size int64
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
		size = st.Size()
	}
	return f, size, nil
}

// errLineTooLong is the reason for a line longer than the read buffer.
type errLineTooLong struct{ max int }

func (e errLineTooLong) Error() string {
	return fmt.Sprintf("line longer than the %d-byte event limit", e.max)
}

// counter counts the bytes read through it. Only the reader goroutine uses it.
type counter struct {
	r io.Reader
	n int64
}

func (c *counter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// FileSource reads events from JSON Lines, plain or gzip-compressed
// (detected by its magic bytes), in file order. Lines that are not valid
// events are counted and the first MaxMessages kept as messages; in strict
// mode the first one ends the read with a *MalformedError.
type FileSource struct {
	lim      pipeline.Limits
	strict   bool
	src      counter
	br       *bufio.Reader
	dec      *pipeline.Decoder
	maxLine  int
	started  bool
	done     bool
	pos      Position
	messages []string
}

// NewFileSource reads the JSON Lines in r; lim applies to each event.
func NewFileSource(r io.Reader, lim pipeline.Limits, strict bool) *FileSource {
	return &FileSource{lim: lim, strict: strict, src: counter{r: r}}
}

// Position reports the lines and bytes read and the malformed lines.
func (f *FileSource) Position() Position {
	p := f.pos
	p.Bytes = f.src.n
	return p
}

// Messages are the first MaxMessages malformed lines, with their numbers.
func (f *FileSource) Messages() []string { return f.messages }

func (f *FileSource) start() error {
	f.started = true
	f.dec = pipeline.NewDecoder(&f.lim)
	f.maxLine = f.lim.MaxEventBytes
	if f.maxLine <= 0 {
		f.maxLine = pipeline.DefaultMaxEventBytes
	}
	// A line that does not fit the buffer is too long to be an event: the
	// buffer holds the largest event plus CR LF.
	bufSize := max(64<<10, f.maxLine+2)
	raw := bufio.NewReaderSize(&f.src, bufSize)
	f.br = raw
	if magic, _ := raw.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(raw)
		if err != nil {
			return fmt.Errorf("backtest: gzip input: %w", err)
		}
		f.br = bufio.NewReaderSize(zr, bufSize)
	}
	return nil
}

// Read decodes the next lines into events.
func (f *FileSource) Read(_ context.Context, events []pipeline.Event) (int, error) {
	if f.done {
		return 0, io.EOF
	}
	if !f.started {
		if err := f.start(); err != nil {
			f.done = true
			return 0, err
		}
	}
	n := 0
	for n < len(events) {
		line, err := f.br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// Too long to be an event: skip to the end of the line.
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = f.br.ReadSlice('\n')
			}
			f.pos.Lines++
			if merr := f.bad(errLineTooLong{f.maxLine}); merr != nil {
				f.done = true
				return n, merr
			}
			line = nil
		} else if len(line) > 0 {
			f.pos.Lines++
		}
		if len(line) > 0 {
			if line = bytes.TrimRight(line, "\r\n"); len(bytes.TrimSpace(line)) > 0 {
				if derr := f.dec.Decode(line, &events[n]); derr != nil {
					if merr := f.bad(derr); merr != nil {
						f.done = true
						return n, merr
					}
				} else {
					n++
				}
			}
		}
		if err == io.EOF {
			f.done = true
			return n, io.EOF
		}
		if err != nil {
			f.done = true
			return n, fmt.Errorf("backtest: reading events: %w", err)
		}
	}
	return n, nil
}

// bad records a malformed line; in strict mode it returns the error to stop with.
func (f *FileSource) bad(err error) error {
	f.pos.Malformed++
	if f.strict {
		return &MalformedError{Line: f.pos.Lines, Err: err}
	}
	if len(f.messages) < MaxMessages {
		f.messages = append(f.messages, fmt.Sprintf("line %d: %v", f.pos.Lines, err))
	}
	return nil
}
