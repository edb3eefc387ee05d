package projections

import (
	"context"
	"fmt"

	"gorm.io/gorm"

	"github.com/roomcast/roomcast/migrations"
)

// OpenChecked opens the database as Open does and refuses one whose schema
// is not at the migrations this build carries: every command that reads or
// writes the tables (run, replay, dlq redrive) starts through it, so none of
// them works on a schema it does not know. The Migrator it returns checks the
// schema again later (readiness).
func OpenChecked(ctx context.Context, dsn string, maxConns int) (*gorm.DB, *migrations.Migrator, error) {
	db, err := Open(ctx, dsn, maxConns)
	if err != nil {
		return nil, nil, err
	}
	m, err := checkSchema(ctx, db)
	if err != nil {
		_ = Close(db)
		return nil, nil, err
	}
	return db, m, nil
}

// OpenForMigrations opens the database as Open does, with the Migrator that
// changes its schema (`roomcast migrate`, the dev stack, tests): it checks
// nothing, since bringing the schema up to date is what it is for.
func OpenForMigrations(ctx context.Context, dsn string) (*gorm.DB, *migrations.Migrator, error) {
	db, err := Open(ctx, dsn, 2)
	if err != nil {
		return nil, nil, err
	}
	m, err := migrator(db)
	if err != nil {
		_ = Close(db)
		return nil, nil, err
	}
	return db, m, nil
}

func checkSchema(ctx context.Context, db *gorm.DB) (*migrations.Migrator, error) {
	m, err := migrator(db)
	if err != nil {
		return nil, err
	}
	if err := m.Check(ctx); err != nil {
		return nil, fmt.Errorf("refusing to start: %w", err)
	}
	return m, nil
}

func migrator(db *gorm.DB) (*migrations.Migrator, error) {
	sqlDB, err := SQL(db)
	if err != nil {
		return nil, err
	}
	return migrations.New(sqlDB)
}
