package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/roomcast/roomcast/config"
	"github.com/roomcast/roomcast/migrations"
	"github.com/roomcast/roomcast/projections"
)

// dropTablesFlag must be given to a `migrate down` whose migration drops
// tables: they hold the event store and the read models, which no later
// `migrate up` brings back.
const dropTablesFlag = "yes-drop-tables"

// runMigrate is `roomcast migrate [up|down|status] [-yes-drop-tables]`.
func runMigrate(ctx context.Context, args []string, env config.Getenv, stdout io.Writer) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	dropTables := fs.Bool(dropTablesFlag, false, "let `migrate down` roll back a migration that drops tables, and their data")
	usageErr := fmt.Errorf("%w: migrate takes one of up, down, status (down also -%s)", errUsage, dropTablesFlag)
	// The action and the flag in either order.
	if err := fs.Parse(args); err != nil {
		return usageErr
	}
	action := "up"
	if fs.NArg() > 0 {
		action = fs.Arg(0)
		if err := fs.Parse(fs.Args()[1:]); err != nil || fs.NArg() > 0 {
			return usageErr
		}
	}
	if action != "up" && action != "down" && action != "status" {
		return usageErr
	}
	if *dropTables && action != "down" {
		return fmt.Errorf("%w: -%s goes with migrate down only", errUsage, dropTablesFlag)
	}
	cfg, err := config.Load(env, config.Database)
	if err != nil {
		return err
	}
	return migrateWith(ctx, cfg.DatabaseURL, action, *dropTables, stdout)
}

// migrate runs action; a down that drops tables is refused.
func migrate(ctx context.Context, databaseURL, action string, stdout io.Writer) error {
	return migrateWith(ctx, databaseURL, action, false, stdout)
}

func migrateWith(ctx context.Context, databaseURL, action string, dropTables bool, stdout io.Writer) error {
	db, m, err := projections.OpenForMigrations(ctx, databaseURL)
	if err != nil {
		return err
	}
	defer func() { _ = projections.Close(db) }()
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
		plan, err := m.PlanDown(ctx)
		if err != nil {
			return err
		}
		if plan.Version == 0 {
			fmt.Fprintln(stdout, "no migration to roll back")
			return nil
		}
		if len(plan.Drops) > 0 && !dropTables {
			return errDropsTables(plan)
		}
		v, err := m.RollBack(ctx, plan)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "rolled back migration %05d\n", v)
		for _, t := range plan.Drops {
			fmt.Fprintf(stdout, "  dropped table %s (%s)\n", t, rowsText(plan.Rows[t]))
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

// tableRoles says what the tables a rollback may drop hold, for the
// operator who is about to lose them.
var tableRoles = map[string]string{
	"events":       "the event store: every event roomcast accepted, the history the read models are rebuilt from",
	"messages":     "every message with its text",
	"room_members": "who is in which room",
	"rooms":        "each room's last seq, which clients have seen",
	"deliveries":   "the Pusher deliveries still owed",
}

// errDropsTables refuses a rollback that would drop tables, saying which and
// what they hold.
func errDropsTables(plan migrations.DownPlan) error {
	var b strings.Builder
	fmt.Fprintf(&b, "migrate down: refusing to roll back %05d (%s): it drops these tables with their data, which no migrate up brings back:", plan.Version, plan.Name)
	for _, t := range plan.Drops {
		fmt.Fprintf(&b, "\n  %s (%s)", t, rowsText(plan.Rows[t]))
		if role := tableRoles[t]; role != "" {
			fmt.Fprintf(&b, ": %s", role)
		}
	}
	fmt.Fprintf(&b, "\nNothing was changed. Back the database up (pg_dump) and run `roomcast migrate down -%s` to drop them.", dropTablesFlag)
	return errors.New(b.String())
}

func rowsText(n int64) string {
	switch {
	case n < 0:
		return "rows not counted"
	case n > migrations.RowsCap:
		return fmt.Sprintf("more than %d rows", migrations.RowsCap)
	case n == 1:
		return "1 row"
	}
	return fmt.Sprintf("%d rows", n)
}
