// Package migrations holds roomcast's versioned SQL migrations, embedded in
// the binary, and applies them with goose.
package migrations

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed *.sql
var files embed.FS

// ErrBehind is returned by Check when the database lacks migrations this binary needs.
var ErrBehind = errors.New("database migrations are behind")

// Migrator applies and inspects the embedded migrations on one database.
type Migrator struct {
	provider *goose.Provider
	db       *sql.DB
}

// Status is one migration's state.
type Status struct {
	Version int64
	Name    string
	Applied bool
}

// New returns a Migrator for db. Concurrent Up calls from several processes
// are serialised with a Postgres advisory lock.
func New(db *sql.DB) (*Migrator, error) {
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return nil, fmt.Errorf("migrations lock: %w", err)
	}
	sub, err := fs.Sub(files, ".")
	if err != nil {
		return nil, err
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, sub, goose.WithSessionLocker(locker))
	if err != nil {
		return nil, fmt.Errorf("load migrations: %w", err)
	}
	return &Migrator{provider: p, db: db}, nil
}

// Up applies every pending migration and returns the versions it applied.
func (m *Migrator) Up(ctx context.Context) ([]int64, error) {
	results, err := m.provider.Up(ctx)
	var applied []int64
	for _, r := range results {
		if r.Error == nil {
			applied = append(applied, r.Source.Version)
		}
	}
	if err != nil {
		return applied, fmt.Errorf("migrate up: %w", err)
	}
	return applied, nil
}

// Down rolls back the newest applied migration and returns its version (0 when none was applied).
func (m *Migrator) Down(ctx context.Context) (int64, error) {
	r, err := m.provider.Down(ctx)
	if err != nil {
		if errors.Is(err, goose.ErrNoNextVersion) {
			return 0, nil
		}
		return 0, fmt.Errorf("migrate down: %w", err)
	}
	return r.Source.Version, nil
}

// Status lists every embedded migration and whether the database has it.
func (m *Migrator) Status(ctx context.Context) ([]Status, error) {
	st, err := m.provider.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("migration status: %w", err)
	}
	out := make([]Status, 0, len(st))
	for _, s := range st {
		out = append(out, Status{Version: s.Source.Version, Name: s.Source.Path, Applied: s.State == goose.StateApplied})
	}
	return out, nil
}

// Check returns nil when the database has every embedded migration and an
// error wrapping ErrBehind, naming both versions, when it does not.
func (m *Migrator) Check(ctx context.Context) error {
	current, target, err := m.provider.GetVersions(ctx)
	if err != nil {
		return fmt.Errorf("read migration version: %w", err)
	}
	pending, err := m.provider.HasPending(ctx)
	if err != nil {
		return fmt.Errorf("read pending migrations: %w", err)
	}
	if pending || current < target {
		return fmt.Errorf("%w: database is at version %d, this roomcast needs %d: run `roomcast migrate up`", ErrBehind, current, target)
	}
	return nil
}
