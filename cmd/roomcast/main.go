// Command roomcast consumes chat domain events from Kafka, projects them into
// Postgres and fans them out to Pusher. See README.md for its subcommands.
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
	"strings"
	"syscall"

	"github.com/roomcast/roomcast/config"
	"github.com/roomcast/roomcast/worker"
)

const usage = `roomcast: chat events from Kafka into Postgres and out to Pusher

Usage:
  roomcast run                      the worker: consume, project, fan out (health and metrics on HTTP_ADDR)
  roomcast api                      channel authorization and history for browsers on API_ADDR (with health and metrics)
  roomcast migrate [up|down|status] versioned SQL migrations (default: up); down rolls back one
  roomcast migrate down -yes-drop-tables   roll back a migration that drops tables (the event store) and their data
  roomcast healthcheck [-api] [-ready]   exit 0 when the worker at HTTP_ADDR (the api at API_ADDR) answers /healthz (/readyz) with 200
  roomcast emit [-brokers B] [-topic T] read CloudEvents JSON lines on stdin and produce them to Kafka
  roomcast sample [-rooms N] [-messages N]  print a sample conversation as CloudEvents JSON lines
  roomcast replay rebuild [-dry-run] [-restart]   rebuild the read models from the events table (sends nothing)
  roomcast replay kafka -from earliest|<RFC3339> [-notify] [-dry-run]   re-consume the topic's history
  roomcast replay notify -room R[,R...] [-from-seq N|-since T] [-until T] [-dry-run]   owe rooms' stored history to Pusher again
  roomcast dlq list [-id ID] [-reason TEXT]        show the dead-letter topic
  roomcast dlq redrive (-id ID,...|-reason TEXT|-all) [-dry-run]   send chosen dead letters back to the events topic

  roomcast <command> -h              that command's usage

Configuration comes from the environment; see README.md.
`

// errUsage marks a command line roomcast does not understand (exit status 2).
var errUsage = errors.New("usage")

func main() {
	// main owns the signals and hands a context down, so that run can be
	// embedded in tests.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	worker.TuneGC(os.Getenv)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	switch {
	case err == nil:
	case errors.Is(err, errUsage):
		fmt.Fprintf(os.Stderr, "roomcast: %v\n\n%s", err, usage)
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "roomcast: %v\n", err)
		os.Exit(1)
	}
}

// run executes one roomcast command. It returns when the command is done or
// ctx ends.
func run(ctx context.Context, args []string, env config.Getenv, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: no command", errUsage)
	}
	cmd, rest := args[0], args[1:]
	err := runCommand(ctx, cmd, rest, env, stdin, stdout, stderr)
	// Every command checks its arguments before it does anything, so a
	// usage error asked for with -h, --help or help is an answer, not a failure.
	if errors.Is(err, errUsage) && asksHelp(rest) {
		_, err = io.WriteString(stdout, commandUsage(cmd))
	}
	return err
}

func runCommand(ctx context.Context, cmd string, rest []string, env config.Getenv, stdin io.Reader, stdout, stderr io.Writer) error {
	switch cmd {
	case "run":
		if err := noArguments(cmd, rest); err != nil {
			return err
		}
		cfg, err := config.Load(env, config.Kafka, config.Database, config.Pusher, config.HTTP)
		if err != nil {
			return err
		}
		return runWorker(ctx, cfg, newLogger(cfg, stderr))
	case "api":
		return runAPI(ctx, rest, env, stderr)
	case "migrate":
		return runMigrate(ctx, rest, env, stdout)
	case "healthcheck":
		return runHealthcheck(ctx, rest, env, stdout)
	case "emit":
		return runEmit(ctx, rest, env, stdin, stdout)
	case "sample":
		return runSample(rest, stdout)
	case "replay":
		return runReplay(ctx, rest, env, stdout, stderr)
	case "dlq":
		return runDLQ(ctx, rest, env, stdout, stderr)
	case "help", "-h", "--help", "-help":
		text := usage
		if len(rest) > 0 && rest[0] != cmd {
			text = commandUsage(rest[0])
		}
		_, err := io.WriteString(stdout, text)
		return err
	default:
		return fmt.Errorf("%w: unknown command %q", errUsage, cmd)
	}
}

// noArguments refuses any argument to a command that takes none (a
// mistyped flag must not start a worker).
func noArguments(cmd string, args []string) error {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %s: %v", errUsage, cmd, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: %s takes no arguments, got %q", errUsage, cmd, strings.Join(fs.Args(), " "))
	}
	return nil
}

// asksHelp reports whether a command's arguments ask for its usage.
func asksHelp(args []string) bool {
	if len(args) > 0 && args[0] == "help" {
		return true
	}
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" {
			return true
		}
	}
	return false
}

// commandUsage is the part of usage about cmd (all of it for a command
// roomcast does not have).
func commandUsage(cmd string) string {
	var lines []string
	for l := range strings.SplitSeq(usage, "\n") {
		if strings.HasPrefix(l, "  roomcast "+cmd+" ") {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		return usage
	}
	return "Usage:\n" + strings.Join(lines, "\n") + "\n\nConfiguration comes from the environment; see README.md.\n"
}

// runWorker is `roomcast run`: it checks the schema, then consumes, projects
// and fans out until ctx ends, and stops within cfg.ShutdownTimeout.
func runWorker(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	w, err := worker.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	return w.Run(ctx)
}

// newLogger is the logger of a command (LOG_LEVEL, LOG_FORMAT).
func newLogger(cfg config.Config, w io.Writer) *slog.Logger { return cfg.Logger(w) }
