package consumers

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
)

// failureCause names a transient failure of the projection in a few words
// fit for a log line, a stall and /readyz: "postgres unavailable: connection
// refused", "postgres: SQLSTATE 57P01 (admin shutdown)". It is built from the
// error's kind only, never from its text, which may hold the DSN's host,
// user or database, or event data.
func failureCause(err error) string {
	var pg *pgconn.PgError
	switch {
	case errors.Is(err, errBatcherStopped):
		return "worker stopping"
	case errors.As(err, &pg):
		return postgresCause(pg.Code)
	case errors.Is(err, context.DeadlineExceeded), pgconn.Timeout(err):
		return "postgres unavailable: timeout"
	}
	if c := netCause(err); c != "" {
		return "postgres unavailable: " + c
	}
	var connect *pgconn.ConnectError
	if errors.As(err, &connect) {
		return "postgres unavailable: cannot connect"
	}
	return fmt.Sprintf("unexpected error (%T)", innermost(err))
}

// netCause names a network failure, or returns "".
func netCause(err error) string {
	var errno syscall.Errno
	var dns *net.DNSError
	var ne net.Error
	switch {
	case errors.As(err, &errno):
		switch errno {
		case syscall.ECONNREFUSED:
			return "connection refused"
		case syscall.ECONNRESET, syscall.ECONNABORTED:
			return "connection reset"
		case syscall.EPIPE:
			return "connection closed"
		case syscall.ETIMEDOUT:
			return "timeout"
		case syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.EHOSTDOWN, syscall.ENETDOWN:
			return "host unreachable"
		}
		return "network error " + fmt.Sprint(int(errno))
	case errors.As(err, &dns):
		return "host name not resolved"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, pgconn.ErrConnClosed),
		errors.Is(err, driver.ErrBadConn), errors.Is(err, sql.ErrConnDone), errors.Is(err, net.ErrClosed):
		return "connection closed"
	}
	return ""
}

// sqlStates names the SQLSTATEs a restart, an overload or concurrency bring.
var sqlStates = map[string]string{
	"57P01": "admin shutdown",
	"57P02": "crash shutdown",
	"57P03": "cannot connect now",
	"53300": "too many connections",
	"53100": "disk full",
	"53200": "out of memory",
	"40001": "serialization failure",
	"40P01": "deadlock detected",
	"55P03": "lock not available",
	"57014": "query canceled",
	"25006": "read only transaction",
}

// sqlStateClasses names the classes of the other SQLSTATEs.
var sqlStateClasses = map[string]string{
	"08": "connection exception",
	"25": "invalid transaction state",
	"40": "transaction rollback",
	"53": "insufficient resources",
	"55": "object not in prerequisite state",
	"57": "operator intervention",
	"58": "system error",
	"XX": "internal error",
}

func postgresCause(code string) string {
	name, ok := sqlStates[code]
	if !ok && len(code) >= 2 {
		name, ok = sqlStateClasses[code[:2]]
	}
	if !ok {
		return "postgres: SQLSTATE " + code
	}
	return "postgres: SQLSTATE " + code + " (" + name + ")"
}

// innermost is the last error of err's Unwrap chain (the first of a join).
func innermost(err error) error {
	for {
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			next := u.Unwrap()
			if next == nil {
				return err
			}
			err = next
		case interface{ Unwrap() []error }:
			errs := u.Unwrap()
			if len(errs) == 0 {
				return err
			}
			err = errs[0]
		default:
			return err
		}
	}
}
