package worker

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"
)

// problemSource is a component that knows why events are not progressing
// (a partition that does not advance, a retry loop, a dead letter that
// cannot be published, deliveries Pusher does not take). Each line is short
// and holds no secret; /readyz shows them as they are.
type problemSource interface{ Problems() []string }

// A readinessCheck asks one dependency whether it works. probe returns ""
// when it does, otherwise a short summary that holds nothing from the
// outside world (no host, user, database name, URL or driver text) and the
// detailed error, which is logged once, scrubbed of secrets.
type readinessCheck struct {
	name  string
	probe func(ctx context.Context) (summary string, detail error)
	// after names a check that must pass in the same round for this one to
	// mean anything (the migration version needs a reachable Postgres).
	after *readinessCheck

	// state, owned by the checker's goroutine
	summary string
	since   time.Time
	busy    chan struct{} // closed when the probe in flight returns; nil when none is
}

// readiness answers /readyz from a snapshot that run refreshes every
// interval, so that a burst of requests (kubelet probes of every replica,
// a load balancer, an operator's curl in a loop) costs Postgres and Kafka
// nothing: one round of checks per interval, each with its own timeout.
type readiness struct {
	interval time.Duration
	timeout  time.Duration // of each check
	checks   []*readinessCheck
	sources  []problemSource
	log      *slog.Logger
	secrets  []string // removed from logged errors
	kick     chan struct{}

	mu       sync.Mutex
	problems []string
	at       time.Time // when problems was taken; zero before the first round
	rounds   int
}

// Defaults of the checker: a round every 2 s whose checks take at most 3 s
// each (a loaded Postgres that answers a ping in 2 s is not down), and a
// snapshot older than staleAfter means the checker itself is stuck.
const (
	readinessInterval = 2 * time.Second
	readinessTimeout  = 3 * time.Second
	staleAfter        = 30 * time.Second
	startGrace        = 15 * time.Second
	maxProblemLen     = 240
)

func newReadiness(log *slog.Logger, secrets []string, sources []problemSource, checks ...*readinessCheck) *readiness {
	return &readiness{
		interval: readinessInterval, timeout: readinessTimeout, checks: checks, sources: sources,
		log: log, secrets: secrets, kick: make(chan struct{}, 1),
	}
}

// recheck asks for a round now (a component changed state) instead of at
// the next tick.
func (r *readiness) recheck() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// run refreshes the snapshot until ctx ends. The first round waits for
// wake (the consumer running) or startGrace, so that a normal start is not
// logged as a problem; until then /readyz says it is starting.
func (r *readiness) run(ctx context.Context, wake <-chan struct{}) error {
	select {
	case <-ctx.Done():
		return nil
	case <-wake:
		wake = nil
	case <-time.After(startGrace):
	}
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		r.round(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-r.kick:
		case <-wake:
			wake = nil
		}
	}
}

// round runs every check once (concurrently, each within r.timeout) and
// publishes what is wrong.
func (r *readiness) round(ctx context.Context) {
	type result struct {
		summary string
		detail  error
		skipped bool // still busy from an earlier round
	}
	results := make([]result, len(r.checks))
	var wg sync.WaitGroup
	for i, c := range r.checks {
		if c.busy != nil {
			select {
			case <-c.busy:
				c.busy = nil
			default:
				// A probe that ignored its deadline is still running:
				// no second one on top of it.
				results[i] = result{summary: "no answer", detail: fmt.Errorf("the check from an earlier round has not returned"), skipped: true}
				continue
			}
		}
		busy := make(chan struct{})
		c.busy = busy
		out := make(chan result, 1)
		go func() {
			defer close(busy)
			cctx, cancel := context.WithTimeout(ctx, r.timeout)
			defer cancel()
			s, err := c.probe(cctx)
			out <- result{summary: s, detail: err}
		}()
		wg.Go(func() {
			select {
			case res := <-out:
				results[i] = res
			case <-time.After(r.timeout + time.Second):
				results[i] = result{summary: "no answer", detail: fmt.Errorf("no answer within %v", r.timeout)}
			case <-ctx.Done():
				results[i] = result{summary: "", skipped: true}
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return
	}
	now := time.Now()
	var problems []string
	for i, c := range r.checks {
		res := results[i]
		if c.after != nil && c.after.summary != "" {
			res = result{} // meaningless while what it depends on fails
		}
		r.settle(c, res.summary, res.detail, now)
		if c.summary != "" {
			problems = append(problems, fmt.Sprintf("%s: %s since %s (see log)", c.name, c.summary, c.since.UTC().Format("15:04:05 UTC")))
		}
	}
	for _, s := range r.sources {
		for _, p := range s.Problems() {
			problems = append(problems, r.shortLine(p))
		}
	}
	r.mu.Lock()
	r.problems, r.at = problems, now
	r.rounds++
	r.mu.Unlock()
}

// settle moves c to its new state and logs a change once: the detail when
// it starts failing (or fails another way), a line when it recovers.
func (r *readiness) settle(c *readinessCheck, summary string, detail error, now time.Time) {
	switch {
	case summary == c.summary:
		return
	case summary == "":
		r.log.Info("readiness: "+c.name+" is back", slog.String("check", c.name),
			slog.String("was", c.summary), slog.Duration("after", now.Sub(c.since).Round(time.Millisecond)))
	default:
		msg := ""
		if detail != nil {
			msg = r.scrub(detail.Error())
		}
		r.log.Warn("readiness: "+c.name+": "+summary, slog.String("check", c.name), slog.String("error", msg))
	}
	if c.summary == "" || summary == "" {
		c.since = now
	}
	c.summary = summary
}

// snapshot returns the problems of the last round, and one for the checker
// itself when it has not completed a round for staleAfter.
func (r *readiness) snapshot(now time.Time) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.at.IsZero():
		return []string{"readiness: not checked yet (starting)"}
	case now.Sub(r.at) > staleAfter:
		return append([]string{fmt.Sprintf("readiness: checks have not completed since %s", r.at.UTC().Format("15:04:05 UTC"))}, r.problems...)
	}
	return r.problems
}

// urlQuery matches the query of a URL in an error (a signed Pusher URL's
// auth_signature, a DSN's options).
var urlQuery = regexp.MustCompile(`(https?|postgres(?:ql)?)://([^\s?"']*)\?[^\s"']*`)

// scrub removes the configured secrets and URL queries from a message.
func (r *readiness) scrub(msg string) string {
	for _, s := range r.secrets {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "[redacted]")
		}
	}
	return urlQuery.ReplaceAllString(msg, "$1://$2?[redacted]")
}

// shortLine makes a component's problem one short line without secrets.
func (r *readiness) shortLine(p string) string {
	p = strings.Join(strings.Fields(r.scrub(p)), " ")
	if len(p) > maxProblemLen {
		p = strings.ToValidUTF8(p[:maxProblemLen], "") + "..."
	}
	return p
}
