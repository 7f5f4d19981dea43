package investigate_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode"

	"github.com/stretchr/testify/require"

	"github.com/tripline/tripline/internal/investigate"
	"github.com/tripline/tripline/pipeline"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		require.NoError(t, os.MkdirAll("testdata", 0o755))
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test -update to create it")
	require.Equal(t, string(want), got)
}

func TestTermSafe(t *testing.T) {
	for in, want := range map[string]string{
		"plain /data/x.csv":    "plain /data/x.csv",
		`C:\path\file`:         `C:\path\file`,
		"a\nb\tc\rd":           `a\nb\tc\rd`,
		"\x1b[31mred\x1b[0m":   `\x1b[31mred\x1b[0m`,
		"nul\x00del\x7f":       `nul\x00del\x7f`,
		"csi\u009b2J":          `csi\u009b2J`,
		"rtl\u202eexe.txt":     `rtl\u202eexe.txt`,
		"ls\u2028ps\u2029":     `ls\u2028ps\u2029`,
		"bad\xffutf8":          `bad\xffutf8`,
		"snow☃ and 日本":         "snow☃ and 日本",
		"x'); DROP TABLE e;--": "x'); DROP TABLE e;--",
	} {
		require.Equal(t, want, investigate.TermSafe(in), "%q", in)
	}
}

func FuzzTermSafe(f *testing.F) {
	for _, s := range []string{"", "a\nb", "\x1b]0;title\x07", "\u202e", "\xff\xfe", hostile} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := investigate.TermSafe(s)
		for _, r := range out {
			if r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) || r == '\u2028' || r == '\u2029' ||
				unicode.Is(unicode.Bidi_Control, r) || r == unicode.ReplacementChar {
				t.Fatalf("TermSafe(%q) = %q keeps %U", s, out, r)
			}
		}
	})
}

// table is a Result of one table, for the writers' tests.
type table investigate.Table

func (t table) Tables() []investigate.Table { return []investigate.Table{investigate.Table(t)} }

func TestWriteCSV(t *testing.T) {
	r := table{Columns: []investigate.Column{{Name: "text"}, {Name: "n", Numeric: true}}, Rows: [][]string{
		{"plain", "1"},
		{"=cmd|' /C calc'!A0", "-5"},
		{"+1", "2"},
		{"-1", "3"},
		{"@SUM(A1)", "4"},
		{"\tTAB", "5"},
		{"quote \" comma , newline \n end", "6"},
		{"", "7"},
	}}
	var b bytes.Buffer
	require.NoError(t, investigate.WriteCSV(&b, r))
	require.True(t, strings.HasSuffix(b.String(), "\r\n"), "RFC 4180 line ends")
	recs, err := csv.NewReader(&b).ReadAll()
	require.NoError(t, err)
	require.Equal(t, [][]string{
		{"text", "n"},
		{"plain", "1"},
		{"'=cmd|' /C calc'!A0", "-5"},
		{"'+1", "2"},
		{"'-1", "3"},
		{"'@SUM(A1)", "4"},
		{"'\tTAB", "5"},
		{"quote \" comma , newline \n end", "6"},
		{"", "7"},
	}, recs)
}

// Whatever the cells, the CSV reads back as the same cells, formula
// starts guarded.
func FuzzWriteCSV(f *testing.F) {
	f.Add("a", "b")
	f.Add("=1+2", "x\"y\nz")
	f.Add("", "\r\n")
	f.Fuzz(func(t *testing.T, a, b string) {
		r := table{Columns: []investigate.Column{{Name: "a"}, {Name: "b"}}, Rows: [][]string{{a, b}}}
		var buf bytes.Buffer
		require.NoError(t, investigate.WriteCSV(&buf, r))
		recs, err := csv.NewReader(&buf).ReadAll()
		require.NoError(t, err)
		require.Len(t, recs, 2)
		for i, want := range []string{a, b} {
			got := recs[1][i]
			if want != "" && strings.ContainsRune("=+-@\t\r", rune(want[0])) {
				require.True(t, strings.HasPrefix(got, "'"), "%q not guarded: %q", want, got)
				got = got[1:]
			}
			// encoding/csv reads \r\n inside a quoted field as \n.
			require.Equal(t, strings.ReplaceAll(want, "\r\n", "\n"), got)
		}
	})
}

// A hostile event goes through the query and out as JSON and CSV intact
// (the CSV guard aside), and as a terminal table with nothing a terminal
// would act on.
func TestHostileOutput(t *testing.T) {
	f := newFixture(t)
	tl, err := f.q.Timeline(context.Background(), investigate.TimelineQuery{Tenant: "acme", By: "session", Value: hostile, Period: day()})
	require.NoError(t, err)
	require.Len(t, tl.Events, 1)

	var j bytes.Buffer
	require.NoError(t, investigate.WriteJSON(&j, tl))
	var back struct {
		Value  string           `json:"value"`
		Events []pipeline.Event `json:"events"`
	}
	require.NoError(t, json.Unmarshal(j.Bytes(), &back))
	require.Equal(t, hostile, back.Value)
	require.Equal(t, hostile, back.Events[0].Session)
	require.Equal(t, hostile, back.Events[0].Resource)
	require.Equal(t, hostile, back.Events[0].Tool)
	require.Equal(t, hostile, back.Events[0].Attrs["note"])

	var c bytes.Buffer
	require.NoError(t, investigate.WriteCSV(&c, tl))
	recs, err := csv.NewReader(&c).ReadAll()
	require.NoError(t, err)
	require.Len(t, recs, 2)
	head := map[string]int{}
	for i, h := range recs[0] {
		head[h] = i
	}
	// encoding/csv reads a quoted CRLF as LF; hostile has a lone \n only.
	require.Equal(t, hostile, recs[1][head["session"]])
	require.Equal(t, hostile, recs[1][head["resource"]])
	require.Equal(t, `'=HYPERLINK("http://evil")`, recs[1][head["destination"]])

	var txt bytes.Buffer
	require.NoError(t, investigate.WriteText(&txt, tl))
	out := txt.String()
	require.Equal(t, 2, strings.Count(out, "\n"), "one header and one row:\n%s", out)
	for _, bad := range []string{"\x00", "\x01", "\x1b", "\t", "\u202e"} {
		require.NotContains(t, out, bad)
	}
	require.Contains(t, out, `\x1b[31m\n\t,=1+2\u202e☃`)
}

// The terminal form of each query, on the fixture.
func TestTextGolden(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	var b bytes.Buffer
	write := func(title string, r investigate.Result, err error) {
		require.NoError(t, err)
		b.WriteString("### " + title + "\n")
		require.NoError(t, investigate.WriteText(&b, r))
		b.WriteString("\n")
	}
	tl, err := f.q.Timeline(ctx, investigate.TimelineQuery{Tenant: "acme", By: "session", Value: "s-1", Period: day(), Limit: 4})
	write("timeline session s-1, limit 4", tl, err)
	tl, err = f.q.Timeline(ctx, investigate.TimelineQuery{Tenant: "acme", By: "session", Value: "s-404", Period: day()})
	write("timeline session s-404", tl, err)
	touched, err := f.q.Touched(ctx, investigate.TouchedQuery{Tenant: "acme", Kind: "resource", Value: "customers", Contains: true, Period: day()})
	write("touched resource containing customers", touched, err)
	top, err := f.q.Top(ctx, investigate.TopQuery{Tenant: "acme", By: "agent", Metric: "rate", Period: day()})
	write("top agents by rate", top, err)
	ds, err := f.q.Decisions(ctx, investigate.DecisionQuery{Tenant: "acme", Period: day()})
	write("decisions", ds, err)
	rs, err := f.q.Revocations(ctx, investigate.RevocationQuery{Tenant: "acme", Period: day()})
	write("revocations", rs, err)
	x, err := f.q.Explain(ctx, "acme", "c1")
	write("explain c1", x, err)
	x, err = f.q.Explain(ctx, "acme", "c3")
	write("explain c3", x, err)
	golden(t, "text.golden", b.String())

	// Explain's sections in CSV long form.
	var c bytes.Buffer
	require.NoError(t, investigate.WriteCSV(&c, x))
	recs, err := csv.NewReader(&c).ReadAll()
	require.NoError(t, err)
	require.Equal(t, []string{"section", "row", "column", "value"}, recs[0])
	require.Contains(t, recs, []string{"commands", "1", "status", "expired"})
	require.Contains(t, recs, []string{"summary", "1", "value", "1"})
}
