package consumers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// A transient failure is named by its kind, never by its text: the text of
// a connection error holds the DSN's user, database and host.
func TestFailureCauseIsShortAndHidesTheDSN(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 5), Port: 5432},
		Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	cases := []struct {
		err  error
		want string
	}{
		{fmt.Errorf("project a batch of 3 events: failed to connect to `user=alice database=chat`: 10.0.0.5:5432 (db.internal): %w", refused),
			"postgres unavailable: connection refused"},
		{fmt.Errorf("insert events: %w", &pgconn.PgError{Severity: "FATAL", Code: "57P01", Message: "terminating connection due to administrator command"}),
			"postgres: SQLSTATE 57P01 (admin shutdown)"},
		{&pgconn.PgError{Code: "08P01", Message: "protocol violation for user alice"}, "postgres: SQLSTATE 08P01 (connection exception)"},
		{&pgconn.PgError{Code: "99999"}, "postgres: SQLSTATE 99999"},
		{fmt.Errorf("lock rooms: %w", io.ErrUnexpectedEOF), "postgres unavailable: connection closed"},
		{fmt.Errorf("read messages: %w", context.DeadlineExceeded), "postgres unavailable: timeout"},
		{&net.DNSError{Err: "no such host", Name: "db.internal"}, "postgres unavailable: host name not resolved"},
		{fmt.Errorf("project: %w", errBatcherStopped), "worker stopping"},
		{errors.New("something for user alice at db.internal"), "unexpected error (*errors.errorString)"},
	}
	for _, c := range cases {
		got := failureCause(c.err)
		if got != c.want {
			t.Errorf("failureCause(%q) = %q, want %q", c.err, got, c.want)
		}
		for _, secret := range []string{"alice", "chat", "db.internal", "10.0.0.5"} {
			if strings.Contains(got, secret) {
				t.Errorf("failureCause(%q) = %q shows %q", c.err, got, secret)
			}
		}
	}
}
