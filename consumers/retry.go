package consumers

import (
	"math/rand/v2"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
)

// retryAfterFailure is Watermill's Retry middleware r, entered only once the
// handler has failed: the first attempt runs the handler directly, and a
// failure that r.ShouldRetry accepts waits as r would (randomized as r does)
// and goes to r for the remaining r.MaxRetries-1 retries, their intervals
// continuing where the first left off (TestRetryAfterFailureRetriesAsWatermill).
//
// The retries, their number and their backoff are r's. What this saves is
// r's set-up (a backoff, its options and closures) for every message, when
// nearly every message succeeds at its first attempt and never uses it.
func retryAfterFailure(r middleware.Retry, logger watermill.LoggerAdapter) message.HandlerMiddleware {
	if r.MaxRetries <= 0 {
		return r.Middleware
	}
	// Watermill's Retry draws one interval from its backoff to tell
	// ShouldRetry the delay, then another to wait: with ShouldRetry set, the
	// first wait is the second interval, and the next attempts go on from
	// the third.
	step := func(d time.Duration) time.Duration {
		if float64(d) >= float64(r.MaxInterval)/r.Multiplier {
			return r.MaxInterval
		}
		return time.Duration(float64(d) * r.Multiplier)
	}
	first := r.InitialInterval
	if r.ShouldRetry != nil {
		first = step(first)
	}
	rest := r
	rest.MaxRetries--
	rest.InitialInterval = step(first)
	return func(h message.HandlerFunc) message.HandlerFunc {
		retrying := rest.Middleware(h)
		return func(msg *message.Message) ([]*message.Message, error) {
			produced, err := h(msg)
			if err == nil || (r.ShouldRetry != nil && !r.ShouldRetry(middleware.RetryParams{Err: err, Delay: r.InitialInterval})) {
				return produced, err
			}
			delay := randomized(first, r.RandomizationFactor)
			if logger != nil {
				logger.Error("Error occurred, retrying", err, watermill.LogFields{
					"retry_no": 0, "max_retries": r.MaxRetries, "wait_time": delay,
				})
			}
			ctx := msg.Context()
			t := time.NewTimer(delay)
			defer t.Stop()
			select {
			case <-t.C:
			case <-ctx.Done():
				return produced, ctx.Err()
			}
			return retrying(msg)
		}
	}
}

// randomized is d within ±factor, as backoff.ExponentialBackOff draws it.
func randomized(d time.Duration, factor float64) time.Duration {
	if factor <= 0 {
		return d
	}
	delta := factor * float64(d)
	return time.Duration(float64(d) - delta + rand.Float64()*(2*delta+1))
}
