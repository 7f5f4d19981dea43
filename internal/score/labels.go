package score

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// Label is one attack instance of a labelled simulation: one line of the
// labels file a simulator writes next to its events.
//
// The attack's events are those of its sessions (Sessions, or Session when
// Sessions is empty) in its tenant. Agent, Credential and Instance are the
// identities a revocation scoped to them would have to name to stop it;
// the scorer also learns the identities its events carry.
type Label struct {
	ID             string    `json:"id"`
	Scenario       string    `json:"scenario"`
	Tenant         string    `json:"tenant"`
	Agent          string    `json:"agent"`
	Session        string    `json:"session"`
	Sessions       []string  `json:"sessions"`
	Credential     string    `json:"credential"`
	Instance       string    `json:"instance"`
	FirstEventTime time.Time `json:"first_event_time"`
	LastEventTime  time.Time `json:"last_event_time"`
	Events         int       `json:"events"`
}

// sessions is every session of the attack.
func (l *Label) sessions() []string {
	if len(l.Sessions) > 0 {
		return l.Sessions
	}
	if l.Session != "" {
		return []string{l.Session}
	}
	return nil
}

// ReadLabels reads a labels file: JSON Lines, plain or gzip-compressed,
// one Label a line; blank lines are skipped. A label needs a scenario, a
// tenant and a session; one without an id is named after its line
// ("line-7"); ids must be unique. Every bad line is reported, with its
// number.
func ReadLabels(r io.Reader) ([]Label, error) {
	br := bufio.NewReader(r)
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("labels: gzip: %w", err)
		}
		defer zr.Close()
		br = bufio.NewReader(zr)
	}
	var (
		out  []Label
		errs []error
		ids  = map[string]int{}
		n    int
	)
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			n++
		}
		if line = bytes.TrimSpace(line); len(line) > 0 {
			var l Label
			switch derr := json.Unmarshal(line, &l); {
			case derr != nil:
				errs = append(errs, fmt.Errorf("line %d: %w", n, derr))
			case l.Scenario == "":
				errs = append(errs, fmt.Errorf("line %d: no scenario", n))
			case l.Tenant == "":
				errs = append(errs, fmt.Errorf("line %d: no tenant", n))
			case len(l.sessions()) == 0:
				errs = append(errs, fmt.Errorf("line %d: no session (give sessions or session)", n))
			default:
				if l.ID == "" {
					l.ID = fmt.Sprintf("line-%d", n)
				}
				if prev, dup := ids[l.ID]; dup {
					errs = append(errs, fmt.Errorf("line %d: id %q is already used on line %d", n, l.ID, prev))
					break
				}
				ids[l.ID] = n
				out = append(out, l)
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("labels: %w", err)
		}
	}
	if len(errs) > 0 {
		if len(errs) > 10 {
			errs = append(errs[:10], fmt.Errorf("and %d more bad lines", len(errs)-10))
		}
		return nil, fmt.Errorf("labels: %w", errors.Join(errs...))
	}
	return out, nil
}
