package consumers

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
)

// TestRetryAfterFailureRetriesAsWatermill holds retryAfterFailure to
// Watermill's Retry: the same number of attempts, the same waits (no
// randomization here, so their sum has a floor), permanent errors not
// retried, and a message whose context ends stops waiting.
func TestRetryAfterFailureRetriesAsWatermill(t *testing.T) {
	errTransient := errors.New("transient")
	errPermanent := errors.New("permanent")
	r := middleware.Retry{
		MaxRetries: 3, InitialInterval: 4 * time.Millisecond, MaxInterval: time.Second, Multiplier: 2,
		ShouldRetry: func(p middleware.RetryParams) bool { return !errors.Is(p.Err, errPermanent) },
	}
	// failing fails its first n attempts with err and counts the attempts.
	failing := func(n int, err error) (message.HandlerFunc, *int) {
		attempts := 0
		return func(*message.Message) ([]*message.Message, error) {
			attempts++
			if attempts <= n {
				return nil, err
			}
			return nil, nil
		}, &attempts
	}
	cases := []struct {
		name         string
		fails        int
		err          error
		wantAttempts int
		wantErr      error
		minWait      time.Duration
	}{
		{"succeeds at once", 0, errTransient, 1, nil, 0},
		// Watermill's waits, with ShouldRetry set: 8, 32 and 128 ms (see retryAfterFailure).
		{"succeeds at the second attempt", 1, errTransient, 2, nil, 8 * time.Millisecond},
		{"succeeds at the last attempt", 3, errTransient, 4, nil, (8 + 32 + 128) * time.Millisecond},
		{"retries run out", 10, errTransient, 4, errTransient, (8 + 32 + 128) * time.Millisecond},
		{"permanent error", 10, errPermanent, 1, errPermanent, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for name, mw := range map[string]message.HandlerMiddleware{
				"watermill":         r.Middleware,
				"retryAfterFailure": retryAfterFailure(r, watermill.NopLogger{}),
			} {
				h, attempts := failing(c.fails, c.err)
				start := time.Now()
				_, err := mw(h)(message.NewMessage("id", nil))
				waited := time.Since(start)
				if !errors.Is(err, c.wantErr) || (c.wantErr == nil) != (err == nil) {
					t.Errorf("%s: error %v, want %v", name, err, c.wantErr)
				}
				if *attempts != c.wantAttempts {
					t.Errorf("%s: %d attempts, want %d", name, *attempts, c.wantAttempts)
				}
				if waited < c.minWait {
					t.Errorf("%s: waited %v between attempts, want at least %v", name, waited, c.minWait)
				}
			}
		})
	}
	t.Run("context ends while waiting", func(t *testing.T) {
		slow := r
		slow.InitialInterval = time.Hour
		slow.MaxInterval = time.Hour
		h, attempts := failing(10, errTransient)
		msg := message.NewMessage("id", nil)
		ctx, cancel := context.WithCancel(context.Background())
		msg.SetContext(ctx)
		time.AfterFunc(10*time.Millisecond, cancel)
		if _, err := retryAfterFailure(slow, nil)(h)(msg); !errors.Is(err, context.Canceled) {
			t.Errorf("error %v, want context.Canceled", err)
		}
		if *attempts != 1 {
			t.Errorf("%d attempts, want 1", *attempts)
		}
	})
}
