package projections

import (
	"context"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"
)

// RetiredPrefix starts the names of the schemas that keep the read models a
// rebuild replaced: RetiredPrefix + "_" + the swap's UTC time
// (roomcast_retired_20261127_080000), one schema per swap, so that a later
// rebuild never touches what an earlier one kept. They stay until
// DropRetired (`roomcast replay drop-retired`) drops them: the tables as
// clients last read them before the swap, to compare with or to restore
// from (ALTER TABLE ... SET SCHEMA back, under the same locks as a swap).
const RetiredPrefix = "roomcast_retired"

// RetiredSchema is a schema holding the read models a rebuild replaced.
type RetiredSchema struct {
	Name   string
	Tables int64
	Bytes  int64 // the tables with their indexes and TOAST
}

// isRetired says whether name is one of the schemas RetiredPrefix names
// (the bare prefix was the transient schema of earlier versions).
func isRetired(name string) bool {
	return name == RetiredPrefix || strings.HasPrefix(name, RetiredPrefix+"_")
}

// retiredName returns a schema name for the tables a swap retires now,
// one that no schema has.
func retiredName(tx *gorm.DB, now time.Time) (string, error) {
	base := RetiredPrefix + "_" + now.UTC().Format("20060102_150405")
	for i := 1; ; i++ {
		name := base
		if i > 1 {
			name = fmt.Sprintf("%s_%d", base, i)
		}
		var taken bool
		if err := tx.Raw(`SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = ?)`, name).Scan(&taken).Error; err != nil {
			return "", fmt.Errorf("name the retired schema: %w", err)
		}
		if !taken {
			return name, nil
		}
	}
}

// RetiredSchemas lists the schemas holding read models that rebuilds
// replaced, oldest first.
func RetiredSchemas(ctx context.Context, db *gorm.DB) ([]RetiredSchema, error) {
	var out []RetiredSchema
	err := db.WithContext(ctx).Raw(`SELECT n.nspname AS name, count(c.oid) AS tables,
			COALESCE(sum(pg_total_relation_size(c.oid)), 0)::bigint AS bytes
		FROM pg_namespace n LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relkind = 'r'
		WHERE n.nspname = ? OR n.nspname LIKE ? GROUP BY n.nspname ORDER BY n.nspname`,
		RetiredPrefix, RetiredPrefix+`\_%`).Scan(&out).Error
	if err != nil {
		return nil, fmt.Errorf("list the retired read models: %w", err)
	}
	return out, nil
}

// DropRetired drops the given retired schemas with their tables. It refuses
// a schema that is not a retired one.
func DropRetired(ctx context.Context, db *gorm.DB, schemas []RetiredSchema) error {
	for _, s := range schemas {
		if !isRetired(s.Name) {
			return fmt.Errorf("drop %s: not a schema of retired read models", s.Name)
		}
		if err := db.WithContext(ctx).Exec(`DROP SCHEMA IF EXISTS ` + qident(s.Name) + ` CASCADE`).Error; err != nil {
			return fmt.Errorf("drop %s: %w", s.Name, err)
		}
	}
	return nil
}
