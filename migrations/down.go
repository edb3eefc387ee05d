package migrations

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"strings"

	"github.com/pressly/goose/v3"
)

// DownPlan is what rolling back the newest applied migration would do.
type DownPlan struct {
	Version int64  // 0 when no migration is applied
	Name    string // its file, e.g. 00001_event_store.sql
	// Drops are the tables its Down section drops, with their data, and
	// Rows how many rows each holds now (capped at RowsCap + 1; -1 when it
	// could not be counted).
	Drops []string
	Rows  map[string]int64
}

// RowsCap bounds the row counts of DownPlan: counting stops past it, so a
// plan is cheap on any table.
const RowsCap = 1_000_000

// PlanDown says which migration Down would roll back and which tables that
// drops. The migrations apply in order, so the newest applied one is the
// highest version.
func (m *Migrator) PlanDown(ctx context.Context) (DownPlan, error) {
	v, err := m.provider.GetDBVersion(ctx)
	if err != nil {
		return DownPlan{}, fmt.Errorf("read migration version: %w", err)
	}
	if v == 0 {
		return DownPlan{}, nil
	}
	plan := DownPlan{Version: v, Rows: map[string]int64{}}
	for _, s := range m.provider.ListSources() {
		if s.Version == v {
			plan.Name = s.Path
		}
	}
	if plan.Name == "" {
		return DownPlan{}, fmt.Errorf("the database is at version %d, which this roomcast does not have", v)
	}
	src, err := fs.ReadFile(files, plan.Name)
	if err != nil {
		return DownPlan{}, err
	}
	plan.Drops = DroppedTables(string(src))
	for _, table := range plan.Drops {
		var n int64
		q := fmt.Sprintf(`SELECT count(*) FROM (SELECT 1 FROM %s LIMIT %d) AS t`, quoteIdent(table), RowsCap+1)
		if err := m.db.QueryRowContext(ctx, q).Scan(&n); err != nil {
			n = -1
		}
		plan.Rows[table] = n
	}
	return plan, nil
}

// RollBack rolls back exactly the migration plan names (not whichever is
// newest by then) and returns its version.
func (m *Migrator) RollBack(ctx context.Context, plan DownPlan) (int64, error) {
	if plan.Version == 0 {
		return 0, nil
	}
	if _, err := m.provider.ApplyVersion(ctx, plan.Version, false); err != nil {
		if errors.Is(err, goose.ErrNotApplied) {
			return 0, fmt.Errorf("migrate down: %05d is no longer applied (another migrate ran meanwhile)", plan.Version)
		}
		return 0, fmt.Errorf("migrate down: %w", err)
	}
	return plan.Version, nil
}

var (
	downMarker = regexp.MustCompile(`(?m)^--\s*\+goose\s+Down\b`)
	upMarker   = regexp.MustCompile(`(?m)^--\s*\+goose\s+Up\b`)
	comment    = regexp.MustCompile(`--[^\n]*`)
	dropTable  = regexp.MustCompile(`(?is)\bDROP\s+TABLE\s+(?:IF\s+EXISTS\s+)?([^;]+?)\s*(?:\bCASCADE\b|\bRESTRICT\b)?\s*(?:;|$)`)
)

// DroppedTables lists the tables the Down section of a goose SQL migration
// drops, in order.
func DroppedTables(src string) []string {
	loc := downMarker.FindStringIndex(src)
	if loc == nil {
		return nil
	}
	down := src[loc[1]:]
	if up := upMarker.FindStringIndex(down); up != nil {
		down = down[:up[0]]
	}
	down = comment.ReplaceAllString(down, "")
	var tables []string
	for _, m := range dropTable.FindAllStringSubmatch(down, -1) {
		for t := range strings.SplitSeq(m[1], ",") {
			if t = strings.Trim(strings.TrimSpace(t), `"`); t != "" {
				tables = append(tables, t)
			}
		}
	}
	return tables
}

func quoteIdent(name string) string {
	parts := strings.Split(name, ".")
	for i, p := range parts {
		parts[i] = `"` + strings.ReplaceAll(p, `"`, `""`) + `"`
	}
	return strings.Join(parts, ".")
}
