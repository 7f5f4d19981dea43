package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
)

// Exit codes.
const (
	exitOK       = 0
	exitFindings = 1 // lint errors, failing tests, malformed input in strict mode
	exitUsage    = 2 // bad flags or arguments, unreadable files, I/O errors
)

// env is what the process gives the commands; tests pass their own.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	tty            bool // stderr is a terminal
}

// app carries what every command needs.
type app struct {
	env
	log      zerolog.Logger
	logLevel string
}

// exitError ends the command with a code. A nil err means the problem has
// already been reported.
type exitError struct {
	code  int
	err   error
	usage bool // a bad invocation: point at --help
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// findings ends a command with exit code 1, the findings already printed.
func findings() error { return &exitError{code: exitFindings} }

// usageError marks a bad invocation (exit code 2).
func usageError(err error) error { return &exitError{code: exitUsage, err: err, usage: true} }

// run executes the command line args and returns the exit code.
func run(ctx context.Context, args []string, e env) int {
	a := &app{env: e, log: newLogger(e.stderr, e.tty, zerolog.InfoLevel)}
	root := newRootCmd(a)
	if args == nil {
		args = []string{} // cobra reads os.Args when given nil
	}
	root.SetArgs(args)
	root.SetIn(e.stdin)
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	// cobra's own errors: an unknown command, a missing required flag
	msg := err.Error()
	code, usage := exitUsage, strings.HasPrefix(msg, "unknown command") || strings.HasPrefix(msg, "required flag")
	var xe *exitError
	if errors.As(err, &xe) {
		code, usage = xe.code, xe.usage
		if xe.err == nil {
			return code
		}
	}
	if errors.Is(err, context.Canceled) {
		a.log.Warn().Msg("interrupted")
		return code
	}
	a.log.Error().Msg(err.Error())
	if usage {
		fmt.Fprintln(e.stderr, "Run 'tripline --help' for usage.")
	}
	return code
}

func newRootCmd(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:   "tripline",
		Short: "Runtime kill-switch for AI agents",
		Long: `Tripline watches what AI agents do at run time and takes their access away
the moment they deviate.

Every tool call an agent makes is an event. Detectors judge the stream of
events against rules on rate, fan-out, data volume, sequences and deviation
from the agent's own baseline; when a rule fires, Tripline issues a decision:
an alert, a hold for human approval, or a revocation that the brokers and
proxies in front of the tools enforce within milliseconds.

Rules are YAML files of expr conditions over windowed aggregates. Lint them,
unit-test them and replay them over recorded events before enforcing them.`,
		Example: `  # Check rule files, run their tests, replay a day of events
  tripline rules lint rules/
  tripline rules test rules/
  tripline rules backtest --rules rules/ --events events.jsonl.gz`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			lvl, err := zerolog.ParseLevel(a.logLevel)
			if err != nil || a.logLevel == "" {
				return usageError(fmt.Errorf("invalid --log-level %q (use debug, info, warn or error)", a.logLevel))
			}
			a.log = a.log.Level(lvl)
			return nil
		},
		// Without a subcommand, show the help.
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	root.PersistentFlags().StringVar(&a.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError(err) })
	root.AddCommand(newVersionCmd(a), newRulesCmd(a), newServeCmd(a), newDevCmd(a))
	for _, newCmd := range extraCommands {
		root.AddCommand(newCmd(a))
	}
	root.AddCommand(newBenchCmd(a))
	return root
}

// newLogger logs to w: human-readable when w is a terminal, JSON otherwise.
func newLogger(w io.Writer, tty bool, lvl zerolog.Level) zerolog.Logger {
	if tty {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger()
}

// args wraps a cobra argument check so that a violation is a usage error.
func args(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, a []string) error {
		if err := check(cmd, a); err != nil {
			return usageError(fmt.Errorf("%s: %w", cmd.CommandPath(), err))
		}
		return nil
	}
}
