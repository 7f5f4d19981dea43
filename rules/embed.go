package rules

import (
	"embed"
	"io/fs"
	"path"
)

//go:embed examples/*.yaml
var examples embed.FS

// ExampleSources returns the example rule set shipped in the binary, used
// by `tripline dev` and when no rule paths are configured.
func ExampleSources() []Source {
	var out []Source
	_ = fs.WalkDir(examples, "examples", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := examples.ReadFile(p)
		if err != nil {
			return err
		}
		out = append(out, Source{Name: "builtin:" + path.Base(p), Data: b})
		return nil
	})
	return out
}
