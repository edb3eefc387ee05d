package main

import (
	"context"
	"fmt"
	"io"

	"github.com/roomcast/roomcast/migrations"
	"github.com/roomcast/roomcast/projections"
)

// runMigrate is `roomcast migrate [up|down|status]`.
func runMigrate(ctx context.Context, args []string, env Getenv, stdout io.Writer) error {
	action := "up"
	if len(args) > 0 {
		action = args[0]
	}
	if len(args) > 1 || (action != "up" && action != "down" && action != "status") {
		return fmt.Errorf("%w: migrate takes one of up, down, status", errUsage)
	}
	cfg, err := loadConfig(env, "database")
	if err != nil {
		return err
	}
	return migrate(ctx, cfg.DatabaseURL, action, stdout)
}

func migrate(ctx context.Context, databaseURL, action string, stdout io.Writer) error {
	db, err := projections.Open(ctx, databaseURL, 2)
	if err != nil {
		return err
	}
	defer func() { _ = projections.Close(db) }()
	sqlDB, err := projections.SQL(db)
	if err != nil {
		return err
	}
	m, err := migrations.New(sqlDB)
	if err != nil {
		return err
	}
	switch action {
	case "up":
		applied, err := m.Up(ctx)
		for _, v := range applied {
			fmt.Fprintf(stdout, "applied migration %05d\n", v)
		}
		if err != nil {
			return err
		}
		if len(applied) == 0 {
			fmt.Fprintln(stdout, "database is up to date")
		}
	case "down":
		v, err := m.Down(ctx)
		if err != nil {
			return err
		}
		if v == 0 {
			fmt.Fprintln(stdout, "no migration to roll back")
		} else {
			fmt.Fprintf(stdout, "rolled back migration %05d\n", v)
		}
	case "status":
		st, err := m.Status(ctx)
		if err != nil {
			return err
		}
		for _, s := range st {
			state := "pending"
			if s.Applied {
				state = "applied"
			}
			fmt.Fprintf(stdout, "%05d  %-8s %s\n", s.Version, state, s.Name)
		}
		if err := m.Check(ctx); err != nil {
			fmt.Fprintln(stdout, err)
		}
	}
	return nil
}
