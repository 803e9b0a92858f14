// Command collabsync keeps a computing centre's systems in step with its
// LDAP directory. This file is flag parsing and wiring only.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/collabsync/collabsync/accounting/ingest"
	"github.com/collabsync/collabsync/app/config"
	"github.com/collabsync/collabsync/app/wiring"
	"github.com/collabsync/collabsync/internal/journal"
	"github.com/collabsync/collabsync/internal/statelock"
	"github.com/collabsync/collabsync/internal/store"
	"github.com/collabsync/collabsync/sync/targets"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // something failed (or, for violations, was found)
	exitUsage   = 2 // bad flags or configuration
	exitChanges = 3 // plan --check: some target would change
	exitPanic   = 70
)

const defaultConfig = "/etc/collabsync/collabsync.yaml"

type command struct {
	summary string
	run     func(ctx context.Context, a *app, args []string) int
}

var commands = map[string]command{
	"approve":      {"approve a plan a target's guard holds: approve <target> <digest>", cmdApprove},
	"check-config": {"validate the configuration file, reporting every problem", cmdCheckConfig},
	"contacts":     {"print a collaboration's contacts of one role (like laboinfo)", cmdContacts},
	"violations":   {"list broken account rules; exit 1 when there are any", cmdViolations},
	"ingest":       {"read batch-scheduler accounting logs into the store", cmdIngest},
	"plan":         {"print what a sync would change, per target; writes nothing", cmdPlan},
	"report":       {"usage report: core-hours and jobs by collaboration, user, month", cmdReport},
	"serve":        {"run the daemon: change stream, schedules, metrics, health", cmdServe},
	"status":       {"show each target's maintenance window now and the next one", cmdStatus},
	"sync":         {"read the directory and apply the plan to every target", cmdSync},
	"version":      {"print the version", cmdVersion},
}

// app carries what every command needs; it is built once in run.
type app struct {
	stdout, stderr io.Writer
	log            *slog.Logger
	configPath     string
	// lockWait bounds how long a mutating command waits for another run
	// on the same state directory.
	lockWait time.Duration
	// helped: the command was asked for its usage (it exits 0).
	helped bool
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) (code int) {
	defer func() {
		// No panic reaches the user as a stack dump: say what happened and
		// how to report it.
		if r := recover(); r != nil {
			fmt.Fprintf(stderr, "collabsync: internal error: %v\nplease report this with the following trace:\n%s", r, debug.Stack())
			code = exitPanic
		}
	}()
	fs := flag.NewFlagSet("collabsync", flag.ContinueOnError)
	fs.SetOutput(stderr)
	a := &app{stdout: stdout, stderr: stderr}
	fs.StringVar(&a.configPath, "config", envOr("COLLABSYNC_CONFIG", defaultConfig), "configuration file (env COLLABSYNC_CONFIG)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	logFormat := fs.String("log-format", "auto", "text, json, or auto (text on a terminal, else json)")
	fs.DurationVar(&a.lockWait, "lock-wait", time.Minute, "how long sync, ingest and approve wait while another run holds the state directory")
	fs.Usage = func() { usage(fs) }
	fs.SetOutput(io.Discard) // Parse's own messages: said below
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(stdout) // asked for: on standard output, exit 0
		usage(fs)
		return exitOK
	case err != nil:
		fs.SetOutput(stderr)
		fmt.Fprintln(stderr, err)
		usage(fs)
		return exitUsage
	}
	fs.SetOutput(stderr)
	if a.log, err = newLogger(stderr, *logLevel, *logFormat); err != nil {
		fmt.Fprintln(stderr, "collabsync:", err)
		return exitUsage
	}
	if fs.NArg() == 0 {
		usage(fs)
		return exitUsage
	}
	if fs.Arg(0) == "__complete" { // for the shell completion only: not in the usage
		return cmdComplete(ctx, a, fs.Args()[1:])
	}
	cmd, ok := commands[fs.Arg(0)]
	if !ok {
		fmt.Fprintf(stderr, "collabsync: unknown command %q\n", fs.Arg(0))
		usage(fs)
		return exitUsage
	}
	code = cmd.run(ctx, a, fs.Args()[1:])
	if a.helped {
		return exitOK
	}
	return code
}

func usage(fs *flag.FlagSet) {
	out := fs.Output()
	fmt.Fprintln(out, "usage: collabsync [global flags] <command> [flags]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(out, "  %-14s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(out, "\nglobal flags:")
	fs.PrintDefaults()
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("bad -log-level %q", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	var build func(io.Writer) slog.Handler
	switch format {
	case "auto":
		build = func(w io.Writer) slog.Handler { return slog.NewJSONHandler(w, opts) }
		if isTerminal(w) {
			build = func(w io.Writer) slog.Handler { return slog.NewTextHandler(w, opts) }
		}
	case "text":
		build = func(w io.Writer) slog.Handler { return slog.NewTextHandler(w, opts) }
	case "json":
		build = func(w io.Writer) slog.Handler { return slog.NewJSONHandler(w, opts) }
	default:
		return nil, fmt.Errorf("bad -log-format %q (want text, json or auto)", format)
	}
	// Under systemd, the journal takes each line's priority from it.
	if f, ok := w.(*os.File); ok && journal.IsJournal(f, os.Getenv("JOURNAL_STREAM")) {
		return slog.New(journal.New(w, build)), nil
	}
	return slog.New(build(w)), nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// loadConfig reads the configuration file with the target kinds and log
// formats this program has: the one place they are handed in.
func loadConfig(path string, opts ...config.Option) (*config.Config, error) {
	return config.Load(path, targets.Kinds(), ingest.Formats().Names(), opts...)
}

// quietConfig loads the configuration for the shell's completion, which
// reads no secret, saying nothing when it cannot.
func (a *app) quietConfig() *config.Config {
	cfg, err := loadConfig(a.configPath, config.StoredStateOnly())
	if err != nil {
		return nil
	}
	return cfg
}

// loadConfig loads the configuration or prints every problem and returns nil.
func (a *app) loadConfig(opts ...config.Option) *config.Config {
	cfg, err := loadConfig(a.configPath, opts...)
	if err != nil {
		fmt.Fprintln(a.stderr, "collabsync:", err)
		return nil
	}
	return cfg
}

// openState loads the configuration and opens the state store. On failure
// it has said why, and code is the exit code to return.
func (a *app) openState(ctx context.Context, opts ...config.Option) (cfg *config.Config, st *store.Store, code int) {
	if cfg = a.loadConfig(opts...); cfg == nil {
		return nil, nil, exitUsage
	}
	st, err := wiring.OpenStore(ctx, cfg)
	if err != nil {
		a.errorf(err)
		return nil, nil, exitFailure
	}
	return cfg, st, exitOK
}

// openStateFor opens the store for a command. A mutating command (mutates)
// first takes the state directory's lock, saying so if it has to wait, and
// holds it until done. On failure it has said why.
func (a *app) openStateFor(ctx context.Context, cfg *config.Config, who string, mutates bool) (st *store.Store, done func(), ok bool) {
	var lock *statelock.Lock
	if mutates {
		var err error
		lock, err = statelock.Acquire(ctx, cfg.StateDir, "collabsync "+who, a.lockWait, func(holder string) {
			fmt.Fprintf(a.stderr, "collabsync %s: waiting up to %v for the state directory %s, in use by %s\n", who, a.lockWait, cfg.StateDir, holder)
		})
		if err != nil {
			a.errorf(err)
			return nil, nil, false
		}
	}
	st, err := wiring.OpenStore(ctx, cfg)
	if err != nil {
		lock.Release()
		a.errorf(err)
		return nil, nil, false
	}
	return st, func() { st.Close(); lock.Release() }, true
}

// newFlagSet returns a subcommand's flag set with consistent usage output.
func (a *app) newFlagSet(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: collabsync %s %s\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses a subcommand's flags; it refuses stray arguments.
// Asked for help (-h, --help), it prints the usage on standard output and
// the command exits 0.
func (a *app) parseFlags(fs *flag.FlagSet, args []string) bool {
	fs.SetOutput(io.Discard) // Parse's own usage, on -h, goes nowhere: help is printed below
	err := fs.Parse(args)
	fs.SetOutput(a.stderr)
	if errors.Is(err, flag.ErrHelp) {
		a.helped = true
		fs.SetOutput(a.stdout)
		fs.Usage()
		fs.SetOutput(a.stderr)
		return false
	}
	if err != nil {
		fmt.Fprintln(a.stderr, err)
		fs.Usage()
		return false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected arguments: %s\n", strings.Join(fs.Args(), " "))
		fs.Usage()
		return false
	}
	return true
}

// errorf prints a one-line error for the user.
func (a *app) errorf(err error) {
	var fe *config.FileError
	if errors.As(err, &fe) {
		fmt.Fprintln(a.stderr, "collabsync:", fe)
		return
	}
	fmt.Fprintln(a.stderr, "collabsync:", err)
}
