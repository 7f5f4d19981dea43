package rules

import (
	"embed"
	"io/fs"
	"path"
)

//go:embed examples/*.yaml
var examples embed.FS

//go:embed pack/*.yaml
var pack embed.FS

// ExampleSources returns the example rule set shipped in the binary, used
// by `tripline dev` and when no rule paths are configured.
func ExampleSources() []Source {
	return embedded(examples, "examples", "builtin:")
}

// PackSources returns the default rule pack shipped in the binary
// (rules/pack/*.yaml), each file named "pack:<file>".
func PackSources() []Source {
	return embedded(pack, "pack", "pack:")
}

// embedded reads every file under dir of fsys, in lexical order, naming
// each prefix+<file>.
func embedded(fsys embed.FS, dir, prefix string) []Source {
	var out []Source
	_ = fs.WalkDir(fsys, dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fsys.ReadFile(p)
		if err != nil {
			return err
		}
		out = append(out, Source{Name: prefix + path.Base(p), Data: b})
		return nil
	})
	return out
}
