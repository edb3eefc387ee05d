package projections

import (
	"context"
	"database/sql/driver"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/stdlib"
)

// dispatchLockKey is the Postgres advisory lock that elects the one process
// dispatching a database's outbox ("roomcast" in ASCII).
const dispatchLockKey int64 = 0x726f6f6d63617374

// Lead reports whether this process is the outbox's dispatcher, taking the
// database-wide dispatch lock when it is free. Several `roomcast run`
// processes share one database safely: one dispatches, the others consume
// and project, and one of them takes over within a poll when the leader
// stops or loses its connection.
func (o *Outbox) Lead(ctx context.Context) (bool, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.conn != nil && o.leading {
		if ctx.Err() != nil {
			// The caller is stopping: the lock is held until its calls in
			// flight are settled and it calls Release.
			return true, ctx.Err()
		}
		// Not the caller's context: pgx closes a connection whose operation
		// is cancelled, and the lock would go with the session.
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		err := o.conn.PingContext(pctx)
		cancel()
		if err == nil {
			return true, nil
		}
		// The session, and with it the lock, is gone.
		o.dropConnLocked()
	}
	if o.conn == nil {
		sqlDB, err := o.db.DB()
		if err != nil {
			return false, err
		}
		conn, err := sqlDB.Conn(ctx)
		if err != nil {
			return false, fmt.Errorf("dispatch lock: %w", err)
		}
		o.conn = conn
	}
	var ok bool
	if err := o.conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1)`, dispatchLockKey).Scan(&ok); err != nil {
		o.dropConnLocked()
		return false, fmt.Errorf("dispatch lock: %w", err)
	}
	o.leading = ok
	return ok, nil
}

// Release gives up the dispatch lock (on shutdown), so another process can take over at once.
func (o *Outbox) Release() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.conn != nil && o.leading {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, _ = o.conn.ExecContext(ctx, `SELECT pg_advisory_unlock($1)`, dispatchLockKey)
	}
	o.dropConnLocked()
}

// dropConnLocked closes the lock's connection for good rather than handing
// it back to the pool: a pooled session could still hold the lock (if the
// unlock failed) and stop every process from ever leading again.
func (o *Outbox) dropConnLocked() {
	if o.conn != nil {
		_ = o.conn.Raw(func(any) error { return driver.ErrBadConn })
		_ = o.conn.Close()
	}
	o.conn, o.leading = nil, false
}

// OutboxChannel is the Postgres notification channel on which commits that
// add deliveries are announced (see Notify).
const OutboxChannel = "roomcast_outbox"

// Leading reports whether this process held the dispatch lock at its last check.
func (o *Outbox) Leading() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.leading
}

// Notify announces on OutboxChannel that deliveries were committed, waking
// the dispatcher of whichever process leads. It is a transaction of its own,
// after the projection's commit: a notifying transaction takes a global lock
// at commit, which must not be held through the projection's WAL flush.
func (o *Outbox) Notify(ctx context.Context) error {
	if err := o.db.WithContext(ctx).Exec(`SELECT pg_notify(?, '')`, OutboxChannel).Error; err != nil {
		return fmt.Errorf("notify %s: %w", OutboxChannel, err)
	}
	return nil
}

// Listen calls wake once at start and then whenever any process commits
// deliveries to this database's outbox, until ctx ends. It reconnects after
// a lost connection (calling wake again, since notifications may have been
// missed) and returns nil when ctx ends. onError, if set, hears of each lost
// connection.
func (o *Outbox) Listen(ctx context.Context, wake func(), onError func(error)) error {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := o.listenOnce(ctx, wake)
		if ctx.Err() != nil {
			break
		}
		if onError != nil {
			onError(err)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
		backoff = min(2*backoff, 5*time.Second)
	}
	return nil
}

func (o *Outbox) listenOnce(ctx context.Context, wake func()) error {
	sqlDB, err := o.db.DB()
	if err != nil {
		return err
	}
	conn, err := sqlDB.Conn(ctx)
	if err != nil {
		return fmt.Errorf("listen %s: %w", OutboxChannel, err)
	}
	defer func() {
		// A LISTENing session must not go back to the pool.
		_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		_ = conn.Close()
	}()
	return conn.Raw(func(driverConn any) error {
		sc, ok := driverConn.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("listen %s: driver connection is %T, not pgx", OutboxChannel, driverConn)
		}
		pc := sc.Conn()
		if _, err := pc.Exec(ctx, "LISTEN "+OutboxChannel); err != nil {
			return fmt.Errorf("listen %s: %w", OutboxChannel, err)
		}
		wake() // anything committed before LISTEN took effect
		for {
			if _, err := pc.WaitForNotification(ctx); err != nil {
				return fmt.Errorf("listen %s: %w", OutboxChannel, err)
			}
			wake()
		}
	})
}
