package replay

import (
	"context"

	"gorm.io/gorm"

	"github.com/roomcast/roomcast/projections"
)

// Retired is what DropRetired found.
type Retired struct {
	Schemas []projections.RetiredSchema
	Bytes   int64 // of all Schemas
	Dropped bool
}

// DropRetired drops the read models that rebuilds replaced and kept
// (projections.RetiredPrefix), or with dryRun only lists them.
func DropRetired(ctx context.Context, db *gorm.DB, dryRun bool) (Retired, error) {
	schemas, err := projections.RetiredSchemas(ctx, db)
	if err != nil {
		return Retired{}, err
	}
	r := Retired{Schemas: schemas}
	for _, s := range schemas {
		r.Bytes += s.Bytes
	}
	if dryRun {
		return r, nil
	}
	if err := projections.DropRetired(ctx, db, schemas); err != nil {
		return r, err
	}
	r.Dropped = true
	return r, nil
}
