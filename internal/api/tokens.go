package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/tripline/tripline/internal/config"
)

// MinTokenLen is the shortest token accepted from a token file, in bytes
// (openssl rand -hex 32 makes 64).
const MinTokenLen = 32

// token is one accepted bearer token: only its SHA-256 is kept.
type token struct {
	hash   [sha256.Size]byte
	caller Caller
}

// tokenSet checks bearer tokens.
type tokenSet []token

// loadTokens reads the configured tokens: each token file is read now
// (trailing whitespace trimmed), each sha256 decoded. Names must be unique
// and usable in an issuer name (analyst/<name>): no spaces, control
// characters or '/'. Problems are all reported at once.
func loadTokens(cfg []config.Token) (tokenSet, []string, error) {
	var errs []error
	var warnings []string
	out := make(tokenSet, 0, len(cfg))
	names := map[string]bool{}
	hashes := map[[sha256.Size]byte]string{}
	for i, t := range cfg {
		at := fmt.Sprintf("api.tokens[%d] (%s)", i, t.Name)
		role, ok := ParseRole(t.Role)
		if !ok {
			errs = append(errs, fmt.Errorf("%s: role %q is not viewer, analyst or admin", at, t.Role))
		}
		switch {
		case t.Name == "":
			errs = append(errs, fmt.Errorf("%s: name is required (it is what the audit log shows)", at))
		case strings.ContainsFunc(t.Name, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '/' }):
			errs = append(errs, fmt.Errorf("%s: a token name has no spaces, control characters or '/' (it becomes analyst/<name>)", at))
		case names[t.Name]:
			errs = append(errs, fmt.Errorf("%s: another token has this name: names identify callers in the audit log", at))
		}
		names[t.Name] = true
		var h [sha256.Size]byte
		switch {
		case (t.TokenFile == "") == (t.SHA256 == ""):
			errs = append(errs, fmt.Errorf("%s: set exactly one of token_file and sha256", at))
			continue
		case t.TokenFile != "":
			b, err := os.ReadFile(t.TokenFile)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: token_file: %w", at, err))
				continue
			}
			tok := strings.TrimRight(string(b), " \t\r\n")
			if len(tok) < MinTokenLen || strings.ContainsFunc(tok, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
				errs = append(errs, fmt.Errorf("%s: token_file %s: want one token of at least %d printable characters (openssl rand -hex 32)", at, t.TokenFile, MinTokenLen))
				continue
			}
			h = sha256.Sum256([]byte(tok))
			if fi, err := os.Stat(t.TokenFile); err == nil && fi.Mode().Perm()&0o077 != 0 {
				warnings = append(warnings, fmt.Sprintf("%s: token_file %s is readable by group or others (chmod 600 it)", at, t.TokenFile))
			}
		default:
			b, err := hex.DecodeString(strings.TrimSpace(t.SHA256))
			if err != nil || len(b) != sha256.Size {
				errs = append(errs, fmt.Errorf("%s: sha256: want 64 hex digits (printf %%s \"$TOKEN\" | sha256sum)", at))
				continue
			}
			copy(h[:], b)
		}
		if other, dup := hashes[h]; dup {
			errs = append(errs, fmt.Errorf("%s: the same token as %s: give each caller its own", at, other))
			continue
		}
		hashes[h] = t.Name
		out = append(out, token{hash: h, caller: Caller{Name: t.Name, Role: role}})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	return out, warnings, nil
}

// lookup returns the caller of a presented token. Every configured token
// is compared, in constant time, whatever matches.
func (s tokenSet) lookup(presented string) (Caller, bool) {
	h := sha256.Sum256([]byte(presented))
	found := -1
	for i := range s {
		if subtle.ConstantTimeCompare(h[:], s[i].hash[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return Caller{}, false
	}
	return s[found].caller, true
}
