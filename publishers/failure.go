package publishers

import (
	"context"
	"errors"
	"net"
	"net/url"
	"regexp"
	"strconv"
)

// failureKind says how the dispatcher handles a failed Pusher call.
type failureKind int

const (
	// retryable: 5xx, 429, timeouts, connection errors. Keep the deliveries,
	// back off, try again.
	retryable failureKind = iota + 1
	// rejected: Pusher (400, 413, other 4xx) or the client's own checks refuse
	// the call's content. Retrying it unchanged cannot succeed.
	rejected
	// unauthorized: 401, 403, 404 (bad credentials, app disabled, over quota,
	// wrong app id). Keep the deliveries, mark readiness degraded, back off.
	unauthorized
)

var statusPattern = regexp.MustCompile(`^Status Code: (\d{3})`)

// classify reads a pusher-http-go error: HTTP errors come back as plain
// strings "Status Code: 413 - <body>", network errors as *url.Error. It
// returns the kind and a metric label ("503", "network", "client").
func classify(err error) (failureKind, string) {
	if m := statusPattern.FindStringSubmatch(err.Error()); m != nil {
		code, _ := strconv.Atoi(m[1])
		switch {
		case code == 429 || code >= 500:
			return retryable, m[1]
		case code == 401 || code == 403 || code == 404:
			return unauthorized, m[1]
		default:
			return rejected, m[1]
		}
	}
	var urlErr *url.Error
	var netErr net.Error
	if errors.As(err, &urlErr) || errors.As(err, &netErr) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return retryable, "network"
	}
	// pusher-http-go's own validation (payload size, channel names, socket id).
	return rejected, "client"
}
