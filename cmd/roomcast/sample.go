package main

import (
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/roomcast/roomcast/internal/feed"
)

// runSample is `roomcast sample`: a short conversation as CloudEvents JSON
// lines, with fresh ids on every call, ready for `roomcast emit`.
func runSample(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("sample", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	rooms := fs.Int("rooms", 2, "rooms")
	messages := fs.Int("messages", 3, "messages per room")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 || *rooms < 1 || *messages < 1 {
		return fmt.Errorf("%w: sample [-rooms N] [-messages N] (N >= 1)", errUsage)
	}
	for _, line := range feed.Sample(*rooms, *messages, time.Now()) {
		if _, err := fmt.Fprintln(stdout, line); err != nil {
			return err
		}
	}
	return nil
}
