package main

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tripline/tripline/internal/ruletest"
)

func newTestCmd(a *app) *cobra.Command {
	var (
		runRE   string
		verbose bool
	)
	c := &cobra.Command{
		Use:   "test PATH...",
		Short: "Run the tests written next to rules",
		Long: `Test runs every rule test: each test feeds its timed input events to a
fresh engine holding only the rules it names and compares the decisions
produced with the decisions it expects. An expectation compares only the
fields it sets (at, rule, group, action, mode, scope, event, suppressed);
the decisions must match the expectations in order and in count.

A failing test shows the decisions aligned with the expectations:

      at=+20s rule=bulk-read group=tenant=acme,session=s-1 ... event=t-2
    - at=+30s rule=bulk-read    (rules/volume.yaml:17:13)
    + at=+1m20s rule=bulk-read group=tenant=acme,session=s-1 ... event=t-8

where a line starting with - was expected but not produced, + was produced
but not expected, and the others matched.

Every rule also needs a positive test (expecting a decision of the rule)
and a negative one (expecting none of it); a rule lacking either fails the
run, whatever --run selects.`,
		Example: `  tripline rules test rules/
  tripline rules test rules/ --run 'exfil|fan-out' -v`,
		Args: args(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, paths []string) error {
			var cfg ruletest.Config
			if runRE != "" {
				re, err := regexp.Compile(runRE)
				if err != nil {
					return usageError(fmt.Errorf("--run: %w", err))
				}
				cfg.Run = re
			}
			set, err := a.loadRules(paths)
			if err != nil {
				return err
			}
			rep := ruletest.Run(set, cfg)
			w := a.stdout
			for _, r := range rep.Tests {
				switch {
				case r.Pass && verbose:
					fmt.Fprintf(w, "ok    %s (%s) %d events, %d decisions\n", r.Name, r.Pos, r.Events, len(r.Decisions))
				case !r.Pass:
					fmt.Fprintf(w, "FAIL  %s (%s)\n", r.Name, r.Pos)
					msg := r.Err
					if msg == "" {
						msg = r.Diff
					}
					fmt.Fprintln(w, indent(strings.TrimRight(msg, "\n"), "      "))
				}
			}
			for _, m := range rep.Missing {
				fmt.Fprintln(w, m)
			}
			status := "PASS"
			if !rep.OK() {
				status = "FAIL"
			}
			fmt.Fprintf(w, "%s: %s\n", status, rep.Summary())
			if !rep.OK() {
				return findings()
			}
			return nil
		},
	}
	c.Flags().StringVar(&runRE, "run", "", "run only the tests whose name matches this regular expression")
	c.Flags().BoolVarP(&verbose, "verbose", "v", false, "list passing tests too")
	return c
}

func indent(s, prefix string) string {
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix)
}
