package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tripline/tripline/rules"
)

func newRulesCmd(a *app) *cobra.Command {
	c := &cobra.Command{
		Use:   "rules",
		Short: "Lint, test, backtest and push rule files",
		Long: `Work with rule files: YAML files of rules whose conditions are expr
expressions over the event and windowed aggregates, with tests next to them.

A path is a rule file or a directory, searched recursively for *.yaml and
*.yml files.`,
		Example: `  tripline rules lint rules/
  tripline rules test rules/ --run exfil -v
  tripline rules backtest --rules rules/ --events events.jsonl.gz`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	c.AddCommand(newLintCmd(a), newTestCmd(a), newBacktestCmd(a), newScoreCmd(a), newRulesDiffCmd(a))
	c.AddCommand(newRulesPushCmd(a), newRulesStatusCmd(a), newRulesLogCmd(a), newRulesRollbackCmd(a))
	return c
}

// loadRules reads and compiles rule files. Compile errors are printed to
// stdout, one per line as file:line:col: message, and end the command with
// exit code 1; unreadable paths are I/O errors (exit code 2).
func (a *app) loadRules(paths []string) (*rules.Set, error) {
	srcs, err := rules.ReadSources(paths...)
	if err != nil {
		return nil, err
	}
	if len(srcs) == 0 {
		return nil, usageError(fmt.Errorf("no rule files (*.yaml, *.yml) in %s", strings.Join(paths, ", ")))
	}
	set, err := rules.Compile(srcs...)
	var list rules.ErrorList
	if errors.As(err, &list) {
		for _, e := range list {
			fmt.Fprintln(a.stdout, e)
		}
		noun := "errors"
		if len(list) == 1 {
			noun = "error"
		}
		fmt.Fprintf(a.stderr, "%d %s in rule files\n", len(list), noun)
		return nil, findings()
	}
	if err != nil {
		return nil, err
	}
	a.log.Debug().Int("files", len(srcs)).Int("rules", len(set.Rules)).Str("set", set.Hash).Msg("rules loaded")
	return set, nil
}
