package main

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestCommandArguments: asking a command for help prints its usage and
// starts nothing; an argument a command does not take is a usage error
// (exit 2), never ignored.
func TestCommandArguments(t *testing.T) {
	t.Parallel()
	// A complete configuration pointing at nothing that answers: a worker
	// started by mistake fails on it (or runs until the deadline).
	env := envOf(validRunEnv(t))
	for _, args := range [][]string{
		{"run", "--help"}, {"run", "-h"}, {"run", "-help"}, {"run", "help"},
		{"migrate", "-h"}, {"migrate", "down", "--help"}, {"healthcheck", "-h"}, {"emit", "--help"},
		{"sample", "help"}, {"replay", "rebuild", "-h"}, {"dlq", "--help"},
	} {
		out, _, err := runQuick(t, 10*time.Second, args, env, strings.NewReader(""))
		if err != nil {
			t.Errorf("roomcast %s: %v, want its usage and success", strings.Join(args, " "), err)
			continue
		}
		if want := "roomcast " + args[0]; !strings.Contains(out, "Usage:") || !strings.Contains(out, want) {
			t.Errorf("roomcast %s printed %q, want a usage with %q", strings.Join(args, " "), out, want)
		}
	}
	for _, args := range [][]string{
		{"run", "now"}, {"run", "-verbose"}, {"run", "--", "x"},
		{"emit", "events.jsonl"}, {"sample", "3"}, {"healthcheck", "ready"},
	} {
		out, _, err := runQuick(t, 10*time.Second, args, env, strings.NewReader(""))
		if !errors.Is(err, errUsage) {
			t.Errorf("roomcast %s: %v (output %q), want a usage error", strings.Join(args, " "), err, out)
		}
	}
}
